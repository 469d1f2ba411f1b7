"""Turn fit results into paper-ready output: tables.py (fits.csv, report.md, the
LaTeX tables, stdout summary), figures.py (PDF + PNG + caption per figure, in the
look of style.py) and numbers.py (how every number is written). Only this layer
draws; it reads the objects ebt_scaling.fit returns and computes no fit of its own.

`run_fit` is what `ebt-sweep fit` calls: fit (ebt_scaling.fit) then write.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..fit.api import FitResult, fit_source


def run_fit(source, out, metric: str = "val_ppl", axes=None, select: str = "final",
            extrapolate: dict | None = None, *, figures: bool = True, latex: bool = False,
            style=None, **fit_options) -> FitResult:
    """Fit the results at `source` and write fits.csv, report.md and figures to `out`
    (and the LaTeX tables with latex=True). `style`: a report.style.FigureStyle (figure
    widths, font size). `fit_options` go to ebt_scaling.fit.fit_source (baseline, n_boot,
    n_boot_saturating, seed)."""
    result = fit_source(source, Path(out), metric, axes, select, extrapolate, **fit_options)
    return write(result, figures, latex, style)


def write(result: FitResult, figures: bool = True, latex: bool = False, style=None) -> FitResult:
    from . import tables
    out = result.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{out}: cannot create the output folder ({err}); pass --out a writable path") from err
    table = tables.fits_table(result)
    files = [out / "fits.csv"]
    table.to_csv(files[0], index=False)
    result = replace(result, table=table)
    if latex:
        files.append(out / "fits.tex")
        files[-1].write_text(tables.fits_latex(table))
        report_tables = tables.tables_latex(result)
        if "\\begin{table}" in report_tables:     # a fit without comparisons or thinking has none
            files.append(out / "tables.tex")
            files[-1].write_text(report_tables)
    if figures:
        from . import figures as figs
        files += figs.write_figures(result, out, style)
    files.append(out / "report.md")
    result = replace(result, files=tuple(files))
    tables.write_report(result, out / "report.md")
    return result


def summary(result: FitResult) -> str:
    """The text `ebt-sweep fit` prints."""
    from .tables import summary_text
    return summary_text(result)
