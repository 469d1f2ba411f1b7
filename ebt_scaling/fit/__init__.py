"""Fit scaling laws to result rows and compare families (the `ebt-sweep fit` step).

    rows (parquet) --io--> one evaluation per trial --fitting--> laws with
    bootstrap draws --compare--> gains, crossovers, extrapolations --report-->
    fits.csv, report.md, figures

`fit_source` (api.py) runs the fitting chain; ebt_scaling.report.run_fit adds
fits.csv, report.md and figures. The pieces are usable alone:
laws.py holds the named forms, fitting.py the fits and bootstraps,
compare.py the family comparisons, io.py the reading and axis detection.
This package imports nothing from ebt_scaling except results.schema.
"""
from .api import AxisFamilyFit, FitResult, fit_source
from .compare import scaling_rate_gain
from .fitting import fit_chinchilla, fit_line, fit_loglog, fit_saturating
from .laws import ChinchillaLaw, KaplanComputeLaw, LogLogLine, SaturatingPowerLaw

__all__ = ["fit_source", "FitResult", "AxisFamilyFit", "scaling_rate_gain", "fit_chinchilla",
           "fit_line", "fit_loglog", "fit_saturating", "ChinchillaLaw",
           "KaplanComputeLaw", "LogLogLine", "SaturatingPowerLaw"]
