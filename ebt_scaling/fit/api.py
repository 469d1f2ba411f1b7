"""`fit_source`: results in, fits out (ebt_scaling.report.run_fit adds the writing).

    fit_source(source, out, metric="val_ppl", axes=None, select="final",
               extrapolate=None, *, baseline="transformer_pp", n_boot=1000,
               n_boot_saturating=200, seed=0) -> FitResult

Pipeline: read rows (io) -> each trial's final evaluation -> which axes each
sweep varied -> per (sweep, axis, family): the paper's log-log line with
bootstrap draws, and the saturating law where there are >= 4 distinct x ->
each non-baseline family against the baseline (gain, p-value, crossover) ->
extrapolations -> isoFLOP and Chinchilla fits where the design allows. The report
layer turns the FitResult into fits.csv, report.md and figures. Anything that cannot be fitted becomes a note
and the rest is still fitted; only input that yields nothing raises.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import io as rio
from .compare import (Comparison, Extrapolation, compare_lines, extrapolate_line,
                      thinking_table)
from .fitting import (NOT_IDENTIFIED, ChinchillaFit, Interval, IsoFlopFit, LineFit, SaturatingFit,
                      bootstrap_weights, fit_chinchilla, fit_isoflop, group_budgets, fit_line, fit_saturating,
                      percentile_interval)
from .laws import KaplanComputeLaw

CHINCHILLA_DROP_HIGHEST = 5   # Epoch AI dropped the 5 highest losses before fitting


@dataclass(frozen=True, eq=False)
class AxisFamilyFit:
    """Everything fitted for one family along one axis of one sweep."""

    sweep: str
    axis: str
    x_column: str
    family: str
    x: np.ndarray
    y: np.ndarray                      # the metric (e.g. val_ppl)
    line: LineFit                      # log10 y on log10 x (the paper's line)
    saturating: SaturatingFit | None   # loss = E + A x^-alpha, when >= 4 distinct x
    kaplan: dict[str, Interval] | None = None          # flops axis: L = (C_c / C)^alpha_C
    kaplan_offset: dict[str, Interval] | None = None   # flops axis: L = E + (C_c / C)^alpha_C


@dataclass(frozen=True, eq=False)
class FitResult:
    """What `fit_source` found (and, once ebt_scaling.report has written it, the files)."""

    source: str
    out: Path
    metric: str
    select: str
    baseline: str
    n_boot: int
    fits: tuple[AxisFamilyFit, ...]
    comparisons: tuple[Comparison, ...]
    extrapolations: tuple[Extrapolation, ...]
    chinchilla: dict[str, ChinchillaFit]
    isoflop: dict[str, IsoFlopFit]
    thinking: pd.DataFrame
    table: pd.DataFrame
    notes: tuple[str, ...]
    files: tuple[Path, ...] = ()
    n_rows_read: int = 0
    n_trials: int = 0
    n_failed: int = 0
    chinchilla_extrapolation: dict[str, Interval] = field(default_factory=dict)
    think_rows: pd.DataFrame = field(default_factory=pd.DataFrame)   # kind=='think' rows, for figures
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)       # validation loss along training, for figures
    trained_on: tuple = ()          # (device, dtype, trials) of the fitted trials, from their rows


def fit_source(source, out, metric: str = "val_ppl", axes=None, select: str = "final",
               extrapolate: dict | None = None, *, baseline: str = rio.BASELINE, n_boot: int = 1000,
               n_boot_saturating: int = 200, seed: int = 0) -> FitResult:
    """Fit every varied axis of the results at `source` (`out` is where the report goes).

    source: a results folder (all *.parquet below it), one .parquet, or a .csv
        (result rows, or the Chinchilla points: "Model Size", "Training FLOP", "loss").
    metric: the column fitted (log10 metric on log10 x, the paper's line).
    axes: axis names (data, batch, depth, width, params, flops) or columns to
        fit on every sweep; None detects them from the sweep names and data.
    select: "final" (kind=='final', status=='ok' rows), "last" or "best" eval row.
    extrapolate: {axis: x}, e.g. {"data": 1e12}: predicted metric with an interval.
    n_boot: bootstrap refits for lines, isoFLOP fits and the Chinchilla points
        CSV; n_boot_saturating for the per-family saturating and Chinchilla
        fits of result rows (an iterative refit each).
    """
    out = Path(out)
    if n_boot < 0 or n_boot_saturating < 0:
        raise ValueError("n_boot and n_boot_saturating must be >= 0")
    extrapolate = _parse_extrapolate(extrapolate)
    table = rio.read_results(source)
    if table.is_chinchilla:
        result = _run_chinchilla_points(table, out, n_boot, seed, extrapolate)
    else:
        result = _run_results(table, out, metric, axes, select, extrapolate, baseline,
                              n_boot, n_boot_saturating, seed)
    return result


def _parse_extrapolate(extrapolate) -> dict[str, float]:
    if not extrapolate:
        return {}
    if not isinstance(extrapolate, dict):
        raise ValueError("extrapolate must be a dict {axis: x}, e.g. {'data': 1e12}")
    parsed = {}
    for axis, value in extrapolate.items():
        try:
            parsed[str(axis)] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"extrapolate {axis}={value!r}: not a number; write e.g. data=1e12") from None
        if not parsed[str(axis)] > 0:
            raise ValueError(f"extrapolate {axis}={value!r}: must be > 0 (axes are fitted in log space)")
    return parsed


def _rng(seed: int, *labels) -> np.random.Generator:
    """A generator per fit, independent of the order fits run in (reproducible reruns)."""
    key = zlib.crc32("/".join(map(str, labels)).encode())
    return np.random.default_rng([seed, key])


# ---------------------------------------------------------------- result rows
def _run_results(table, out, metric, axes, select, extrapolate, baseline, n_boot, n_boot_sat, seed):
    sel = rio.select_points(table, metric=metric, select=select)
    rio.check_val_hash(sel.points)
    points = sel.points
    notes = list(sel.notes)
    if not metric.endswith("ppl"):
        notes.insert(0, f"metric {metric!r} is not a perplexity: the lines are log10({metric}) on log10(x), "
                        "a different law from the paper's log10(perplexity) line, so their slopes and gains "
                        "are not comparable with the paper's")
    plans, plan_notes = rio.plan_axes(points, axes)
    notes += plan_notes
    fits: list[AxisFamilyFit] = []
    iso_sweeps = {sw for sw, rows in points.groupby("sweep") if _is_isoflop(sw, rows, axes)}
    for plan in plans:
        rows = points[points["sweep"] == plan.sweep]
        label = f"sweep {plan.sweep!r}, axis {plan.axis}" if plan.sweep else f"axis {plan.axis}"
        if plan.x_column not in rows.columns:
            notes.append(f"{label}: results have no column {plan.x_column!r}; axis skipped")
            continue
        if plan.sweep in iso_sweeps and axes is None:
            if plan.axis != "flops":
                notes.append(f"{label}: an isoFLOP design varies N within each budget, so no "
                             f"{plan.axis} line is fitted; see the IsoFLOP section")
                continue
            rows = _frontier(rows, metric)
            notes.append(f"{label}: isoFLOP design, so the FLOPs line is fitted to each budget's "
                         "lowest-loss trial (the compute-efficient frontier)")
        for family, g in rows.groupby("family", sort=True):
            fit = _fit_family(plan, family, g, metric, n_boot, n_boot_sat, seed, notes, label)
            if fit is not None:
                fits.append(fit)
    comparisons = _compare(fits, baseline, notes, seed)
    extrapolations = _extrapolate(fits, extrapolate, notes)
    isoflop, chinchilla = _isoflop_and_chinchilla(points, metric, n_boot, n_boot_sat, seed, notes, axes)
    think = rio.select_think(table)
    thinking = (thinking_table(think, metric, baseline, sequences=rio.select_sequences(table),
                               rng=_rng(seed, "thinking")) if len(think) else pd.DataFrame())
    if not fits and not isoflop and thinking.empty:
        raise ValueError(f"{table.source}: nothing could be fitted: " + "; ".join(notes or ["no axis varies"])
                         + ". Each family needs >= 2 points at distinct values of the swept axis")
    return FitResult(source=table.source, out=out, metric=metric, select=select, baseline=baseline,
                     n_boot=n_boot, fits=tuple(fits), comparisons=tuple(comparisons),
                     extrapolations=tuple(extrapolations), chinchilla=chinchilla, isoflop=isoflop,
                     thinking=thinking, table=pd.DataFrame(), notes=tuple(notes),
                     n_rows_read=sel.n_rows_read, n_trials=sel.n_trials, n_failed=sel.n_failed,
                     think_rows=think, curves=_curves(table.frame, points, fits, iso_sweeps),
                     trained_on=_trained_on(points))


def _trained_on(points: pd.DataFrame) -> tuple:
    """(device, dtype, number of trials) of the fitted trials, most trials first."""
    if "device" not in points.columns:
        return ()
    trials = points.drop_duplicates("trial_id")
    kinds = pd.DataFrame({"device": rio.text_column(trials["device"]).replace("", "unknown"),
                          "dtype": rio.text_column(trials["dtype"]) if "dtype" in trials.columns else ""})
    counts = kinds.groupby(["device", "dtype"]).size().sort_values(ascending=False, kind="mergesort")
    return tuple((device, dtype, int(n)) for (device, dtype), n in counts.items())


CURVE_COLUMNS = ("sweep", "axis", "x_column", "x", "trial_id", "family", "seed", "step", "tokens", "val_loss")


def _curves(frame: pd.DataFrame, points: pd.DataFrame, fits, iso_sweeps=()) -> pd.DataFrame:
    """Each fitted trial's validation loss along training (its eval rows and its final row),
    with the x of its sweep's first fitted axis (N in an isoFLOP sweep, whose budgets hold
    several sizes; NaN where the sweep fits none, e.g. thinking): what the learning-curve
    figures draw. A trial two sweeps share appears under both."""
    needed = {"trial_id", "kind", "step", "tokens", "val_loss"}
    if not needed <= set(frame.columns) or points.empty:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    first_axis = {sweep: ("params", "n_params") for sweep in iso_sweeps}
    for f in fits:
        first_axis.setdefault(f.sweep, (f.axis, f.x_column))
    rows = frame[frame["kind"].astype(str).isin(["eval", "final"])]
    rows = rows[np.isfinite(pd.to_numeric(rows["val_loss"], errors="coerce"))
                & (pd.to_numeric(rows["tokens"], errors="coerce") > 0)]
    parts = []
    for sweep, pts in points.groupby("sweep", sort=True):
        axis, x_column = first_axis.get(sweep, ("", ""))
        x_of = (dict(zip(pts["trial_id"], pd.to_numeric(pts[x_column], errors="coerce")))
                if x_column in pts.columns else {})
        r = rows[rows["trial_id"].isin(set(pts["trial_id"]))]
        # an eval and the final row at the same step are one evaluation: keep the final
        r = r.assign(_final=(r["kind"].astype(str) == "final").astype(int)).sort_values(["trial_id", "step", "_final"])
        r = r.drop_duplicates(["trial_id", "step"], keep="last")
        parts.append(pd.DataFrame({
            "sweep": sweep, "axis": axis, "x_column": x_column,
            "x": [x_of.get(t, np.nan) for t in r["trial_id"]], "trial_id": r["trial_id"].to_numpy(),
            "family": rio.text_column(r["family"]).to_numpy(),
            "seed": pd.to_numeric(r["seed"], errors="coerce").to_numpy() if "seed" in r.columns else 0,
            "step": r["step"].to_numpy(), "tokens": pd.to_numeric(r["tokens"]).to_numpy(float),
            "val_loss": pd.to_numeric(r["val_loss"]).to_numpy(float)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(CURVE_COLUMNS))


def _fit_family(plan, family, g, metric, n_boot, n_boot_sat, seed, notes, label):
    x = pd.to_numeric(g[plan.x_column], errors="coerce").to_numpy(float)
    y = g[metric].to_numpy(float)
    ok = np.isfinite(x) & (x > 0)
    if not ok.all():
        notes.append(f"{label}, {family}: {int((~ok).sum())} point(s) with missing or non-positive "
                     f"{plan.x_column} dropped")
    x, y = x[ok], y[ok]
    n_distinct = np.unique(x).size
    if n_distinct < 2:
        notes.append(f"{label}, {family}: {x.size} point(s) at {n_distinct} distinct {plan.x_column} "
                     f"value(s); a line needs >= 2, so this family is not fitted on this axis")
        return None
    rng = _rng(seed, plan.sweep, plan.axis, family)
    line = fit_line(x, y, n_boot=n_boot, rng=rng)
    if n_distinct < 3:
        notes.append(f"{label}, {family}: only {n_distinct} distinct x values, so the line has no interval")
    loss = rio.loss_of(metric, y)
    positive = np.isfinite(loss) & (loss > 0)
    saturating = kaplan = kaplan_offset = None
    if n_distinct >= 4 or plan.axis == "flops":
        if not positive.all():
            notes.append(f"{label}, {family}: {int((~positive).sum())} point(s) with loss <= 0 "
                         f"({metric} <= 1 for a perplexity) left out of the laws fitted on log loss "
                         "(saturating, Kaplan); the paper's line keeps them")
    xl, ll = x[positive], loss[positive]
    if np.unique(xl).size >= 4:
        try:
            # seeds as clusters: a resample draws whole x values, all rows of one x together
            weights = (bootstrap_weights(n_boot_sat, _rng(seed, plan.sweep, plan.axis, family, "sat"),
                                         units=xl, x=xl, min_distinct=3, n_points=xl.size)
                       if n_boot_sat else None)
            saturating = fit_saturating(xl, ll, n_boot=0, weights=weights)
            notes.extend(f"{label}, {family}: saturating law: {n}" for n in saturating.notes)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:
            notes.append(f"{label}, {family}: saturating law not fitted ({err}); the other fits stand")
    if plan.axis == "flops" and np.unique(xl).size >= 2:
        pure = fit_line(xl, ll, n_boot=n_boot, rng=_rng(seed, plan.sweep, plan.axis, family, "kaplan"))
        kaplan = _kaplan_intervals(pure)
        if saturating is not None:
            kaplan_offset = _kaplan_offset_intervals(saturating)
    return AxisFamilyFit(sweep=plan.sweep, axis=plan.axis, x_column=plan.x_column, family=family,
                         x=x, y=y, line=line, saturating=saturating, kaplan=kaplan,
                         kaplan_offset=kaplan_offset)


def _is_isoflop(sweep: str, rows: pd.DataFrame, axes) -> bool:
    """An isoFLOP design: named so, or some family has >= 3 sizes at one compute budget."""
    if "isoflop" in sweep.lower().replace("-", "").replace("_", "") or (
            axes is not None and "isoflop" in list(axes)):
        return True
    if not {"flops", "n_params"} <= set(rows.columns):
        return False
    for _, g in rows.groupby("family"):
        C = pd.to_numeric(g["flops"], errors="coerce").to_numpy(float)
        ok = np.isfinite(C) & (C > 0)
        if ok.sum() < 3:
            continue
        labels = group_budgets(C[ok])
        sizes = g["n_params"].to_numpy()[ok]
        if max(np.unique(sizes[labels == lab]).size for lab in np.unique(labels)) >= 3:
            return True
    return False


def _frontier(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per family and compute budget, the trial with the lowest metric."""
    keep = []
    for _, g in rows.groupby("family"):
        C = pd.to_numeric(g["flops"], errors="coerce").to_numpy(float)
        ok = np.isfinite(C) & (C > 0)
        g = g[ok].assign(_budget=group_budgets(C[ok]))
        keep.append(g.loc[g.groupby("_budget")[metric].idxmin()].drop(columns="_budget"))
    return pd.concat(keep) if keep else rows.iloc[0:0]


