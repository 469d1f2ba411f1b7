"""The Python API: the CLI's tables, as pandas DataFrames.

    from ebt_scaling import load_results, final_points, fit_results, plan

    rows = load_results("results/")             # every row of every trial (the parquet schema)
    pts = final_points(rows)                    # one row per finished trial: what `fit` fits
    res = fit_results("results/", out="analysis/")      # res.table is fits.csv; also writes report.md, figures
    trials = plan("sweeps/depth.yaml")          # what `ebt-sweep plan` prints, one row per trial

Each returns what the matching command shows or writes; nothing here computes
anything the commands do not. (`fit_results`, not `fit`: `ebt_scaling.fit` is the
fitting sub-package, and importing it would replace a root attribute of that name.)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["load_results", "final_points", "fit_results", "plan"]


def load_results(source="results/") -> pd.DataFrame:
    """Every row under `source` (a results folder, a .parquet file or a .csv), one
    DataFrame in the row schema (docs/schema.md); the rows `ebt-sweep fit` reads."""
    from .fit.io import read_results
    return read_results(source).frame.drop(columns=["_file"], errors="ignore")


def final_points(source="results/", metric: str = "val_ppl", select: str = "final") -> pd.DataFrame:
    """One row per trial: its final evaluation (select="final"), or its last or best
    evaluation ("last", "best", which also shows trials still running). Failed trials
    and NaN metrics are left out, as `ebt-sweep fit` leaves them out. `source` is a
    path or a DataFrame from load_results."""
    from .fit.io import Table, read_results, select_points
    table = Table(source, "<DataFrame>", ()) if isinstance(source, pd.DataFrame) else read_results(source)
    return select_points(table, metric=metric, select=select).points.drop(columns=["_file"], errors="ignore")


def fit_results(source="results/", out=None, metric: str = "val_ppl", axes=None, select: str = "final",
        extrapolate: dict | None = None, figures: bool = True, **options):
    """Fit the results at `source` as `ebt-sweep fit` does. Returns a FitResult whose
    `.table` is fits.csv; with `out`, also writes fits.csv, report.md and (unless
    figures=False) the figures there. `options`: baseline, n_boot, n_boot_saturating, seed."""
    from dataclasses import replace

    from .fit.api import fit_source
    from .report import write
    from .report.tables import fits_table
    if out is not None:
        return write(fit_source(source, Path(out), metric, axes, select, extrapolate, **options), figures)
    result = fit_source(source, Path("."), metric, axes, select, extrapolate, **options)
    return replace(result, table=fits_table(result))


def plan(spec, scale: str = "cpu") -> pd.DataFrame:
    """The trials of a sweep spec (a path) as `ebt-sweep plan` lists them, one row each."""
    from .sweep.plan import load_plan, plan_frame
    return plan_frame(load_plan(spec, scale)[1])
