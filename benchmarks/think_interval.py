"""How many evaluation tokens put the thinking improvement's 95% interval within +-1 pp.

    ebt-sweep train examples/tiny_ebt.yaml --set train.tokens=131072 --set train.eval_every=1000 \\
        --out /tmp/tiny --checkpoint-dir /tmp/tiny/ckpt
    .venv/bin/python benchmarks/think_interval.py /tmp/tiny/ckpt/last.pt 4096,16384

Runs System 2 on the validation set (default steps and best-of-N) at each size, and
prints the improvement with its sequence-bootstrap interval (fit/compare.thinking_table)
and the wall time. Figures: benchmarks/RESULTS-fit.md.
"""
import sys
import time

import pandas as pd

from ebt_scaling.fit.compare import thinking_table
from ebt_scaling.train.think import load_point, system2


def main():
    cfg, model, tid = load_point(sys.argv[1], device="cpu")
    for n_tokens in [int(v) for v in sys.argv[2].split(",")]:
        t0 = time.time()
        rows, _, seqs = system2(cfg, model, sets=("val",), n_tokens=n_tokens, trial_id=tid)
        dt = time.time() - t0
        r = thinking_table(pd.DataFrame([r.asdict() for r in rows]), "val_ppl", "transformer_pp",
                           sequences=seqs, n_draws=2000).iloc[0]
        print(f"n_tokens {n_tokens}: {r.n_sequences} sequences, {dt:.1f} s; default ppl {r.metric_1pass:.3f}, "
              f"best {r.metric_best:.3f} at {int(r.best_passes)} passes; improvement {r.improvement_pct:.2f}% "
              f"[{r.improvement_low:.2f}, {r.improvement_high:.2f}] half-width "
              f"{(r.improvement_high - r.improvement_low) / 2:.2f} pp", flush=True)


if __name__ == "__main__":
    main()
