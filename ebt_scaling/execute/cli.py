"""`ebt-sweep plan | launch | status`: the sweep subcommands (registered by ebt_scaling.cli)."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from ..config import ConfigError
from .locks import STALL_MINUTES

BACKENDS = ("ray", "local", "slurm")


def register(sub) -> None:
    p = sub.add_parser("plan", help="list a sweep's trials and totals; touches nothing")
    p.add_argument("spec", help="sweep spec, e.g. sweeps/depth.yaml")
    _scale_arg(p)
    p.add_argument("--device-memory", type=float, default=80.0, metavar="GIB",
                   help="memory of the GPU (or host) each trial's ranks train on, for the micro-batch "
                        "column (default 80, an H100/A100 80GB)")
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
    q.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="a trial that fails is tried again at once, in the same slot, until it has had 1+N "
                        "attempts in all (default 2: three). Attempts are counted in "
                        "<results>/<sweep>/_state/manifest.json over every launch, so a later launch "
                        "retries a failed trial only if N is raised. Never retried: configuration errors, "
                        "and a trial that failed twice the same way at the same step. Not counted: a Slurm "
                        "requeue (time limit, preemption), which continues its attempt, and a failure of the "
                        "machine (a full disk, out of memory), which the next launch retries")
    q.add_argument("--steal", action="store_true",
                   help="take over trials whose lock outlived its holder (the holder process is dead but a "
                        "child kept the lock); without it launch names them and stops")
    q.add_argument("--stall-minutes", type=float, default=STALL_MINUTES, metavar="M",
                   help=f"report a trial's lock holder as stalled when it made no progress (no row) for M "
                        f"minutes (default {STALL_MINUTES:g})")
    q.add_argument("--workers", type=int, default=1, help="local: trials at once (default 1)")
    q.add_argument("--in-process", action="store_true", help="local: train inside the launcher (debugging)")
    q.add_argument("--partition", help="slurm partition (default: the spec's backend.slurm.partition)")
    q.add_argument("--time", help="slurm time limit per trial, HH:MM:SS")
    q.add_argument("--mem", help="slurm memory per trial, e.g. 16G")
    q.add_argument("--account", help="slurm account")
    q.add_argument("--gpus", type=int, help="slurm GPUs per trial")
    q.add_argument("--nodes", type=int, help="slurm nodes per trial (its GPUs split evenly, one task per GPU)")
    q.add_argument("--tasks-per-node", type=int, dest="tasks_per_node",
                   help="slurm tasks (ranks) per node of a trial; 0: one task that starts a rank per GPU")
    q.add_argument("--progress-every", type=float, default=15.0, help="seconds between progress lines")
    track_args(q, "<results>/<sweep>/_state/tracking")
    q.set_defaults(func=cmd_launch)

    s = sub.add_parser("status", help="done / running / failed / pending of a sweep")
    s.add_argument("target", help="a sweep spec (with --results) or a results folder")
    _scale_arg(s)
    s.add_argument("--results", default="results", help="results root when target is a spec")
    s.add_argument("--stall-minutes", type=float, default=STALL_MINUTES, metavar="M",
                   help=f"show a running trial as stalled after M minutes without progress (default {STALL_MINUTES:g})")
    s.set_defaults(func=cmd_status)


def track_args(p, default_dir: str) -> None:
    from ..config import TRACKERS
    p.add_argument("--track", metavar="NAMES", help=f"log every row to experiment trackers too: "
                   f"{', '.join(TRACKERS)} (comma-separated; overrides train.track; needs the `track` "
                   f"extra). W&B: set WANDB_MODE=offline to stay offline")
    p.add_argument("--track-dir", help=f"where trackers write (default: {default_dir})")


def check_trackers(track: str, where: str) -> None:
    """Before any work: every tracker named must be known and importable (exit 2 otherwise)."""
    from ..config import TRACKERS, tracker_names
    unknown = [n for n in tracker_names(track) if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"{where}: unknown tracker(s) {unknown}; choose from {', '.join(TRACKERS)} "
                          "(comma-separated)")
    from ..results.trackers import check_available
    try:
        check_available(track, where)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _scale_arg(p) -> None:
    p.add_argument("--scale", default="auto", choices=("auto", "cpu", "paper"),
                   help="the spec's preset: cpu (finishes on a laptop), paper (the paper's sizes) or "
                        "auto (paper when a CUDA GPU is present, else cpu; default)")


def load(spec_path: str, scale: str, out=None):
    out = out or sys.stdout
    from ..sweep import resolve_scale
    from ..sweep.plan import load_plan
    if scale == "auto":
        import torch
        scale, why = resolve_scale("auto", torch.cuda.is_available())
        print(f"scale: {scale} ({why}; pass --scale to choose)", file=out)
    return load_plan(spec_path, scale)


# --------------------------------------------------------------------------- plan
def _wall_here(spec, seconds) -> str:
    """For CPU trials: the wall time of the default launch on this machine, which runs
    cores / resources.cpus trials at a time, longest first (launcher.longest_first), each taking the next free slot
    (the rates were measured that way) and paying the launcher's per-trial overhead
    (rates.json launch_overhead_s); the last trials may run alone."""
    import heapq
    import os
    if spec.resources.gpus or not len(seconds):
        return ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    k = max(1, int(cores // max(1.0, spec.resources.cpus)))
    from ..sweep.plan import rates
    per_trial = float((rates().get(spec.scale or "cpu") or {}).get("launch_overhead_s", 0.0))
    free = [0.0] * k
    for t in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + float(t) + per_trial)
    return f"; about {_dur(max(free))} on this machine's {cores} cores ({k} at a time, as launch runs them)"


def cmd_plan(args, out=None) -> int:
    out = out or sys.stdout
    from ..sweep.plan import plan_frame, rates_note, sci
    spec, trials = load(args.spec, args.scale, out)
    device_gib = getattr(args, "device_memory", 80.0)
    print(f"sweep {spec.name} (x: {spec.x}, scale: {spec.scale or '-'}): {len(trials)} trials, "
          f"families {', '.join(spec.families)}, seeds {list(spec.seeds)}", file=out)
    frame = plan_frame(trials)
    print(f"{'id':12}  {'family':14} {'point':22} {'seed':>4} {'L':>3} {'d':>5} {'H':>3} {'N':>8} "
          f"{'tokens':>8} {'steps':>7} {'lr':>8} {'FLOPs':>8} {'est':>9} {'mem/B':>7} {'micro':>5} {'peak':>7}"
          "  resources", file=out)
    for r, t in zip(frame.itertuples(index=False), trials):
        print(f"{r.id:12}  {r.family:14} {r.point[:22]:22} {r.seed:>4} {r.n_layers:>3} {r.d_model:>5} "
              f"{r.n_heads:>3} {_si(r.n_params):>8} {_si(r.tokens):>8} {r.steps:>7} {sci(r.lr):>8} "
              f"{sci(r.flops):>8} {_dur(r.est_seconds):>9} {_memory(t, device_gib)}  {_res(t.resources)}",
              file=out)
    total = float(frame["est_seconds"].sum()) if len(frame) else 0.0
    print(f"total: {len(trials)} trials, {sci(float(frame['flops'].sum()) if len(frame) else 0.0)} training "
          f"FLOPs, estimated {_dur(total)} one at a time{_wall_here(spec, frame['est_seconds'] if len(frame) else [])}",
          file=out)
    print(f"(estimates from {rates_note(spec)})", file=out)
    print(f"memory (ebt_scaling/memory.py): mem/B = peak GiB of a step on the whole batch (per rank), "
          f"micro = rows per forward that train.micro_batch_size gives on {device_gib:g} GiB "
          "(all = the whole batch), peak = GiB at that micro-batch", file=out)
    return 0


def _memory(t, device_gib: float) -> str:
    """Whole-batch peak, the micro-batch train() will use and its peak (memory.py)."""
    from ..memory import GiB, auto_micro_batch, plan_memory
    from ..sweep.plan import vocab_size
    from dataclasses import replace
    c = t.config
    c = replace(c, model=replace(c.model, vocab_size=vocab_size(c)))
    world = max(1, int(t.resources.gpus))
    autocast = c.train.precision == "bf16" or (c.train.precision == "auto" and t.resources.gpus > 0)
    whole = plan_memory(c, 0, world, autocast).peak
    mb = c.train.micro_batch_size
    try:
        micro = auto_micro_batch(c, int(device_gib * GiB), world, autocast) if mb == "auto" else int(mb)
    except MemoryError:
        return f"{whole / GiB:>7.1f} {'none':>5} {'-':>7}"
    peak = plan_memory(c, micro, world, autocast).peak
    return f"{whole / GiB:>7.1f} {micro or 'all':>5} {peak / GiB:>7.1f}"


# --------------------------------------------------------------------------- launch
def cmd_launch(args, out=None) -> int:
    out = out or sys.stdout
    from .launcher import launch
    spec, trials = load(args.spec, args.scale, out)
    if args.max_retries < 0:
        raise ConfigError("--max-retries: must be >= 0")
    if args.stall_minutes <= 0:
        raise ConfigError("--stall-minutes: must be > 0")
    trials = with_tracking(trials, args.track, args.track_dir)
    from ..train.preflight import check_resources, check_runnable
    for t in trials:        # before any work; Slurm trials run on other machines, with other devices
        check_runnable(t.config, f"{args.spec} [trial {t.family} {t.label} seed {t.seed}]",
                       devices=args.backend != "slurm")
    if args.backend == "ray" and not (args.address or spec.ray.address):     # a cluster started here
        check_resources(spec.resources.cpus, spec.resources.gpus, args.spec)
    for track in sorted({t.config.train.track for t in trials if t.config.train.track}):
        check_trackers(track, "--track" if args.track is not None else f"{args.spec}: base.train.track")
    from ..data.store import prepare
    prepare([t.config for t in trials], out=out)      # token stores, once and under a lock, before any trial
    executor = make_executor(args, spec, trials)
    from .launcher import Terminated
    try:
        counts = launch(trials, executor, args.results, max_retries=args.max_retries,
                        progress_every=args.progress_every, out=out, spec_path=args.spec, scale=spec.scale,
                        stall_minutes=args.stall_minutes, take_over=args.steal)
    except Terminated:
        return 128 + 15          # as a process killed by SIGTERM, without the traceback
    except KeyboardInterrupt:
        return 128 + 2
    return 0 if counts["done"] == counts["total"] else 1


def with_tracking(trials, track: str | None, track_dir: str | None):
    """--track/--track-dir over the spec's train.track (placement keys: ids do not change)."""
    from dataclasses import replace
    if track is None and not track_dir:
        return trials
    out = []
    for t in trials:
        tr = t.config.train
        tr = replace(tr, track=tr.track if track is None else track,
                     track_dir=str(Path(track_dir).resolve()) if track_dir else tr.track_dir)
        out.append(replace(t, config=replace(t.config, train=tr)))
    return out


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
    for flag in ("partition", "time", "mem", "account", "gpus", "nodes", "tasks_per_node"):
        v = getattr(args, flag, None)
        if v is not None:
            opts = replace(opts, **{flag: v})
    from ..sweep.spec import check_ranks
    check_ranks(opts, spec.resources.gpus, "--nodes/--tasks-per-node/--gpus with the spec's resources: ")
    return SlurmExecutor(opts)


