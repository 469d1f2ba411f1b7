"""GPU check of the training path (run by scripts/gpu-check.sh; needs CUDA).

    python benchmarks/gpu_check.py step --family ebt_s2 --steps 8 --json out.json
    torchrun --standalone --nproc-per-node 2 benchmarks/gpu_check.py step --family transformer_pp ...
    python benchmarks/gpu_check.py report DIR         # DIR/*.json -> benchmarks/RESULTS-gpu.md

`step` trains one point of the paper's xxs size (L6 d384, V 50277, context 256) on
random tokens (the GPU machine may have no network for the dataset) through the real
training step (train/loop.py accumulate: micro-batches, gradient sum over ranks, clip,
AdamW) under bf16 autocast, and records tokens/s, MFU on the FLOPs flops.py states and
the peak of torch.cuda.max_memory_allocated against the memory model (memory.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ebt_scaling import flops as F
from ebt_scaling.config import config_from_dict
from ebt_scaling.memory import GiB, plan_memory
from ebt_scaling.models.registry import build_model
from ebt_scaling.train import distributed
from ebt_scaling.train.loop import accumulate, compile_model
from ebt_scaling.train.optim import build_optimizer

FAMILIES = {"transformer_pp": {"model": {"family": "transformer_pp"}},
            "ebt_s1": {"model": {"family": "ebt"}, "ebt": {"preset": "ebt_s1"}},
            "ebt_s2": {"model": {"family": "ebt"}, "ebt": {"preset": "ebt_s2"}}}


def point(family: str, batch: int, micro: int, size: str = "xxs"):
    d = {**FAMILIES[family]}
    d["model"] = {**d["model"], "size": size, "vocab_size": 50277}
    d["data"] = {"seq_len": 256}
    d["train"] = {"batch_size": batch, "steps": 1000, "micro_batch_size": micro, "precision": "bf16"}
    return config_from_dict(d, f"<gpu-check {family}>")


def cmd_step(a) -> None:
    dist, device = distributed.from_env(torch.device("cuda"))
    cfg = point(a.family, a.batch, a.micro, a.size)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if a.compile:
        compile_model(model)
    opt = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    V, S, B = cfg.model.vocab_size, cfg.data.seq_len, cfg.train.batch_size
    gen = torch.Generator(device=device).manual_seed(1)
    times = []
    torch.cuda.reset_peak_memory_stats(device)
    for i in range(a.warmup + a.steps):
        batch = torch.randint(0, V, (B, S + 1), device=device, generator=gen)
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = accumulate(model, batch, i, cfg, dist, a.micro, True, params)
        dist.all_reduce_grads(params)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step(gather=dist.gather_rows if dist.world > 1 else None)
        torch.cuda.synchronize(device)
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    dt = statistics.median(times)
    tps = B * S / dt                                   # global tokens/s (all ranks)
    fpt = F.train_flops_per_token(cfg)
    name = torch.cuda.get_device_name(device)
    peak = F.peak_flops(name, "bf16")
    planned = plan_memory(cfg, a.micro, dist.world, True).peak
    out = dict(family=a.family, size=a.size, batch=B, micro=a.micro, world=dist.world, compile=a.compile,
               device=name, step_s=dt, tokens_per_s=tps, mfu=F.mfu(fpt * tps / dist.world, peak),
               peak_mem_gib=torch.cuda.max_memory_allocated(device) / GiB, model_mem_gib=planned / GiB,
               loss=loss, tag=a.tag)
    if dist.main:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out))
        print(json.dumps(out), flush=True)


def cmd_report(a) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(Path(a.dir).glob("*.json"))]
    lines = ["# GPU check (scripts/gpu-check.sh)", "",
             f"- generated: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- torch {torch.__version__}, {rows[0]['device'] if rows else '?'}; bf16 autocast; xxs = L6 d384, "
             "V 50277, context 256; random tokens; medians of the timed steps", "",
             "| run | family | batch | micro | ranks | compile | step s | tokens/s | MFU | peak GiB | model GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tag']} | {r['family']} | {r['batch']} | {r['micro'] or 'all'} | {r['world']} | "
                     f"{'yes' if r['compile'] else 'no'} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['mfu']:.1%} | {r['peak_mem_gib']:.2f} | {r['model_mem_gib']:.2f} |")
    packed = [r for r in rows if r["tag"].startswith("packed")]
    if packed:
        single = [r for r in rows if r["tag"] == "single" and r["family"] == packed[0]["family"]]
        agg = sum(r["tokens_per_s"] for r in packed)
        lines += ["", f"Packed: {len(packed)} {packed[0]['family']} trials at once on one GPU: "
                      f"{agg:,.0f} tokens/s in aggregate"
                  + (f" against {single[0]['tokens_per_s']:,.0f} for one alone ({agg / single[0]['tokens_per_s']:.2f}x)."
                     if single else ".")]
    extra = Path(a.dir) / "notes.txt"
    if extra.exists():
        lines += ["", extra.read_text().strip()]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("step")
    s.add_argument("--family", choices=list(FAMILIES), required=True)
    s.add_argument("--size", default="xxs")
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--micro", type=int, default=0)
    s.add_argument("--steps", type=int, default=8)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--compile", action="store_true")
    s.add_argument("--tag", default="single")
    s.add_argument("--json", required=True)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--out", default=str(Path(__file__).with_name("RESULTS-gpu.md")))
    a = p.parse_args()
    cmd_step(a) if a.cmd == "step" else cmd_report(a)


if __name__ == "__main__":
    main()