def _kaplan_intervals(line: LineFit) -> dict[str, Interval]:
    """L = (C_c/C)^alpha_C is a line in log10 L: alpha_C = -slope, C_c = 10^(intercept/alpha_C)."""
    def cc(intercept, slope):
        with np.errstate(all="ignore"):
            return 10 ** (intercept / -slope)
    alpha = -line.line.slope
    return {"alpha_C": percentile_interval(alpha, -line.slope_draws),
            "C_c": percentile_interval(float(cc(line.line.intercept, line.line.slope)),
                                       cc(line.intercept_draws, line.slope_draws))}


def _kaplan_offset_intervals(sat: SaturatingFit) -> dict[str, Interval]:
    law = KaplanComputeLaw.from_saturating(sat.law)
    with np.errstate(all="ignore"):
        cc_draws = np.exp(np.log(sat.draws["A"]) / sat.draws["alpha"]) if sat.draws["A"].size else np.full(0, np.nan)
    return {"E": sat.intervals["E"], "alpha_C": sat.intervals["alpha"],
            "C_c": percentile_interval(law.C_c, cc_draws)}


def _compare(fits, baseline, notes, seed) -> list[Comparison]:
    out = []
    keyed = {}
    for f in fits:
        keyed.setdefault((f.sweep, f.axis), {})[f.family] = f
    for (sweep, axis), by_family in keyed.items():
        others = [fam for fam in by_family if fam != baseline]
        if baseline not in by_family:
            if others:
                notes.append(f"axis {axis}{' (sweep ' + repr(sweep) + ')' if sweep else ''}: no {baseline} "
                             f"fit, so {others} are not compared")
            continue
        base = by_family[baseline]
        for fam in others:
            f = by_family[fam]
            out.append(compare_lines(fam, f.line, baseline, base.line, sweep=sweep, axis=axis,
                                     x_family=f.x, x_baseline=base.x,
                                     rng=_rng(seed, sweep, axis, fam, "compare")))
    return out


