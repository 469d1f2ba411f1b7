"""The Python API on the shipped study: rows, points, a fit and a plan, as DataFrames.

    python examples/api.py [OUT]        (OUT: where the fit's report goes; default runs/api)
"""
import sys

from ebt_scaling import final_points, fit_results, load_results, plan

out = sys.argv[1] if len(sys.argv) > 1 else "runs/api"

rows = load_results("results/")                    # every row: train, eval, final, think
print(f"{len(rows)} rows of {rows['trial_id'].nunique()} trials")

pts = final_points("results/depth")                # one row per finished trial, what `fit` fits
print(pts.groupby(["family", "n_layers"])["val_ppl"].mean().unstack("family").round(2))

res = fit_results("results/depth", out=out, figures=False, n_boot=200)   # also writes fits.csv, report.md
lines = res.table[(res.table["law"] == "loglog") & (res.table["parameter"] == "slope")]
print(lines[["family", "estimate", "ci_low", "ci_high"]].to_string(index=False))

trials = plan("sweeps/depth.yaml")                 # what `ebt-sweep plan` prints
print(f"{len(trials)} trials planned, about {trials['est_seconds'].sum() / 60:.0f} min one at a time")
