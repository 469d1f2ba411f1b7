"""The fits as a tidy table (fits.csv), a Markdown report (report.md), LaTeX tables
(fits.tex, tables.tex) and a stdout summary.

fits.csv has one row per (sweep, axis, family, law, parameter) with the
estimate and its 95% interval at full precision, so a notebook can filter it
without knowing the report's layout. report.md is for people: what made it
(provenance), the paper-comparable scaling-rate table first, then per-axis tables,
isoFLOP, Chinchilla and thinking, every number at 3 significant digits (numbers.py),
and a Terms section that explains each term once. The LaTeX tables carry the same
cells as report.md's.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..fit.fitting import Interval
from .numbers import design, interval, p_value, sig

TABLE_COLUMNS = ("sweep", "axis", "x_column", "family", "law", "parameter", "estimate",
                 "ci_low", "ci_high", "identified", "n_points", "metric", "note")
NOT_IDENTIFIED = "not identified in this range"
# report.md's lines that say what made it rather than what was found: they change from run
# to run (date, commit, command, machine) and are left out when two reports are compared
PROVENANCE_FIELDS = ("source", "generated", "code", "command", "machine")


def _ci_id(iv, why: str) -> str:
    """An estimate with its interval, or the estimate marked as not identified (no interval)."""
    if why:
        return f"{sig(iv.estimate)} ({NOT_IDENTIFIED})"
    return interval(iv)


def _pct(iv) -> str:
    """A fraction as a signed percentage with its interval: +77.0% [-11.6, +180]."""
    return "n/a" if not math.isfinite(iv.estimate) else interval(iv, scale=100, signed=True, unit="%")


def _cross_cell(cr) -> str:
    x = cr.x.estimate
    if not math.isfinite(x):
        return "none (parallel)"
    share = cr.share_in_range
    if not math.isfinite(share):
        return f"{sig(x)} (no interval)"
    if cr.in_range:
        return f"in range: {interval(cr.x)}"
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


# ---------------------------------------------------------------- the report's tables as cells
def comparison_cells(result) -> pd.DataFrame:
    """The scaling-rate table, one row per (axis, family), as the strings report.md and
    tables.tex print."""
    rows = []
    for c in result.comparisons:
        rows.append({
            "axis": _axis_title(c.sweep, c.axis), "family": c.family,
            "slope family": interval(c.slope_family, signed=True),
            "slope baseline": interval(c.slope_baseline, signed=True),
            "slope difference [95% CI]": interval(c.slope_difference, signed=True),
            "p (two-sided)": p_value(c.p_value),
            "gain [95% CI]": _pct(c.gain) if c.gain_reported else f"not reported ({c.baseline} does not fall)",
            "verdict": c.verdict, "crossover": _cross_cell(c.crossover)})
    return pd.DataFrame(rows)


def thinking_cells(result) -> pd.DataFrame:
    """The thinking table, one row per (family, eval set), as report.md and tables.tex print it."""
    rows = []
    for _, r in result.thinking.iterrows():
        lo, hi = r.get("improvement_low", math.nan), r.get("improvement_high", math.nan)
        iv = Interval(r.improvement_pct, lo, hi)
        rows.append({
            "family": r.family, "eval set": r.eval_set, "OOD ratio": sig(r.ood_ratio),
            "default": sig(r.metric_1pass), "best": sig(r.metric_best), "at passes": int(r.best_passes),
            "improvement [95% CI]": interval(iv, signed=True, unit="%")
            + ("" if math.isfinite(lo) else " (no interval: no per-sequence losses)"),
            "sequences": int(r.get("n_sequences", 0) or 0)})
    return pd.DataFrame(rows)


def _markdown_table(cells: pd.DataFrame) -> list[str]:
    cols = list(cells.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return out


# ---------------------------------------------------------------- LaTeX
def fits_latex(table: pd.DataFrame) -> str:
    """fits.csv as a LaTeX (booktabs) longtable: every parameter with its 95% interval
    at 3 significant digits, and whether it is identified (`fit --latex` writes it)."""
    def g(v):
        return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else sig(v)
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


def tables_latex(result) -> str:
    """report.md's scaling-rate and thinking tables as LaTeX (booktabs) tables, the same cells
    (`fit --latex` writes them to tables.tex; needs \\usepackage{booktabs})."""
    parts = [f"% ebt-sweep fit {result.source}: the tables of report.md (booktabs)\n"]
    cells = comparison_cells(result).replace("`", "", regex=True)     # Markdown code quotes
    if len(cells):
        parts.append(cells.to_latex(index=False, escape=True, label="tab:scaling-rate", caption=_tex(
            f"Scaling rate against {result.baseline}: slopes of log10({result.metric}) on log10(x), their "
            "difference with its Welch interval and two-sided p, the gain slope_family / slope_baseline - 1 "
            "(positive: the family improves faster) and where the lines cross. All intervals 95%.")))
    cells = thinking_cells(result)
    if len(cells):
        parts.append(cells.to_latex(index=False, escape=True, label="tab:thinking", caption=_tex(
            "Improvement from thinking: (perplexity at the default inference - the best over thinking "
            "settings) / default, positive when thinking lowers perplexity; 95% intervals from resampling "
            "the evaluated sequences, where they were stored.")))
    return "\n".join(parts)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _tex(text: str) -> str:
    """Plain text for a LaTeX caption: its special characters escaped (one pass)."""
    import re
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX[m.group()], text)


# ---------------------------------------------------------------- report.md
def write_report(result, path: Path) -> None:
    Path(path).write_text(report_markdown(result))


def _axis_title(sweep: str, axis: str) -> str:
    return f"{axis} (sweep `{sweep}`)" if sweep and sweep != axis else axis


def provenance() -> dict[str, str]:
    """What made the report, as report.md's lines: the date (UTC), the code (package version,
    git commit, "+changes" when the package's code has uncommitted edits), the command and
    the machine (Python, OS, CPU threads)."""
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
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return {"generated": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "code": f"ebt-scaling {__version__} ({commit})",
            "command": f"`{shlex.join(argv)}`",
            "machine": f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
                       f"{os.cpu_count()} CPU threads (the fit; where the trials trained is below)"}


def _trained_on(result) -> str:
    if not result.trained_on:
        return ""
    return "; ".join(f"{' '.join(filter(None, (device, dtype)))}: {n} trial(s)" for device, dtype, n in result.trained_on)


def report_markdown(result) -> str:
    L = ["# Scaling-law fits\n", f"- source: `{result.source}`"]
    L += [f"- {k}: {v}" for k, v in provenance().items()]
    if result.trained_on:
        L.append(f"- trials trained on (device, dtype; `cpu-Nt`: N CPU threads): {_trained_on(result)}")
    if result.fits or result.isoflop or not result.thinking.empty:
        L.append(f"- metric: `{result.metric}`; rows: `{result.select}` evaluation of each trial "
                 f"(kind=='final', status=='ok' unless select says otherwise)")
        L.append(f"- {result.n_rows_read} rows read, {result.n_trials} trials fitted, "
                 f"{result.n_failed} failed trial(s) left out")
        L.append(f"- baseline family: `{result.baseline}`")
    L.append(f"- every interval is 95%; numbers at 3 significant digits (p-values at 2); bootstrap: "
             f"{result.n_boot} resamples for lines and isoFLOP fits, the refits column for the others; "
             "terms are explained once, under Terms at the end")
    L.append("")
    if result.notes:
        L.append("## Notes (what was skipped or dropped)\n")
        L += [f"- {n}" for n in result.notes]
        L.append("")
    if result.comparisons:
        L.append("## Scaling rate (the paper's comparison)\n")
        L.append(f"Each family against `{result.baseline}` on each axis: the slopes of the paper's line "
                 f"log10({result.metric}) = intercept + slope log10(x), their difference with its Welch "
                 "interval and two-sided p, the scaling-rate gain (the paper's percentage; positive: the "
                 "family improves faster), the verdict and the crossover.\n")
        L += _markdown_table(comparison_cells(result))
        L.append("")
    by_axis: dict = {}
    for f in result.fits:
        by_axis.setdefault((f.sweep, f.axis), []).append(f)
    for (sweep, axis), fits in by_axis.items():
        L += _axis_section(result, sweep, axis, fits)
    if result.isoflop:
        L.append("## IsoFLOP (compute-optimal allocation)\n")
        L.append("Per budget a parabola of loss in log10 N gives N*; across budgets N* = k C^a, D* = k' C^b.\n")
        L.append("| family | budgets | a | k | b | k' |")
        L.append("|---|---|---|---|---|---|")
        for key, iso in result.isoflop.items():
            L.append(f"| {key} | {iso.budgets.size} | {interval(iso.a)} | {interval(iso.k)} | {interval(iso.b)} | "
                     f"{interval(iso.k_prime)} |")
        L.append("")
    if result.chinchilla:
        L.append("## Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta\n")
        L.append("Fitted as Epoch AI did: Huber loss (delta 1e-3) on log L (L in nats), BFGS from variable-"
                 "projection starts, tight tolerances; bootstrap over points (trials of one (N, D) together), "
                 "each refit from the estimate and an interior start.\n")
        L.append("| fit | points | E | A | B | alpha | beta |")
        L.append("|---|---|---|---|---|---|---|")
        for key, ch in result.chinchilla.items():
            iv, why = ch.intervals, ch.identified or {}
            L.append(f"| {key} | {ch.n_points} | "
                     + " | ".join(_ci_id(iv[k], why.get(k)) for k in ("E", "A", "B", "alpha", "beta")) + " |")
        L.append("")
        if "chinchilla_points" in result.chinchilla:
            L.append("Epoch AI (2024) for comparison: A 482 [285, 744], B 2090 [1040, 5810], "
                     "E 1.82 [1.77, 1.87], alpha 0.348 [0.317, 0.373], beta 0.366 [0.331, 0.415].\n")
        for label, iv in result.chinchilla_extrapolation.items():
            L.append(f"- {label} = {interval(iv)}")
        L.append("")
    if not result.thinking.empty:
        L.append("## Thinking (System 2)\n")
        L.append("Per family and evaluation set: perplexity at the default inference, the best over thinking "
                 "settings (steps and best-of-N) and at how many forward passes, and the improvement from "
                 "thinking (positive: thinking lowers perplexity). Intervals resample the evaluated sequences "
                 "and choose the best setting again in each draw, where `ebt-sweep think` stored per-sequence "
                 "losses beside its rows.\n")
        L += _markdown_table(thinking_cells(result))
        L.append("")
    L += _terms(result)
    figs = [p for p in result.files if str(p).endswith(".pdf")]
    if figs:
        L.append("## Figures\n")
        L.append("Each PDF has a PNG copy and a caption (.txt) beside it that explains every mark.\n")
        for p in figs:
            cap = Path(p).with_suffix(".txt")
            first = cap.read_text().split(". ")[0].strip().rstrip(".") + "." if cap.exists() else ""
            L.append(f"- [{Path(p).name}]({Path(p).name}): {first}")
        L.append("")
    return "\n".join(L)


def _axis_section(result, sweep, axis, fits) -> list[str]:
    L = [f"## Axis: {_axis_title(sweep, axis)} (x = `{fits[0].x_column}`)\n"]
    L.append(f"Paper's line: log10({result.metric}) = intercept + slope log10(x).\n")
    L.append("| family | points | x range | slope [95% CI] | intercept [95% CI] | resampling |")
    L.append("|---|---|---|---|---|---|")
    for f in fits:
        L.append(f"| {f.family} | {f.line.n_points} | {design(f.x.min())} to {design(f.x.max())} | "
                 f"{interval(f.line.intervals['slope'], signed=True)} | {interval(f.line.intervals['intercept'])} | "
                 f"{f.line.resampling} |")
    L.append("")
    sats = [f for f in fits if f.saturating is not None]
    if sats:
        L.append("Saturating law on the loss: L = E + A x^-alpha.\n")
        if any(np.unique(f.x).size == 4 for f in sats):
            L.append("With 4 distinct x the law's 3 parameters leave one degree of freedom, and "
                     "intervals from resampling 4 x values are rough (their calibration was measured "
                     "at 5-8 x, benchmarks/RESULTS-fit.md).\n")
        L.append("| family | E | A | alpha | refits |")
        L.append("|---|---|---|---|---|")
        for f in sats:
            s, why = f.saturating, f.saturating.identified or {}
            L.append(f"| {f.family} | " + " | ".join(_ci_id(s.intervals[k], why.get(k)) for k in ("E", "A", "alpha"))
                     + f" | {s.n_boot_ok} |")
        L.append("")
        L += [f"- {f.family}: {n}." for f in sats for n in f.saturating.notes]
        if any(f.saturating.notes for f in sats):
            L.append("")
    kap = [f for f in fits if f.kaplan]
    if kap:
        L.append("Kaplan's compute law: L = (C_c/C)^alpha_C, and with an offset E.\n")
        L.append("| family | alpha_C | C_c | offset form: E | alpha_C | C_c |")
        L.append("|---|---|---|---|---|---|")
        sat_name = {"E": "E", "alpha_C": "alpha", "C_c": "A"}
        for f in kap:
            o = f.kaplan_offset or {}
            why = (f.saturating.identified or {}) if f.saturating is not None else {}
            L.append(f"| {f.family} | {interval(f.kaplan['alpha_C'])} | {interval(f.kaplan['C_c'])} | "
                     + " | ".join(_ci_id(o[k], why.get(sat_name[k])) if k in o else "n/a"
                                  for k in ("E", "alpha_C", "C_c")) + " |")
        L.append("")
    for c in (c for c in result.comparisons if (c.sweep, c.axis) == (sweep, axis)):
        gain = f"; gain {_pct(c.gain)}" if c.gain_reported else f"; gain not reported ({c.baseline} does not fall)"
        L.append(f"- **{c.family} vs {c.baseline}**: {c.verdict}; slope difference "
                 f"{interval(c.slope_difference, signed=True)}, p = {p_value(c.p_value)}{gain}. "
                 f"Crossover: {c.crossover.statement}.")
    for e in (e for e in result.extrapolations if (e.sweep, e.axis) == (sweep, axis)):
        L.append(f"- {e.family} at x = {sig(e.x)}: {result.metric} = {interval(e.value)} "
                 f"({'interpolated' if e.in_range else 'extrapolated from the line'})")
    L.append("")
    return L


def _terms(result) -> list[str]:
    """Each term the report uses, explained once; only those of the sections present."""
    b = result.baseline
    T = []
    if result.fits:
        T += [("x, n_x", "the swept quantity of an axis and its number of distinct values. The seeds of one x "
                         "share its learning rate and validation data, so they form one cluster: lines are fitted "
                         "to the mean at each x, and resampling draws whole x values."),
              ("slope, intercept", f"of the paper's line log10({result.metric}) = intercept + slope log10(x), OLS "
                                   "through the per-x means; a negative slope: perplexity falls as x grows. Their "
                                   "intervals are Student t on n_x - 2 degrees of freedom (df)."),
              ("resampling", "how a line's interval was obtained (per-x means of the rows, t with df)."),
              ("extrapolated", "a prediction of the line outside the measured x range (--extrapolate).")]
    if result.comparisons:
        T += [("slope difference", f"slope_family - slope_{b}: negative when the family's perplexity falls "
                                   "faster with x."),
              ("Welch interval, p (two-sided)", "the slope difference's interval and test use each line's "
                                                "own standard error and Satterthwaite's degrees of freedom (Welch's "
                                                "t); p is the two-sided chance, were the slopes equal, of a "
                                                "difference at least this large in either direction."),
              ("gain (scaling-rate gain)", f"slope_family / slope_{b} - 1 on the signed slopes; where both "
                                           "fall this is the EBT paper's |slope_EBT| / |slope_T++| - 1 (e.g. "
                                           "+36% for data). Positive: the family's perplexity falls faster "
                                           "(an improvement is positive). Reported only where the baseline's "
                                           "perplexity falls (its slope interval lies below 0); its interval "
                                           "comes from joint draws of both lines."),
              ("verdict", "faster or slower: both lines fall and p < 0.05; no detectable difference: "
                          "p >= 0.05; neither improves, or <family> does not improve: a line whose slope "
                          "interval does not lie below 0."),
              ("crossover", "the x where the two lines meet. % of draws in range: the share of joint draws "
                            "of both lines whose crossing falls inside the measured x range; in range: 95% "
                            "or more of them do.")]
    if any(f.saturating is not None for f in result.fits):
        T += [("saturating law", "L = E + A x^-alpha fitted to the loss L in nats (ln perplexity): E is the "
                                 "floor the loss tends to, alpha the exponent; percentile bootstrap over whole "
                                 "x values."),
              ("refits", "bootstrap refits that converged (of those asked for).")]
    if result.fits or result.chinchilla:
        T.append((NOT_IDENTIFIED, "a parameter at a bound (E at 0: no floor in the data; A or alpha at 0: the "
                                  "loss does not fall) or whose bootstrap interval spans more than 6 orders of "
                                  "magnitude: the data do not determine it, so it has no interval."))
    if any(f.kaplan for f in result.fits):
        T.append(("Kaplan's compute law", "L = (C_c / C)^alpha_C in training FLOPs C, and with an offset, "
                                          "L = E + (C_c / C)^alpha_C (the saturating law in C)."))
    if result.isoflop:
        T.append(("isoFLOP: N*, a, k, b, k'", "N* is a budget's compute-optimal non-embedding parameter count, "
                                             "the minimum of a parabola of loss in log10 N; across budgets N* = "
                                             "k C^a and D* = k' C^b (D* training tokens)."))
    if result.chinchilla:
        T.append(("Chinchilla law", "L(N, D) = E + A/N^alpha + B/D^beta, N non-embedding parameters, D training "
                                    "tokens, L the loss in nats."))
    if not result.thinking.empty:
        T += [("improvement from thinking", "(perplexity at the default - the best perplexity over thinking "
                                            "settings) / perplexity at the default, in percent: positive when "
                                            "thinking lowers perplexity (the README signs it the same way)."),
              ("default", "one candidate at the optimisation steps the point was trained and validated with; "
                          "one forward pass for Transformer++, which cannot think longer."),
              ("forward passes, best-of-N", "optimisation steps x candidates per prediction; best-of-N refines "
                                            "N candidates and keeps the one of lowest energy."),
              ("OOD ratio", "perplexity on an evaluation set over the validation perplexity, at the default "
                            "inference: how far the set lies from the training data.")]
    if not T:
        return []
    return ["## Terms\n"] + [f"- **{k}**: {v}" for k, v in T] + [""]


# ---------------------------------------------------------------- stdout
def summary_text(result) -> str:
    lines = [f"fit {result.source}: {len(result.fits)} line fit(s), {len(result.comparisons)} comparison(s)"]
    for c in result.comparisons:
        gain = (f"scaling-rate gain {_pct(c.gain)}" if c.gain_reported
                else f"scaling-rate gain not reported ({c.baseline} does not fall)")
        lines.append(f"  {c.axis:<6} {c.family} vs {c.baseline}: {c.verdict}; slope difference "
                     f"{interval(c.slope_difference, signed=True)}, p={p_value(c.p_value)}; {gain}; "
                     f"crossover {_cross_cell(c.crossover)}")
    if not result.comparisons:
        for f in result.fits:
            lines.append(f"  {f.axis:<6} {f.family}: slope {interval(f.line.intervals['slope'], signed=True)}")
    for e in result.extrapolations:
        lines.append(f"  {e.axis} {e.family} at {sig(e.x)}: {result.metric} {interval(e.value)}")
    for key, ch in result.chinchilla.items():
        iv = ch.intervals
        lines.append(f"  chinchilla {key}: " + ", ".join(f"{k}={interval(iv[k])}" for k in ("E", "A", "B", "alpha", "beta")))
    for label, iv in result.chinchilla_extrapolation.items():
        lines.append(f"  {label} = {interval(iv)}")
    for key, iso in result.isoflop.items():
        lines.append(f"  isoflop {key}: N* ~ C^{interval(iso.a)}, D* ~ C^{interval(iso.b)}")
    if not result.thinking.empty:
        lines.append(f"  thinking: {len(result.thinking)} family/eval-set rows")
    if result.notes:
        lines.append(f"  {len(result.notes)} note(s), e.g.: {result.notes[0]}")
    lines.append(f"  wrote {len(result.files)} file(s) to {result.out}/ (report.md, fits.csv, figures)")
    return "\n".join(lines)