def _extrapolate(fits, extrapolate, notes) -> list[Extrapolation]:
    out = []
    for axis, x in extrapolate.items():
        matched = [f for f in fits if f.axis == axis or f.x_column == axis]
        if not matched:
            notes.append(f"extrapolate {axis}={x:g}: no fitted axis of that name")
        for f in matched:
            out.append(extrapolate_line(f.line, x, sweep=f.sweep, axis=f.axis, family=f.family,
                                        x_observed=f.x))
    return out


def _isoflop_and_chinchilla(points, metric, n_boot, n_boot_sat, seed, notes, axes):
    """IsoFLOP (and Chinchilla) fits per family, for sweeps whose design supports them.

    A sweep qualifies when it is named "isoflop" (or axes asks for "isoflop"),
    or when some compute budget holds >= 3 sizes: the isoFLOP design.
    Chinchilla's L(N, D) is fitted alongside when N and D are not collinear
    (>= 10 points, >= 3 distinct N and D): within a sweep that scales N
    alone, D follows N and the law is not identified. Its bootstrap uses
    n_boot_sat refits (a BFGS refit each, like the saturating law).
    """
    isoflop, chinchilla = {}, {}
    needed = {"flops", "n_params", "total_tokens"}
    if not needed <= set(points.columns):
        return isoflop, chinchilla
    for sweep, rows in points.groupby("sweep", sort=True):
        if not _is_isoflop(sweep, rows, axes):
            continue
        for family, g in rows.groupby("family", sort=True):
            C, N, D = (pd.to_numeric(g[c], errors="coerce").to_numpy(float)
                       for c in ("flops", "n_params", "total_tokens"))
            L = rio.loss_of(metric, g[metric].to_numpy(float))
            ok = np.isfinite(C) & np.isfinite(N) & np.isfinite(D) & (C > 0) & (N > 0) & (D > 0)
            ok &= np.isfinite(L) & (L > 0)
            C, N, D, L = C[ok], N[ok], D[ok], L[ok]
            if C.size == 0:
                continue
            key = f"{sweep}/{family}" if sweep else family
            try:
                # seeds as clusters: all trials of one size (within a budget) resampled together
                iso = fit_isoflop(C, N, D, L, n_boot=n_boot, rng=_rng(seed, sweep, "isoflop", family),
                                  units=N)
            except (ValueError, np.linalg.LinAlgError) as err:
                notes.append(f"{key}: isoFLOP fit failed ({err}); the other fits stand")
                continue
            isoflop[key] = iso
            notes.extend(f"{key}: {n}" for n in iso.notes)
            corr = np.corrcoef(np.log(N), np.log(D))[0, 1] if np.unique(N).size > 1 and np.unique(D).size > 1 else 1.0
            if C.size >= 10 and np.unique(N).size >= 3 and np.unique(D).size >= 3 and abs(corr) < 0.98:
                try:
                    # fitted on the loss (nats), the quantity the law describes; units: one
                    # (N, D) configuration, all its seeds together
                    cfg = np.unique(np.stack([N, D], axis=1), axis=0, return_inverse=True)[1].ravel()
                    ch = fit_chinchilla(N, D, L, n_boot=n_boot_sat, units=cfg,
                                        seed=int(_rng(seed, sweep, "chinchilla", family).integers(2**31)))
                except (ValueError, np.linalg.LinAlgError) as err:
                    notes.append(f"{key}: Chinchilla law not fitted ({err}); the other fits stand")
                    continue
                chinchilla[key] = ch
                bad = {k: v for k, v in ch.identified.items() if v}
                if bad:
                    notes.append(f"{key}: Chinchilla law: {', '.join(bad)} {NOT_IDENTIFIED} ("
                                 + "; ".join(sorted(set(bad.values()))) + ")")
    return isoflop, chinchilla


