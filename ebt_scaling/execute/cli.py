"""`ebt-sweep plan | launch | status`: the sweep subcommands (registered by ebt_scaling.cli)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError

BACKENDS = ("ray", "local", "slurm")


def register(sub) -> None:
    p = sub.add_parser("plan", help="list a sweep's trials and totals; touches nothing")
    p.add_argument("spec", help="sweep spec, e.g. sweeps/depth.yaml")
    _scale_arg(p)
    p.set_defaults(func=cmd_plan)

    q = sub.add_parser("launch", help="train every trial of a sweep not done yet (resumable)")
    q.add_argument("spec", help="sweep spec, e.g. sweeps/depth.yaml")
    _scale_arg(q)
    q.add_argument("--backend", choices=BACKENDS, default="ray",
                   help="ray (default: an embedded local cluster, or --address), local (one process per "
                        "trial on this machine) or slurm (job arrays through submitit)")
    q.add_argument("--address", help="Ray: connect to this cluster (e.g. auto or ray://host:10001)")
    q.add_argument("--results", default="results", help="results root (default: results/); rows go "
                   "to <results>/<sweep name>/<trial id>.parquet")
    q.add_argument("--max-retries", type=int, default=2, help="retries of a failed trial across launches "
                   "(default 2: three attempts in all)")
    q.add_argument("--workers", type=int, default=1, help="local: trials at once (default 1)")
    q.add_argument("--in-process", action="store_true", help="local: train inside the launcher (debugging)")
    q.add_argument("--partition", help="slurm partition (default: the spec's backend.slurm.partition)")
    q.add_argument("--time", help="slurm time limit per trial, HH:MM:SS")
    q.add_argument("--mem", help="slurm memory per trial, e.g. 16G")
    q.add_argument("--account", help="slurm account")
    q.add_argument("--gpus", type=int, help="slurm GPUs per trial")
    q.add_argument("--progress-every", type=float, default=15.0, help="seconds between progress lines")
    q.set_defaults(func=cmd_launch)

    s = sub.add_parser("status", help="done / running / failed / pending of a sweep")
    s.add_argument("target", help="a sweep spec (with --results) or a results folder")
    _scale_arg(s)
    s.add_argument("--results", default="results", help="results root when target is a spec")
    s.set_defaults(func=cmd_status)


def _scale_arg(p) -> None:
    p.add_argument("--scale", default="auto", choices=("auto", "cpu", "paper"),
                   help="the spec's preset: cpu (finishes on a laptop), paper (the paper's sizes) or "
                        "auto (paper when a CUDA GPU is present, else cpu; default)")


def load(spec_path: str, scale: str, out=None):
    out = out or sys.stdout
    from ..sweep import load_spec, plan, resolve_scale
    if scale == "auto":
        import torch
        scale, why = resolve_scale("auto", torch.cuda.is_available())
        print(f"scale: {scale} ({why}; pass --scale to choose)", file=out)
    spec = load_spec(spec_path, scale)
    return spec, plan(spec)


# --------------------------------------------------------------------------- plan
def cmd_plan(args, out=None) -> int:
    out = out or sys.stdout
    from ..flops import non_embedding_params
    spec, trials = load(args.spec, args.scale, out)
    print(f"sweep {spec.name} (x: {spec.x}, scale: {spec.scale or '-'}): {len(trials)} trials, "
          f"families {', '.join(spec.families)}, seeds {list(spec.seeds)}", file=out)
    head = f"{'id':12}  {'family':14} {'point':22} {'L':>3} {'d':>5} {'H':>3} {'N':>9} {'tokens':>10} " \
           f"{'steps':>7} {'lr':>8} {'FLOPs':>9} {'est':>9}  resources"
    print(head, file=out)
    for t in trials:
        c, m = t.config, t.config.model
        print(f"{t.id:12}  {t.family:14} {t.label[:22]:22} {m.n_layers:>3} {m.d_model:>5} {m.n_heads:>3} "
              f"{_si(non_embedding_params(c)):>9} {_si(c.total_tokens):>10} {c.total_steps:>7} "
              f"{c.optim.lr:>8.2e} {t.flops:>9.3g} {_dur(t.est_seconds):>9}  {_res(t.resources)}", file=out)
    total = sum(t.est_seconds for t in trials)
    print(f"total: {len(trials)} trials, {sum(t.flops for t in trials):.3g} training FLOPs, "
          f"estimated {_dur(total)} one at a time", file=out)
    return 0


# --------------------------------------------------------------------------- launch
def cmd_launch(args, out=None) -> int:
    out = out or sys.stdout
    from .base import launch
    spec, trials = load(args.spec, args.scale, out)
    if args.max_retries < 0:
        raise ConfigError("--max-retries: must be >= 0")
    from ..data.store import prepare
    prepare([t.config for t in trials], out=out)      # token stores, once and under a lock, before any trial
    executor = make_executor(args, spec, trials)
    counts = launch(trials, executor, args.results, max_retries=args.max_retries,
                    progress_every=args.progress_every, out=out, spec_path=args.spec, scale=spec.scale)
    return 0 if counts["done"] == counts["total"] else 1


def make_executor(args, spec, trials):
    if args.backend == "local":
        from .local import LocalExecutor
        return LocalExecutor(workers=args.workers, in_process=args.in_process)
    if args.backend == "ray":
        from .ray_tune import RayExecutor
        return RayExecutor(address=args.address or spec.ray.address, object_store_mb=spec.ray.object_store_mb,
                           trials=trials)
    from dataclasses import replace
    from .slurm import SlurmExecutor
    opts = spec.slurm
    for flag in ("partition", "time", "mem", "account", "gpus"):
        v = getattr(args, flag, None)
        if v is not None:
            opts = replace(opts, **{flag: v})
    return SlurmExecutor(opts)


# --------------------------------------------------------------------------- status
def cmd_status(args, out=None) -> int:
    out = out or sys.stdout
    from .base import Layout, read_json, read_manifest, trial_state
    target = Path(args.target)
    if target.is_file():
        spec, trials = load(str(target), args.scale, out)
        layout = Layout(Path(args.results), spec.name)
        entries = {t.id: {"family": t.family, "point": t.point} for t in trials}
    else:
        dirs = [target] if (target / "plan.json").exists() else sorted(
            d for d in target.iterdir() if (d / "plan.json").exists()) if target.is_dir() else []
        if not dirs:
            raise ConfigError(f"{target}: neither a sweep spec nor a results folder with plan.json "
                              "(written by `ebt-sweep launch`)")
        if len(dirs) > 1:
            rc = 0
            for d in dirs:
                rc |= cmd_status(argparse.Namespace(target=str(d), scale=args.scale, results=args.results), out)
            return rc
        layout = Layout(dirs[0].parent, dirs[0].name)
        entries = read_json(dirs[0] / "plan.json", {}).get("trials", {})
    manifest = read_manifest(layout)
    counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
    lines = []
    for tid, info in entries.items():
        state, reason, attempts = trial_state(layout, tid, manifest)
        counts[state] += 1
        point = " ".join(f"{k}={v}" for k, v in (info.get("point") or {}).items())
        line = f"  {state:8} {tid}  {info.get('family', ''):14} {point:24} attempts {attempts}"
        if state == "failed":
            line += f"\n           reason: {(reason or '?').splitlines()[0][:200]}\n           log: {layout.log(tid)}"
        elif state == "running":
            line += f"  (pid {manifest.get(tid, {}).get('pid', '?')} on {manifest.get(tid, {}).get('host', '?')})"
        lines.append(line)
    print(f"sweep {layout.sweep} in {layout.dir}: {counts['done']} done, {counts['running']} running, "
          f"{counts['failed']} failed, {counts['pending']} pending (of {len(entries)})", file=out)
    for line in sorted(lines, key=lambda s: ("running", "failed", "pending", "done").index(s.split()[0])):
        print(line, file=out)
    return 0 if counts["failed"] == 0 else 1


def _si(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def _dur(s: float) -> str:
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def _res(r) -> str:
    g = f", {r.gpus:g} GPU" if r.gpus else ""
    return f"{r.cpus:g} CPU{g}"
