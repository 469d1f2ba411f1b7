"""How fast each family learns a synthetic source (recipe section 9's check): validation
loss after 200 steps on an order-1 Markov chain over 256 symbols (4 successors per
symbol), 2 layers, width 128, batch 16 x 128 tokens, every family at equal tokens.

    python benchmarks/learn_markov.py            # the table in benchmarks/RESULTS.md
    python benchmarks/learn_markov.py --quick    # the defaults only

Each row is one training run (seed 0) with its learning rate; the EBT/T++ column divides
by the best Transformer++ loss of the table. Rows with embed_init=xavier use Xavier-normal
token embeddings instead of the reference's N(0, 1).
"""
from __future__ import annotations

import argparse
import math
import time

from ebt_scaling.config import config_from_dict, resolve_alpha
from ebt_scaling.data.sources import MarkovSource
from ebt_scaling.results.store import MemorySink
from ebt_scaling.train import train

BASE = {"model": {"n_layers": 2, "d_model": 128, "n_heads": 2},
        "data": {"source": "markov", "markov_vocab": 256, "markov_order": 1, "markov_branching": 4, "seq_len": 128},
        "train": {"batch_size": 16, "steps": 200, "eval_every": 1000, "eval_tokens": 16384, "log_every": 50,
                  "threads": 1}}

RUNS = [  # (family, lr, embed_init, ebt overrides)
    ("transformer_pp", 2.4e-3, "normal", {}),
    ("transformer_pp", 6e-3, "normal", {}),
    ("transformer_pp", 6e-3, "xavier", {}),
    ("ebt_s2", 2.4e-3, "normal", {}),
    ("ebt_s2", 6e-3, "normal", {}),
    ("ebt_s2", 1.2e-2, "normal", {}),
    ("ebt_s2", 2.4e-3, "xavier", {}),
    ("ebt_s2", 6e-3, "xavier", {}),
    ("ebt_s1", 2.4e-3, "normal", {}),
    ("ebt_s1", 2.4e-3, "normal", {"alpha": 1.33}),
    ("ebt_s1", 2.4e-3, "normal", {"alpha": 2.55}),
]
QUICK = [RUNS[0], RUNS[3], RUNS[8]]


def run(family, lr, embed_init, ebt):
    d = {k: dict(v) for k, v in BASE.items()}
    d["model"].update(family="transformer_pp" if family == "transformer_pp" else "ebt", embed_init=embed_init)
    if family != "transformer_pp":
        d["ebt"] = {"preset": family, **ebt}
    d["optim"] = {"lr": lr}
    cfg = config_from_dict(d)
    t = time.time()
    s = train(cfg, MemorySink())
    return s, time.time() - t, cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", help="comma-separated row numbers of RUNS to run (default: all)")
    args = ap.parse_args()
    src = MarkovSource(256, 1, 4, config_from_dict({"train": {"steps": 1}}).data.markov_seed)
    print(f"order-1 Markov, V = 256, 4 successors: entropy rate {src.entropy_rate:.3f} nats, "
          f"uniform {math.log(256):.3f}\n")
    print("| family | lr | embeddings | ebt | alpha | val loss | EBT / best T++ | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    best_tpp = None
    runs = QUICK if args.quick else RUNS
    if args.rows:
        runs = [RUNS[int(i)] for i in args.rows.split(",")]
    for family, lr, emb, ebt in runs:
        s, secs, cfg = run(family, lr, emb, ebt)
        loss = s.val_loss if s.status == "ok" else float("nan")
        if family == "transformer_pp":
            best_tpp = loss if best_tpp is None else min(best_tpp, loss)
            ratio = ""
        else:
            ratio = f"{loss / best_tpp:.2f}x" if best_tpp else ""
        alpha = "" if family == "transformer_pp" else f"{resolve_alpha(cfg.ebt, 256):.3g}"
        print(f"| {family} | {lr:g} | {emb} | {ebt or ''} | {alpha} | {loss:.3f} | {ratio} | {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
