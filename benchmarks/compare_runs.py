"""Two runs of the study side by side: how far a rerun's trials and fits moved.

    python benchmarks/compare_runs.py OLD_RESULTS NEW_RESULTS [--old-fits F --new-fits F]

Per sweep, for the trial ids both runs trained (an unchanged spec plans the same ids):
the largest |difference| of the final validation loss, per family, and the ratio of
their wall times. With --old-fits / --new-fits (analysis/fits.csv of each run): how many
of the new run's fitted numbers fall inside the old run's 95% intervals, by (sweep,
axis, family, law, parameter), and which do not. Figures: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ebt_scaling import load_results  # noqa: E402


def finals(root: str) -> pd.DataFrame:
    df = load_results(root)
    f = df[df["kind"] == "final"].drop_duplicates("trial_id", keep="last")
    return f.set_index("trial_id")[["sweep", "family", "val_loss", "wall_time"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--old-fits")
    ap.add_argument("--new-fits")
    a = ap.parse_args()
    old, new = finals(a.old), finals(a.new)
    both = old.join(new, lsuffix="_old", rsuffix="_new", how="inner")
    both = both[both["sweep_old"] == both["sweep_new"]]
    both["dloss"] = (both["val_loss_new"] - both["val_loss_old"]).abs()
    both["wall"] = both["wall_time_new"] / both["wall_time_old"]
    print("| sweep | family | trials in both | max abs diff of final val loss | median wall new/old |")
    print("|---|---|---|---|---|")
    for (sweep, fam), g in both.groupby(["sweep_old", "family_old"]):
        print(f"| {sweep} | {fam} | {len(g)} | {g['dloss'].max():.2e} | {g['wall'].median():.2f} |")
    if a.old_fits and a.new_fits:
        key = ["sweep", "axis", "family", "law", "parameter"]
        f = pd.read_csv(a.old_fits).merge(pd.read_csv(a.new_fits), on=key, suffixes=("_old", "_new"))
        f = f[f["ci_low_old"].notna() & f["estimate_new"].notna()]
        inside = (f["estimate_new"] >= f["ci_low_old"]) & (f["estimate_new"] <= f["ci_high_old"])
        print(f"\nfitted numbers of the new run inside the old run's 95% intervals: {int(inside.sum())} of {len(f)}")
        for r in f[~inside].itertuples():
            print(f"  outside: {r.sweep} {r.axis} {r.family} {r.law} {r.parameter}: {r.estimate_new:.4g} "
                  f"against [{r.ci_low_old:.4g}, {r.ci_high_old:.4g}]")


if __name__ == "__main__":
    main()
