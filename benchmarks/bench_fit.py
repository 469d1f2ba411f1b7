"""Benchmark `ebt-sweep fit`: read 1e5 result rows, fit every axis, 1000 bootstrap refits.

    .venv/bin/python benchmarks/bench_fit.py [--rows 100000] [--n-boot 1000] [--keep DIR]

Writes a synthetic results folder in the real row schema (five sweeps, three
families, three seeds, training/eval/final rows plus System-2 rows, with lines
planted at the EBT paper's scaling-rate gains), then times each stage of
`run_fit` and prints the figures. The latest output is kept in
benchmarks/RESULTS-fit.md.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ebt_scaling import report as api
from ebt_scaling.fit import io as rio
from ebt_scaling.results.schema import COLUMNS, Row, arrow_schema

# Planted log10(ppl) = intercept + slope * log10(x); EBT slopes from the paper's gains.
PLANTED = {  # axis: (x values, T++ slope, gain of ebt_s1, gain of ebt_s2, T++ intercept)
    "data": ([1e8, 2e8, 4e8, 8e8, 1.6e9], -0.10, 0.3598, 0.30, 2.6),
    "batch": ([4096, 8192, 16384, 32768, 65536], -0.08, 0.2846, 0.25, 2.1),
    "depth": ([2, 4, 6, 12, 24], -0.12, 0.0529, 0.04, 1.9),
    "width": ([128, 256, 384, 768, 1024], -0.15, 0.0002, 0.01, 2.2),
    "params": ([6.18e6, 1.24e7, 4.88e7, 1.76e8, 3.96e8], -0.11, 0.0291, 0.02, 2.5),
}
FAMILIES = ("transformer_pp", "ebt_s1", "ebt_s2")
COLUMN_OF = {"data": "total_tokens", "batch": "batch_tokens", "depth": "n_layers", "width": "d_model",
             "params": "n_params"}


def synthetic_frame(n_rows: int, seeds: int = 3, noise: float = 0.004, rng=None) -> pd.DataFrame:
    """About n_rows rows: every trial logs train/eval rows, then one final row."""
    rng = rng or np.random.default_rng(0)
    defaults = Row(trial_id="", family="", kind="").asdict()
    trials = []
    for axis, (xs, slope, g1, g2, intercept) in PLANTED.items():
        for fam, gain, offset in zip(FAMILIES, (0.0, g1, g2), (0.0, 0.08, 0.06)):
            s = slope * (1 + gain)
            a = intercept + offset + (slope - s) * np.log10(xs[2])   # cross near the middle
            for x in xs:
                for seed in range(seeds):
                    trials.append((axis, fam, x, seed, 10 ** (a + s * np.log10(x) + rng.normal(0, noise))))
    n_trials = len(trials)
    per_trial = max(2, n_rows // n_trials)
    cols = {c: [] for c in COLUMNS}
    steps = np.arange(1, per_trial + 1)
    for i, (axis, fam, x, seed, ppl) in enumerate(trials):
        base = dict(defaults, trial_id=f"t{i:05d}", family=fam, sweep=axis, seed=seed,
                    n_layers=12, d_model=384, n_heads=6, d_ffn=384, vocab_size=50277, seq_len=256,
                    batch_size=128, batch_tokens=32768, total_steps=int(per_trial),
                    total_tokens=int(4e8), n_params=int(1.24e7), status="ok")
        base[COLUMN_OF[axis]] = x
        if axis == "params":
            base["total_tokens"] = int(105_000 * 32 * 256)
        flops = 6.0 * base["n_params"] * base["total_tokens"] * (1.0 if fam == "transformer_pp" else 6.66)
        kinds = np.where(steps % 10 == 0, "eval", "train")
        kinds[-1] = "final"
        decay = 1.0 + 4.0 * np.exp(-steps / max(per_trial / 5, 1))
        for k, col in base.items():
            cols[k].extend([col] * per_trial)
        cols["kind"][-per_trial:] = list(kinds)
        cols["step"][-per_trial:] = list(steps)
        cols["flops"][-per_trial:] = list(flops * steps / per_trial)
        cols["tokens"][-per_trial:] = list((base["total_tokens"] * steps / per_trial).astype(int))
        cols["val_ppl"][-per_trial:] = list(ppl * decay)
        cols["val_loss"][-per_trial:] = list(np.log(ppl * decay))
    frame = pd.DataFrame(cols, columns=list(COLUMNS))
    for c, t in zip(COLUMNS, arrow_schema().types):
        if pa.types.is_integer(t):
            frame[c] = frame[c].astype("int64")
    return frame


def thinking_frame() -> pd.DataFrame:
    rows = []
    for fam in FAMILIES:
        for eval_set, ood in (("val", 1.0), ("ood:gsm8k", 1.6), ("ood:dyck", 4.37)):
            for steps in (1, 2, 3, 6, 15):
                for cands in (1, 4):
                    gain = 0.0 if fam == "transformer_pp" else (0.1 + 0.03 * ood) * (1 - 1 / steps) * (1 + 0.1 * (cands > 1))
                    ppl = 30 * ood * (1 - gain)
                    rows.append(Row(trial_id=f"think-{fam}", family=fam, kind="think", sweep="thinking",
                                    eval_set=eval_set, think_steps=steps, n_candidates=cands,
                                    forward_passes=steps * cands, ood_ratio=ood, val_ppl=ppl).asdict())
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_results(frame: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for sweep, part in frame.groupby("sweep"):
        pq.write_table(pa.Table.from_pandas(part, schema=arrow_schema(), preserve_index=False),
                       folder / f"{sweep}.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--keep", type=Path, default=None, help="write the results and analysis here")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_fit_"))
    t0 = time.perf_counter()
    frame = pd.concat([synthetic_frame(args.rows), thinking_frame()], ignore_index=True)
    write_results(frame, root / "results")
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    table = rio.read_results(root / "results")
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    sel = rio.select_points(table)
    t_select = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = api.run_fit(root / "results", root / "analysis", n_boot=args.n_boot,
                         extrapolate={"data": 1e10}, figures=False)
    t_fit_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = api.run_fit(root / "results", root / "analysis", n_boot=args.n_boot,
                         extrapolate={"data": 1e10}, figures=True)
    t_with_figs = time.perf_counter() - t0

    n_sat = sum(f.saturating is not None for f in result.fits)
    print(f"machine: {platform.machine()} {platform.python_implementation()} {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"rows: {len(table.frame)} read from {len(table.files)} parquet files "
          f"({sel.n_trials} trials with a final row)")
    print(f"generate + write parquet:   {t_gen:7.2f} s")
    print(f"read parquet:               {t_read:7.2f} s")
    print(f"select final rows:          {t_select:7.2f} s")
    print(f"run_fit without figures:    {t_fit_total:7.2f} s  ({len(result.fits)} line fits with "
          f"{args.n_boot} t draws each, {n_sat} saturating fits x 200 bootstrap refits, "
          f"{len(result.comparisons)} comparisons, thinking table)")
    print(f"run_fit with figures:       {t_with_figs:7.2f} s  ({sum(str(p).endswith('.pdf') for p in result.files)} PDFs + PNGs)")
    print("recovered scaling-rate gains [95% CI] (planted in parentheses; 3 seeds x 5 points, "
          "noise sd 0.004 in log10 ppl, so misses of a few points are sampling noise):")
    for c in result.comparisons:
        axis = "params" if c.axis == "flops" else c.axis       # same runs: FLOPs are a multiple of N
        planted = PLANTED[axis][2 if c.family == "ebt_s1" else 3]
        print(f"  {c.axis:<6} {c.family:<7} {c.gain.estimate * 100:+7.2f}% "
              f"[{c.gain.low * 100:+.2f}, {c.gain.high * 100:+.2f}]  ({planted * 100:+.2f}%)  "
              f"p={c.p_value:.3g}, {c.verdict}")
    chin = Path(__file__).resolve().parents[2] / "shared/data/chinchilla_points.csv"
    if chin.exists():
        t0 = time.perf_counter()
        res = api.run_fit(chin, root / "chinchilla", n_boot=args.n_boot, figures=False)
        t_chin = time.perf_counter() - t0
        iv = res.chinchilla["chinchilla_points"].intervals
        print(f"Chinchilla points (240 after dropping 5): fit + {args.n_boot} bootstrap refits {t_chin:.2f} s")
        print("  " + ", ".join(f"{k} {iv[k].estimate:.4g} [{iv[k].low:.4g}, {iv[k].high:.4g}]"
                               for k in ("E", "A", "B", "alpha", "beta")))
    print(f"output: {root}")


if __name__ == "__main__":
    main()
