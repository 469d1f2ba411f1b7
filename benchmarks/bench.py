"""Training throughput benchmark: tokens/s and achieved FLOP/s against this machine's
measured fp32 matmul peak, for Transformer++ and the EBT presets at a few sizes.

    python benchmarks/bench.py                 # all sizes, prints a markdown table
    python benchmarks/bench.py --quick         # smallest size only
    python benchmarks/bench.py --vocab 4096 --size 2,80,2,64,20    # the BPE sweeps' top shape

FLOPs are the analytic counts of ebt_scaling/flops.py (matmuls + full-square attention).
The EBT rows also give its step time over Transformer++'s at the same size, next to the
ratio of their analytic training FLOPs per token. Latest figures: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from ebt_scaling import flops as F
from ebt_scaling.config import config_from_dict
from ebt_scaling.models.registry import build_model
from ebt_scaling.train.loop import flush_denormals
from ebt_scaling.train.optim import build_optimizer

SIZES = [  # (layers, width, heads, context, batch)
    (2, 128, 2, 128, 16),     # 4xs-like, the recipe's reference-code timing config
    (4, 256, 4, 256, 8),      # width 256, context 256: the 40%-of-peak target
]


def step_time(cfg, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    x = torch.randint(0, cfg.model.vocab_size, (batch, cfg.data.seq_len + 1))
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        loss, _ = model.loss(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if hasattr(model, "after_step"):   # as the trainer does: S2's replay buffer fills here
            model.after_step()
        if i >= 2:                      # two warm-up steps
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def make(family, L, d, h, S, preset="", vocab=256, **ebt):
    d_ = {"model": {"family": family, "n_layers": L, "d_model": d, "n_heads": h, "vocab_size": vocab},
          "data": {"seq_len": S}, "train": {"steps": 1}}
    if preset:
        d_["ebt"] = {"preset": preset, **({"random_extra_steps": 0} if preset == "ebt_s2" else {}), **ebt}
    return config_from_dict(d_)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=256, help="vocabulary size (the BPE sweeps: 4096)")
    ap.add_argument("--size", default="", help="one size L,d,heads,ctx,batch instead of the table's "
                                               "(the BPE sweeps' top shape: 2,80,2,64,20)")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in args.size.split(","))] if args.size else SIZES[:1] if args.quick else SIZES
    flush_denormals()                   # as every training run does (train/loop.py)
    peak = F.measured_cpu_matmul_peak(n=1024, repeats=10)
    print(f"# ebt-scaling training benchmark\n\nmachine: {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; "
          f"measured fp32 matmul peak (1024^3): {peak / 1e9:.1f} GFLOP/s\n")
    print("| family | L | d | ctx | batch | step ms | tokens/s | GFLOP/s | % of peak | step / T++ step | FLOP ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"vocabulary: {args.vocab}\n")
    for (L, d, h, S, B) in sizes:
        base = None
        for family, preset, extra in [("transformer_pp", "", {}), ("ebt", "ebt_s1", {}), ("ebt", "ebt_s2", {}),
                                      ("ebt", "ebt_s2", {"replay_buffer": 0})]:
            cfg = make(family, L, d, h, S, preset, vocab=args.vocab, **extra)
            t = step_time(cfg, B, args.repeats if family == "transformer_pp" else max(3, args.repeats // 2))
            fpt = F.train_flops_per_token(cfg)
            tps = B * S / t
            name = (preset or family) + (" (no replay)" if extra else "")
            if base is None:
                base = (t, fpt)
                ratio = flop_ratio = "1"
            else:
                ratio, flop_ratio = f"{t / base[0]:.2f}x", f"{fpt / base[1]:.2f}x"
            print(f"| {name} | {L} | {d} | {S} | {B} | {t * 1e3:.0f} | {tps:,.0f} | {fpt * tps / 1e9:.1f} "
                  f"| {100 * fpt * tps / peak:.0f}% | {ratio} | {flop_ratio} |", flush=True)
    print("\nebt_s2 is timed at a fixed 2 steps (random_extra_steps=0) so its FLOP ratio is exact; with its")
    print("replay buffer each step also carries B/2 replayed rows (1.5x the rows of a T++ step).")


if __name__ == "__main__":
    main()
