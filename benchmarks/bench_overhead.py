"""What a trial costs the Ray backend beyond its own training: N tiny trials (10 steps of
a one-layer model on the Markov source) launched on an embedded cluster with 2 slots,
with workers reused between trials (the default) and without.

    python benchmarks/bench_overhead.py [--trials 8]

Prints, per mode, the launch's wall time, the trials' own wall times (their rows'
`wall_time`, which includes the trial's set-up) and the overhead per trial:
(slots x launch wall - sum of trial walls) / trials. Figures: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebt_scaling.execute.launcher import launch  # noqa: E402
from ebt_scaling.execute.ray_tune import RayExecutor  # noqa: E402
from ebt_scaling.fit.io import read_results  # noqa: E402
from ebt_scaling.sweep import plan  # noqa: E402
from ebt_scaling.sweep.spec import spec_from_dict  # noqa: E402


def spec(n: int, tag: str) -> dict:
    return {"name": f"overhead_{tag}", "x": "depth", "families": ["transformer_pp"],
            "base": {"model": {"d_model": 32, "n_heads": 2},
                     "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16},
                     "train": {"batch_size": 8, "steps": 10, "eval_every": 10, "eval_tokens": 256, "log_every": 5}},
            "axes": {"depth": list(range(1, n + 1))}, "resources": {"cpus": 1}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    import ray
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 ** 2,
             log_to_driver=False, configure_logging=True, logging_level="WARNING")
    print("| workers | trials | launch wall | sum of trial walls | overhead per trial |\n|---|---|---|---|---|")
    for reuse in (True, False):
        trials = plan(spec_from_dict(spec(args.trials, "reuse" if reuse else "fresh"), "<bench>"))
        root = tempfile.mkdtemp()
        t0 = time.perf_counter()
        launch(trials, RayExecutor(trials=trials, reuse_actors=reuse), root, progress_every=600, out=io.StringIO())
        wall = time.perf_counter() - t0
        own = float(read_results(Path(root) / trials[0].sweep).frame.groupby("trial_id")["wall_time"].max().sum())
        print(f"| {'reused' if reuse else 'one per trial'} | {len(trials)} | {wall:.1f} s | {own:.1f} s | "
              f"{(2 * wall - own) / len(trials):.2f} s |")
    ray.shutdown()


if __name__ == "__main__":
    main()