# --------------------------------------------------------------------------- status
def cmd_status(args, out=None) -> int:
    out = out or sys.stdout
    from ..results.dataset import PLAN_FILE, STATE_DIR
    from .launcher import read_plan
    from .layout import Layout
    from .state import load_row_index, parquet_path, read_manifest, save_row_index, trial_state
    stall = getattr(args, "stall_minutes", STALL_MINUTES)
    target = Path(args.target)
    if target.is_file():
        spec, trials = load(str(target), args.scale, out)
        layout = Layout(Path(args.results), spec.name)
        entries = {t.id: {"family": t.family, "point": t.point, "seed": t.seed} for t in trials}
    else:
        def plan_of(d):
            return d / STATE_DIR / PLAN_FILE
        dirs = [target] if plan_of(target).exists() else sorted(
            d for d in target.iterdir() if plan_of(d).exists()) if target.is_dir() else []
        if not dirs:
            raise ConfigError(f"{target}: neither a sweep spec nor a results folder with "
                              f"{STATE_DIR}/{PLAN_FILE} (written by `ebt-sweep launch`)")
        if len(dirs) > 1:
            rc = 0
            for d in dirs:
                rc |= cmd_status(argparse.Namespace(target=str(d), scale=args.scale, results=args.results,
                                                    stall_minutes=stall), out)
            return rc
        layout = Layout(dirs[0].parent, dirs[0].name)
        entries = read_plan(layout)
    load_row_index(layout)
    manifest = read_manifest(layout)
    counts = {"done": 0, "running": 0, "failed": 0, "partial": 0, "pending": 0}
    lines = []
    print(f"sweep {layout.sweep} in {layout.dir}:", end=" ", file=out)
    for tid, info in sorted(entries.items(), key=lambda kv: _axis_order(kv[1])):
        ts = trial_state(layout, tid, manifest, stall)
        state, reason, attempts = ts.state, ts.reason, ts.attempts
        counts[state] += 1
        point = " ".join(f"{k}={v}" for k, v in (info.get("point") or {}).items())
        rows_at = parquet_path(layout, tid)
        step, metric, wall = trial_progress(rows_at, manifest.get(tid, {}), state)
        line = (f"  {state:8} {tid}  {info.get('family', ''):14} {point[:24]:24} {info.get('seed', ''):>4} "
                f"{step:>11} {metric:>12} {wall:>8} {attempts:>8}")
        if state in ("failed", "partial") or (state == "pending" and reason):
            line += f"\n           reason: {(reason or '?').splitlines()[0][:200]}\n           log: {layout.log(tid)}"
        elif state == "running":     # the lock's holder, as the lock file names it
            line += f"  (pid {ts.holder.pid} on {ts.holder.host})" + (f"\n           {reason}" if reason else "")
        if rows_at.parent != layout.dir:    # a trial shared with another sweep, stored there once
            line += f"  (rows in {rows_at.parent.name}/)"
        lines.append(line)
    print(f"{counts['done']} done, {counts['running']} running, {counts['failed']} failed, "
          + (f"{counts['partial']} partial, " if counts["partial"] else "")
          + f"{counts['pending']} pending (of {len(entries)})", file=out)
    print(f"  {'state':8} {'id':12}  {'family':14} {'point':24} {'seed':>4} {'step':>11} {'last metric':>12} "
          f"{'wall':>8} {'attempts':>8}", file=out)
    for line in lines:
        print(line, file=out)
    save_row_index(layout)
    return 0 if counts["failed"] + counts["partial"] == 0 else 1


def _axis_order(info: dict):
    """Sort key: the sweep's axis values (numbers and size labels in natural order), then
    family and seed."""
    def natural(v):
        return [(0, float(c), "") if c.replace(".", "", 1).isdigit() else (1, 0.0, c)
                for c in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?|\D+", str(v))]
    point = info.get("point") or {}
    return ([natural(v) for v in point.values()], info.get("family", ""), info.get("seed", 0))


def trial_progress(path: Path, rec: dict, state: str) -> tuple[str, str, str]:
    """(step/total, the latest metric, wall time) as status shows them."""
    from .progress import read_progress
    p = read_progress(path)
    wall = ""
    if state == "running" and rec.get("started"):
        wall = _dur(time.time() - float(rec["started"]))
    elif p and p.get("wall") is not None:
        wall = _dur(p["wall"])
    if not p:
        return ("?" if p is None else ""), "", wall
    metric = (f"val {p['val_loss']:.3f}" if p.get("val_loss") is not None
              else f"train {p['train_loss']:.3f}" if p.get("train_loss") is not None else "")
    return f"{p['step']}/{p['total']}", metric, wall


def _si(n: float) -> str:
    """Counts (parameters, tokens): 7.26k, 1.02M."""
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
