"""The launcher's bookkeeping at scale: one round's scan (launcher.scan: the manifest,
every trial's rows and lock) and one progress line (progress.Progress.report), over a
sweep of N planned trials with a realistic mix of states on disk.

    python benchmarks/bench_launcher.py [--trials 1000] [--repeats 5]

Prints the first (cold: every parquet file read once) and the median of the following
(warm: only files that changed are read) times. Figures: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebt_scaling.execute import state  # noqa: E402
from ebt_scaling.execute.launcher import scan, write_plan  # noqa: E402
from ebt_scaling.execute.layout import Layout, write_json_atomic  # noqa: E402
from ebt_scaling.execute.locks import TrialLock  # noqa: E402
from ebt_scaling.execute.progress import Progress  # noqa: E402
from ebt_scaling.results.schema import Row  # noqa: E402
from ebt_scaling.results.store import write_rows_atomic  # noqa: E402
from ebt_scaling.sweep import plan  # noqa: E402
from ebt_scaling.sweep.spec import spec_from_dict  # noqa: E402

HELD: list = []      # locks of the "running" trials, held while measuring


def build(root: Path, n: int):
    """A sweep of n trials: 60% done, 10% failed, 5% partial, 1% running, the rest pending,
    each with 12 rows (eval every 10 of 100 steps) and a manifest record with history."""
    spec = spec_from_dict({"name": "big", "x": "depth", "families": ["transformer_pp"], "seeds": list(range(n)),
                           "base": {"model": {"n_layers": 1, "d_model": 32, "n_heads": 2},
                                    "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16},
                                    "train": {"batch_size": 8, "steps": 100, "eval_every": 10,
                                              "eval_tokens": 256}},
                           "axes": {"depth": [1]}}, "<bench>")
    trials = plan(spec)
    layout = Layout(root, "big")
    layout.make()
    write_plan(layout, trials, "<bench>", "cpu")
    records = {}
    for i, t in enumerate(trials):
        kind = ("done" if i % 100 < 60 else "failed" if i % 100 < 70 else "partial" if i % 100 < 75
                else "running" if i % 100 < 76 else "pending")
        if kind == "pending":
            continue
        last = 100 if kind in ("done", "failed") else 40
        rows = [Row(trial_id=t.id, family=t.family, kind="eval", step=s, total_steps=100, train_loss=3.0,
                    val_loss=2.5, status="running", wall_time=float(s)) for s in range(10, last + 1, 10)]
        if kind in ("done", "failed"):
            rows.append(Row(trial_id=t.id, family=t.family, kind="final", step=100, total_steps=100,
                            val_loss=2.0, status="ok" if kind == "done" else "failed",
                            error="" if kind == "done" else "PointFailed: boom", wall_time=100.0))
        write_rows_atomic(rows, layout.parquet(t.id))
        records[t.id] = {"attempts": 1, "status": {"done": "ok", "partial": "interrupted"}.get(kind, kind),
                         "error": "", "wall_time": 100.0, "started": time.time() - 50,
                         "history": [{"attempt": 1, "status": "ok", "error": "", "step": 100}]}
        if kind == "running":
            lock = TrialLock(layout.lock(t.id))
            lock.acquire()
            HELD.append(lock)
    write_json_atomic(layout.manifest, {"sweep": "big", "trials": records})
    return layout, trials


def measure(layout: Layout, trials, repeats: int = 5, index: bool = False) -> dict:
    """Times from a fresh process's point of view: no rows cached in memory; `index`:
    as a launcher that finds _state/rows-index.json (written by an earlier one) starts."""
    state._row_cache.clear()
    state._sibling_cache.clear()
    if index:
        state.load_row_index(layout)
    prog = Progress(layout, trials, parallelism=4, out=io.StringIO(), max_attempts=3)
    rounds, lines = [], []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        scan(layout, trials, 3)
        rounds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        prog.report()
        lines.append(time.perf_counter() - t0)
    return {"round_cold_s": rounds[0], "round_s": statistics.median(rounds[1:]),
            "progress_s": statistics.median(lines[1:]), "progress_after_cold_s": lines[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        layout, trials = build(Path(d), args.trials)
        print(f"built {len(trials)} trials in {time.perf_counter() - t0:.1f} s")
        fig = measure(layout, trials, args.repeats)
        again = measure(layout, trials, args.repeats, index=True)
    print(f"launcher round: first {fig['round_cold_s']:.3f} s (every parquet read), then {fig['round_s']:.3f} s "
          f"(median of {args.repeats})")
    print(f"progress line: {fig['progress_s']:.3f} s (median of {args.repeats}; the first after the cold round "
          f"{fig['progress_after_cold_s']:.3f} s)")
    print(f"a launcher that starts with the rows index of an earlier one: first round {again['round_cold_s']:.3f} s, "
          f"then {again['round_s']:.3f} s; progress line {again['progress_s']:.3f} s")


if __name__ == "__main__":
    main()
