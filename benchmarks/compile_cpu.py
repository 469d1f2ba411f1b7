"""train.compile on CPU: step time and loss, eager against torch.compile, for
Transformer++ (whole forward compiled) and EBT S2 (observed stream compiled only).

    python benchmarks/compile_cpu.py          # prints a markdown table (RESULTS.md)
"""
from __future__ import annotations

import statistics
import time

import torch

from ebt_scaling.config import config_from_dict
from ebt_scaling.models.registry import build_model
from ebt_scaling.train.distributed import Dist
from ebt_scaling.train.loop import accumulate, compile_model, flush_denormals
from ebt_scaling.train.optim import build_optimizer


def run(family: dict, compiled: bool, steps: int = 12, warmup: int = 3):
    cfg = config_from_dict({"model": {"n_layers": 2, "d_model": 128, "n_heads": 2, "vocab_size": 256, **family.get("model", {})},
                            "ebt": family.get("ebt", {}), "data": {"seq_len": 128},
                            "train": {"batch_size": 16, "steps": 100}})
    torch.manual_seed(0)
    model = build_model(cfg)
    if compiled:
        compile_model(model)
    opt = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(1)
    times, losses = [], []
    t_first = None
    for i in range(warmup + steps):
        batch = torch.randint(0, 256, (16, 129), generator=gen)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = accumulate(model, batch, i, cfg, Dist(), 0, False, params)
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step()
        dt = time.perf_counter() - t
        t_first = dt if t_first is None else t_first
        if i >= warmup:
            times.append(dt)
        losses.append(loss)
    return statistics.median(times), t_first, losses


def main():
    flush_denormals()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; L2 d128 V256 S128 B16, fp32, "
          "median of 12 steps after 3\n")
    print("| family | eager ms/step | compiled ms/step | first compiled step s | losses equal |")
    print("|---|---|---|---|---|")
    for name, fam in (("transformer_pp", {"model": {"family": "transformer_pp"}}),
                      ("ebt_s2 (context compiled)", {"model": {"family": "ebt"}, "ebt": {"preset": "ebt_s2"}})):
        e, _, le = run(fam, False)
        c, first, lc = run(fam, True)
        same = "bit for bit" if le == lc else f"max rel diff {max(abs(a / b - 1) for a, b in zip(lc, le)):.1e}"
        print(f"| {name} | {e * 1e3:.0f} | {c * 1e3:.0f} | {first:.1f} | {same} |")


if __name__ == "__main__":
    main()