# ---------------------------------------------------------------- Chinchilla points CSV
def _run_chinchilla_points(table, out, n_boot, seed, extrapolate) -> FitResult:
    frame = table.frame
    N = pd.to_numeric(frame["Model Size"], errors="coerce").to_numpy(float)
    C = pd.to_numeric(frame["Training FLOP"], errors="coerce").to_numpy(float)
    L = pd.to_numeric(frame["loss"], errors="coerce").to_numpy(float)
    notes = []
    ok = np.isfinite(N) & np.isfinite(C) & np.isfinite(L) & (N > 0) & (C > 0) & (L > 0)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} row(s) with missing or non-positive N, C or loss dropped")
    N, C, L = N[ok], C[ok], L[ok]
    if N.size > CHINCHILLA_DROP_HIGHEST:
        keep = np.argsort(L)[: N.size - CHINCHILLA_DROP_HIGHEST]
        keep.sort()
        notes.append(f"the {CHINCHILLA_DROP_HIGHEST} highest losses dropped before fitting, as Epoch AI did")
        N, C, L = N[keep], C[keep], L[keep]
    if N.size < 10:
        raise ValueError(f"{table.source}: {N.size} usable Chinchilla points; the 5-parameter law "
                         "needs at least 10 rows with positive Model Size, Training FLOP and loss")
    D = C / (6.0 * N)
    fit = fit_chinchilla(N, D, L, n_boot=n_boot, seed=seed)
    extra = {}
    n_x = next((extrapolate[k] for k in ("params", "N", "n_params") if k in extrapolate), None)
    d_x = next((extrapolate[k] for k in ("data", "D", "total_tokens") if k in extrapolate), None)
    if n_x is not None and d_x is not None:
        law = fit.law
        draws = (fit.draws["E"] + fit.draws["A"] * n_x ** -fit.draws["alpha"]
                 + fit.draws["B"] * d_x ** -fit.draws["beta"])
        extra[f"L(N={n_x:.3g}, D={d_x:.3g})"] = percentile_interval(float(law.predict(n_x, d_x)), draws)
    elif extrapolate:
        notes.append("extrapolating the Chinchilla law needs both params=N and data=D")
    return FitResult(source=table.source, out=out, metric="loss", select="all", baseline="",
                     n_boot=n_boot, fits=(), comparisons=(), extrapolations=(),
                     chinchilla={"chinchilla_points": fit}, isoflop={}, thinking=pd.DataFrame(),
                     table=pd.DataFrame(), notes=tuple(notes), n_rows_read=len(frame),
                     n_trials=int(N.size), chinchilla_extrapolation=extra)
