"""The fits as a tidy table (fits.csv), a Markdown report (report.md) and a stdout summary.

fits.csv has one row per (sweep, axis, family, law, parameter) with the
estimate and its 95% bootstrap interval, so a notebook can filter it without
knowing the report's layout. report.md is for people: the paper-comparable
scaling-rate table first, then per-axis tables with intervals, crossovers,
extrapolations, and everything that was skipped and why.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..fit.fitting import Interval

TABLE_COLUMNS = ("sweep", "axis", "x_column", "family", "law", "parameter", "estimate",
                 "ci_low", "ci_high", "identified", "n_points", "metric", "note")
NOT_IDENTIFIED = "not identified in this range"


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    v = float(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _ci(iv, digits: int = 4, scale: float = 1.0) -> str:
    est = _fmt(iv.estimate * scale, digits)
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return est
    return f"{est} [{_fmt(iv.low * scale, digits)}, {_fmt(iv.high * scale, digits)}]"


def _ci_id(iv, why: str, digits: int = 4) -> str:
    """An estimate with its interval, or the estimate marked as not identified (no interval)."""
    if why:
        return f"{_fmt(iv.estimate, digits)} ({NOT_IDENTIFIED})"
    return _ci(iv, digits)


def _pct(iv) -> str:
    if not math.isfinite(iv.estimate):
        return "n/a"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return f"{iv.estimate * 100:+.2f}%"
    return f"{iv.estimate * 100:+.2f}% [{iv.low * 100:+.1f}, {iv.high * 100:+.1f}]"


def _cross_cell(cr) -> str:
    x = cr.x.estimate
    if not math.isfinite(x):
        return "none (parallel)"
    share = cr.share_in_range
    if not math.isfinite(share):
        return f"{_fmt(x, 3)} (no interval)"
    if cr.in_range:
        return f"in range: {_fmt(x, 3)} [{_fmt(cr.x.low, 3)}, {_fmt(cr.x.high, 3)}]"
    return f"{share * 100:.0f}% of draws in range"


# ---------------------------------------------------------------- fits.csv
def fits_table(result) -> pd.DataFrame:
    rows = []

    def add(sweep, axis, x_column, family, law, name, iv, n, note="", why=""):
        rows.append({"sweep": sweep, "axis": axis, "x_column": x_column, "family": family, "law": law,
                     "parameter": name, "estimate": iv.estimate, "ci_low": iv.low, "ci_high": iv.high,
                     "identified": f"{NOT_IDENTIFIED}: {why}" if why else "yes",
                     "n_points": n, "metric": result.metric, "note": note})

    for f in result.fits:
        for name, iv in f.line.intervals.items():
            add(f.sweep, f.axis, f.x_column, f.family, "loglog", name, iv, f.line.n_points,
                f"log10({result.metric}) = intercept + slope log10({f.x_column}); {f.line.resampling}")
        if f.saturating is not None:
            for name, iv in f.saturating.intervals.items():
                add(f.sweep, f.axis, f.x_column, f.family, "saturating", name, iv, f.saturating.n_points,
                    "loss = E + A x^-alpha (loss = ln ppl for perplexity metrics)",
                    (f.saturating.identified or {}).get(name, ""))
        for law, ivs in (("kaplan", f.kaplan), ("kaplan_offset", f.kaplan_offset)):
            for name, iv in (ivs or {}).items():
                why = ""
                if law == "kaplan_offset" and f.saturating is not None:
                    why = (f.saturating.identified or {}).get({"alpha_C": "alpha", "C_c": "A"}.get(name, name), "")
                add(f.sweep, f.axis, f.x_column, f.family, law, name, iv, f.line.n_points,
                    "loss = E + (C_c / C)^alpha_C" if law == "kaplan_offset" else "loss = (C_c / C)^alpha_C", why)
    x_col = {(f.sweep, f.axis): f.x_column for f in result.fits}
    for c in result.comparisons:
        xc = x_col.get((c.sweep, c.axis), "")
        label = f"{c.family} vs {c.baseline}"
        add(c.sweep, c.axis, xc, label, "comparison", "slope_difference", c.slope_difference, 0,
            f"slope_{c.family} - slope_{c.baseline} (negative: {c.family}'s loss falls faster); "
            f"Welch t, {c.df:.3g} df; verdict: {c.verdict}")
        add(c.sweep, c.axis, xc, label, "comparison", "p_value_no_difference", Interval(c.p_value, math.nan, math.nan),
            0, "two-sided Welch t test of slope_difference == 0")
        add(c.sweep, c.axis, xc, label, "comparison", "scaling_rate_gain", c.gain, 0,
            "signed slope_family / slope_baseline - 1 (the paper's gain where both slopes are negative)"
            if c.gain_reported else f"not reported: {c.baseline}'s loss does not fall with x in this range")
        add(c.sweep, c.axis, xc, label, "comparison", "crossover_x", c.crossover.x, 0, c.crossover.statement)
        add(c.sweep, c.axis, xc, label, "comparison", "crossover_share_in_range",
            Interval(c.crossover.share_in_range, math.nan, math.nan), 0,
            "share of joint draws whose crossing lies in the measured range")
    for e in result.extrapolations:
        add(e.sweep, e.axis, x_col.get((e.sweep, e.axis), ""), e.family, "extrapolation",
            f"{result.metric}@{e.x:.6g}", e.value, 0, "inside measured range" if e.in_range else "extrapolated")
    for key, ch in result.chinchilla.items():
        for name, iv in ch.intervals.items():
            add(key.split("/")[0] if "/" in key else "", "N,D", "n_params,total_tokens", key.split("/")[-1],
                "chinchilla", name, iv, ch.n_points, "L = E + A/N^alpha + B/D^beta (Huber on log L)",
                (ch.identified or {}).get(name, ""))
    for label, iv in result.chinchilla_extrapolation.items():
        add("", "N,D", "n_params,total_tokens", "chinchilla_points", "extrapolation", label, iv, 0, "")
    for key, iso in result.isoflop.items():
        for name in ("a", "k", "b", "k_prime"):
            add(key.split("/")[0] if "/" in key else "", "isoflop", "flops", key.split("/")[-1], "isoflop",
                name, getattr(iso, name), int(iso.budgets.size), "N* = k C^a, D* = k' C^b")
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


# ---------------------------------------------------------------- LaTeX
def fits_latex(table: pd.DataFrame) -> str:
    """fits.csv as a LaTeX (booktabs) longtable: every parameter with its 95% interval
    at 3 significant digits, and whether it is identified (`fit --latex` writes it)."""
    def g(v):
        return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"
    t = table.copy()
    t["95% interval"] = [f"[{g(lo)}, {g(hi)}]" if g(lo) and g(hi) else "" for lo, hi in zip(t["ci_low"], t["ci_high"])]
    t["estimate"] = [g(v) for v in t["estimate"]]
    if "identified" in t.columns:
        t["identified"] = [str(v).split(":")[0] for v in t["identified"]]
    cols = [c for c in ("sweep", "axis", "family", "law", "parameter", "estimate", "95% interval", "identified",
                        "n_points") if c in t.columns]
    return t[cols].to_latex(index=False, escape=True, longtable=True,
                            caption=r"Fitted parameters with 95\% intervals (ebt-sweep fit; fits.csv)",
                            label="tab:fits")


# ---------------------------------------------------------------- report.md
def write_report(result, path: Path) -> None:
    Path(path).write_text(report_markdown(result))


def _axis_title(sweep: str, axis: str) -> str:
    return f"{axis} (sweep `{sweep}`)" if sweep and sweep != axis else axis


def provenance() -> str:
    """Which code made the report, how, and where: package version, git commit (with
    "+changes" when the package's code has uncommitted edits), command, Python, CPU threads."""
    import os
    import platform
    import shlex
    import subprocess
    import sys

    from .. import __version__
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        # edits to the package's own code (not to outputs such as analysis/ being written)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", str(here.parent)],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        commit = f"git {sha}{'+changes' if dirty else ''}" if sha else "not a git checkout"
    except (OSError, subprocess.SubprocessError):
        commit = "not a git checkout"
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    argv = ["ebt-sweep", *sys.argv[1:]] if prog in ("ebt-sweep", "cli.py") else ["python", *sys.argv]
    return (f"by ebt-scaling {__version__} ({commit}); command `{shlex.join(argv)}`; Python "
            f"{platform.python_version()} on {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPU threads")


def report_markdown(result) -> str:
    L = []
    L.append("# Scaling-law fits\n")
    L.append(f"- source: `{result.source}`")
    L.append(f"- generated: {_dt.datetime.now().isoformat(timespec='seconds')} {provenance()}")
    if result.fits or result.isoflop or not result.thinking.empty:
        L.append(f"- metric: `{result.metric}`; rows: `{result.select}` evaluation of each trial "
                 f"(kind=='final', status=='ok' unless select says otherwise)")
        L.append(f"- {result.n_rows_read} rows read, {result.n_trials} trials fitted, "
                 f"{result.n_failed} failed trial(s) left out")
        L.append(f"- baseline family: `{result.baseline}`")
    L.append("- intervals (95%): the paper's line is fitted to the mean of log10 metric at each distinct x "
             "(seeds of one x are one cluster: they share its learning rate and validation data), with "
             "Student-t intervals on n_x - 2 degrees of freedom; family comparisons: Welch t on the slope "
             "difference, gain and crossover from joint draws of both lines; saturating laws: percentile "
             f"bootstrap over whole x values; Chinchilla and isoFLOP: percentile bootstrap ({result.n_boot} "
             "resamples for lines and isoFLOP, fewer for saturating and Chinchilla fits of result rows: "
             "see the refits column). A parameter at a bound or with a degenerate bootstrap is marked "
             f"\"{NOT_IDENTIFIED}\" and given no interval")
    L.append("")
    if result.notes:
        L.append("## Notes (what was skipped or dropped)\n")
        L += [f"- {n}" for n in result.notes]
        L.append("")
    if result.comparisons:
        L.append("## Scaling rate (the paper's comparison)\n")
        L.append(f"Lines: OLS of log10({result.metric}) on log10(x). Slope difference = slope_family - "
                 "slope_baseline (negative: the family's loss falls faster), tested against 0 by Welch's t "
                 "(p). Gain = slope_family / slope_baseline - 1 on signed slopes: the EBT paper's "
                 "percentage wherever both slopes are negative (e.g. data 35.98%), reported only where the "
                 "baseline's loss falls with x (its slope interval lies below 0); elsewhere the slope "
                 "difference is the comparison. Verdict \"faster\" needs both lines to fall and p < 0.05. "
                 "Crossover: share of joint draws that cross inside the measured range.\n")
        L.append("| axis | family | slope family | slope baseline | slope difference [95% CI] | p | gain [95% CI] "
                 "| verdict | crossover |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for c in result.comparisons:
            gain = _pct(c.gain) if c.gain_reported else f"not reported ({c.baseline} does not fall)"
            L.append(f"| {_axis_title(c.sweep, c.axis)} | {c.family} | {_ci(c.slope_family)} | "
                     f"{_ci(c.slope_baseline)} | {_ci(c.slope_difference)} | {_fmt(c.p_value, 3)} | {gain} | "
                     f"{c.verdict} | {_cross_cell(c.crossover)} |")
        L.append("")
    by_axis: dict = {}
    for f in result.fits:
        by_axis.setdefault((f.sweep, f.axis), []).append(f)
    for (sweep, axis), fits in by_axis.items():
        L.append(f"## Axis: {_axis_title(sweep, axis)} (x = `{fits[0].x_column}`)\n")
        L.append(f"Paper's line: log10({result.metric}) = intercept + slope * log10(x).\n")
        L.append("| family | points | x range | slope [95% CI] | intercept [95% CI] | resampling |")
        L.append("|---|---|---|---|---|---|")
        for f in fits:
            L.append(f"| {f.family} | {f.line.n_points} | {_fmt(f.x.min(), 3)} to {_fmt(f.x.max(), 3)} | "
                     f"{_ci(f.line.intervals['slope'])} | {_ci(f.line.intervals['intercept'])} | "
                     f"{f.line.resampling} |")
        L.append("")
        sats = [f for f in fits if f.saturating is not None]
        if sats:
            L.append("Saturating law on the loss: L = E + A x^-alpha (L = ln ppl for perplexities; "
                     "a straight log-log line under-states the exponent as L nears E).\n")
            if any(np.unique(f.x).size == 4 for f in sats):
                L.append("With 4 distinct x the law's 3 parameters leave one degree of freedom, and "
                         "intervals from resampling 4 x values are rough (their calibration was measured "
                         "at 5-8 x, benchmarks/RESULTS-fit.md).\n")
            L.append("| family | E | A | alpha | refits |")
            L.append("|---|---|---|---|---|")
            for f in sats:
                s, why = f.saturating, f.saturating.identified or {}
                L.append(f"| {f.family} | {_ci_id(s.intervals['E'], why.get('E'))} | "
                         f"{_ci_id(s.intervals['A'], why.get('A'))} | "
                         f"{_ci_id(s.intervals['alpha'], why.get('alpha'))} | {s.n_boot_ok} |")
            L.append("")
            L += [f"- {f.family}: {n}." for f in sats for n in f.saturating.notes]
            if any(f.saturating.notes for f in sats):
                L.append("")
        kap = [f for f in fits if f.kaplan]
        if kap:
            L.append("Kaplan's compute law: L = (C_c/C)^alpha_C, and with an offset E.\n")
            L.append("| family | alpha_C | C_c | offset form: E | alpha_C | C_c |")
            L.append("|---|---|---|---|---|---|")
            for f in kap:
                o = f.kaplan_offset or {}
                why = (f.saturating.identified or {}) if f.saturating is not None else {}
                sat_name = {"E": "E", "alpha_C": "alpha", "C_c": "A"}
                L.append(f"| {f.family} | {_ci(f.kaplan['alpha_C'])} | {_ci(f.kaplan['C_c'], 3)} | "
                         + " | ".join(_ci_id(o[k], why.get(sat_name[k]), 3) if k in o else "n/a"
                                      for k in ("E", "alpha_C", "C_c")) + " |")
            L.append("")
        comps = [c for c in result.comparisons if (c.sweep, c.axis) == (sweep, axis)]
        for c in comps:
            L.append(f"- **{c.family} vs {c.baseline}** ({c.verdict}): {c.basis}"
                     + (f"; scaling-rate gain {_pct(c.gain)}" if c.gain_reported else "")
                     + f". Crossover: {c.crossover.statement}.")
        ex = [e for e in result.extrapolations if (e.sweep, e.axis) == (sweep, axis)]
        for e in ex:
            L.append(f"- {e.family} at x = {_fmt(e.x, 4)}: {result.metric} = {_ci(e.value)} "
                     f"({'interpolated' if e.in_range else 'extrapolated from the line'})")
        L.append("")
    if result.isoflop:
        L.append("## IsoFLOP (compute-optimal allocation)\n")
        L.append("Per budget a parabola of loss in log10 N gives N*; across budgets N* = k C^a, D* = k' C^b.\n")
        L.append("| family | budgets | a | k | b | k' |")
        L.append("|---|---|---|---|---|---|")
        for key, iso in result.isoflop.items():
            L.append(f"| {key} | {iso.budgets.size} | {_ci(iso.a)} | {_ci(iso.k, 3)} | {_ci(iso.b)} | "
                     f"{_ci(iso.k_prime, 3)} |")
        L.append("")
    if result.chinchilla:
        L.append("## Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta\n")
        L.append("Fitted as Epoch AI did: Huber loss (delta 1e-3) on log L (L in nats), BFGS from variable-"
                 "projection starts, tight tolerances; bootstrap over points (trials of one (N, D) together), "
                 "each refit from the estimate and an interior start.\n")
        L.append("| fit | points | E | A | B | alpha | beta |")
        L.append("|---|---|---|---|---|---|---|")
        for key, ch in result.chinchilla.items():
            iv = ch.intervals
            why = ch.identified or {}
            L.append(f"| {key} | {ch.n_points} | " + " | ".join(_ci_id(iv[k], why.get(k)) for k in ("E", "A", "B", "alpha", "beta")) + " |")
        L.append("")
        if "chinchilla_points" in result.chinchilla:
            L.append("Epoch AI (2024) for comparison: A 482.0 (285, 744), B 2085.4 (1042, 5810), "
                     "E 1.817 (1.769, 1.871), alpha 0.3478 (0.317, 0.373), beta 0.3659 (0.331, 0.415).\n")
        for label, iv in result.chinchilla_extrapolation.items():
            L.append(f"- {label} = {_ci(iv)}")
        L.append("")
    if not result.thinking.empty:
        t = result.thinking
        L.append("## Thinking (System 2)\n")
        L.append("Improvement = (metric at the point's default inference - best metric over all thinking "
                 "settings: steps and best-of-N) / metric at the default. Default: one candidate at the steps the point "
                 "was trained and validated with (one forward pass for Transformer++).\n")
        L.append("Interval: 95%, resampling the evaluated sequences and choosing the best setting again in "
                 "each draw (only where `ebt-sweep think` stored per-sequence losses beside its rows; "
                 "n/a otherwise).\n")
        L.append("| family | eval set | ood ratio | default | best | at passes | improvement [95% CI] | sequences |")
        L.append("|---|---|---|---|---|---|---|---|")
        for _, r in t.iterrows():
            lo, hi = r.get("improvement_low", math.nan), r.get("improvement_high", math.nan)
            ci = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else " (no interval: no per-sequence losses)"
            L.append(f"| {r.family} | {r.eval_set} | {_fmt(r.ood_ratio, 3)} | {_fmt(r.metric_1pass)} | "
                     f"{_fmt(r.metric_best)} | {int(r.best_passes)} | {r.improvement_pct:.2f}%{ci} | "
                     f"{int(r.get('n_sequences', 0) or 0)} |")
        L.append("")
    figs = [p for p in result.files if str(p).endswith(".pdf")]
    if figs:
        L.append("## Figures\n")
        L += [f"- [{Path(p).name}]({Path(p).name}) (PNG copy beside it)" for p in figs]
        L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------- stdout
def summary_text(result) -> str:
    lines = [f"fit {result.source}: {len(result.fits)} line fit(s), {len(result.comparisons)} comparison(s)"]
    for c in result.comparisons:
        gain = (f"scaling-rate gain {_pct(c.gain)}" if c.gain_reported
                else f"scaling-rate gain not reported ({c.baseline} does not fall)")
        lines.append(f"  {c.axis:<6} {c.family} vs {c.baseline}: {c.verdict}; slope difference "
                     f"{_ci(c.slope_difference)}, p={_fmt(c.p_value, 3)}; {gain}; crossover {_cross_cell(c.crossover)}")
    if not result.comparisons:
        for f in result.fits:
            lines.append(f"  {f.axis:<6} {f.family}: slope {_ci(f.line.intervals['slope'])}")
    for e in result.extrapolations:
        lines.append(f"  {e.axis} {e.family} at {e.x:.3g}: {result.metric} {_ci(e.value)}")
    for key, ch in result.chinchilla.items():
        iv = ch.intervals
        lines.append(f"  chinchilla {key}: " + ", ".join(f"{k}={_ci(iv[k])}" for k in ("E", "A", "B", "alpha", "beta")))
    for label, iv in result.chinchilla_extrapolation.items():
        lines.append(f"  {label} = {_ci(iv)}")
    for key, iso in result.isoflop.items():
        lines.append(f"  isoflop {key}: N* ~ C^{_ci(iso.a)}, D* ~ C^{_ci(iso.b)}")
    if not result.thinking.empty:
        lines.append(f"  thinking: {len(result.thinking)} family/eval-set rows")
    if result.notes:
        lines.append(f"  {len(result.notes)} note(s), e.g.: {result.notes[0]}")
    lines.append(f"  wrote {len(result.files)} file(s) to {result.out}/ (report.md, fits.csv, figures)")
    return "\n".join(lines)
