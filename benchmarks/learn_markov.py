"""How fast each family learns a synthetic source (recipe section 9's check): validation
loss after 200 steps on an order-1 Markov chain over 256 symbols (4 successors per
symbol), 2 layers, width 128, batch 16 x 128 tokens, every family at equal tokens.

    python benchmarks/learn_markov.py            # the table in benchmarks/RESULTS.md
    python benchmarks/learn_markov.py --quick    # the defaults only
    python benchmarks/learn_markov.py --alpha-grid [--vocabs 256,1024,4096] [--powers 0.25,0.5,1]
        # alpha rules alpha = alpha_ref * (V / 50277) ** power for S1 and S2 at several V

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


def run(family, lr, embed_init, ebt, vocab=256):
    d = {k: dict(v) for k, v in BASE.items()}
    d["data"]["markov_vocab"] = vocab
    d["model"].update(family="transformer_pp" if family == "transformer_pp" else "ebt", embed_init=embed_init)
    if family != "transformer_pp":
        d["ebt"] = {"preset": family, **ebt}
    d["optim"] = {"lr": lr}
    cfg = config_from_dict(d)
    t = time.time()
    s = train(cfg, MemorySink())
    return s, time.time() - t, cfg


def alpha_grid(vocabs, powers, lr, jobs):
    """Every (preset, V, power) at one lr, beside Transformer++ at each V; prints a table.
    A run "learns" when its loss closes at least half of the gap from uniform (log V) to
    Transformer++'s loss."""
    from concurrent.futures import ProcessPoolExecutor
    cells = [("transformer_pp", v, None) for v in vocabs]
    cells += [(pre, v, p) for pre in ("ebt_s1", "ebt_s2") for v in vocabs for p in powers]
    with ProcessPoolExecutor(jobs) as pool:
        futs = [pool.submit(_grid_cell, pre, v, p, lr) for pre, v, p in cells]
        out = [f.result() for f in futs]
    tpp = {v: loss for (pre, v, p), (loss, _, _) in zip(cells, out) if pre == "transformer_pp"}
    print(f"order-1 Markov, 4 successors, lr {lr:g}, 200 steps; uniform = log V\n")
    print("| family | V | power | alpha | val loss | uniform | T++ | gap closed | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (pre, v, p), (loss, alpha, secs) in zip(cells, out):
        u = math.log(v)
        closed = (u - loss) / (u - tpp[v]) if math.isfinite(loss) else float("nan")
        print(f"| {pre} | {v} | {'' if p is None else p:} | {'' if alpha is None else f'{alpha:.3g}'} | "
              f"{loss:.3f} | {u:.3f} | {tpp[v]:.3f} | {closed:.2f} | {secs:.0f} |", flush=True)


def _grid_cell(preset, vocab, power, lr):
    from ebt_scaling.config import EBT_PRESETS
    ebt = {}
    alpha = None
    if preset != "transformer_pp":
        alpha = EBT_PRESETS[preset]["alpha_ref"] * (vocab / 50277) ** power
        ebt = {"alpha": alpha}
    s, secs, _ = run(preset, lr, "normal", ebt, vocab)
    return (s.val_loss if s.status == "ok" else float("nan")), alpha, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--alpha-grid", action="store_true")
    ap.add_argument("--vocabs", default="256,1024,4096")
    ap.add_argument("--powers", default="0.25,0.5,0.75,1")
    ap.add_argument("--lr", type=float, default=2.4e-3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rows", help="comma-separated row numbers of RUNS to run (default: all)")
    args = ap.parse_args()
    if args.alpha_grid:
        return alpha_grid([int(v) for v in args.vocabs.split(",")],
                          [float(p) for p in args.powers.split(",")], args.lr, args.jobs)
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
