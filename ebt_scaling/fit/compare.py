"""Comparing a family against the baseline: scaling-rate gain, crossover, extrapolation.

The EBT paper compares families by one number per axis, the scaling-rate gain
|slope_EBT| / |slope_T++| - 1 of the two log-log lines, with 3-5 points per
line and no uncertainty. Here each number comes with a bootstrap interval in
which the two families are resampled independently (they are separate runs),
a bootstrap test of "no difference", the x at which the two lines cross (a
faster-scaling family that starts worse only wins beyond it), and predictions
at a scale the user names. All of these are functions of the bootstrap draws
kept in `fitting.LineFit`, so no refit happens here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fitting import Interval, LineFit, percentile_interval


def scaling_rate_gain(slope_family: float, slope_baseline: float) -> float:
    """The paper's scaling-rate gain: |slope_family| / |slope_baseline| - 1.

    E.g. slopes -0.13598 (EBT) and -0.1 (Transformer++) give 0.3598, the
    paper's "35.98% faster" for data scaling.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(slope_family) / np.abs(slope_baseline) - 1.0


def bootstrap_p_value(draws) -> float:
    """Two-sided bootstrap p-value for "the quantity is 0".

    The smallest level at which the percentile interval excludes 0:
    2 x the smaller tail share of draws on either side of 0, with the usual
    +1 correction so a finite bootstrap never reports p = 0.
    """
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan")
    below = (np.sum(draws <= 0) + 1) / (draws.size + 1)
    above = (np.sum(draws >= 0) + 1) / (draws.size + 1)
    return float(min(1.0, 2.0 * min(below, above)))


FAR_DECADES = 3.0   # a crossing further than this outside the measured range is reported as none


@dataclass(frozen=True)
class Crossover:
    """Where the family's line meets the baseline's (x in axis units)."""

    x: Interval
    in_range: bool
    x_range: tuple[float, float]
    lower_beyond: str        # family that is lower (better) for x above the crossing
    share_in_range: float    # bootstrap share of crossings that fall in the measured range
    statement: str


@dataclass(frozen=True)
class Comparison:
    """One family against the baseline on one axis."""

    sweep: str
    axis: str
    family: str
    baseline: str
    gain: Interval           # fraction; 0.3598 means 35.98 % faster scaling
    p_value: float           # bootstrap test of gain == 0
    slope_family: Interval
    slope_baseline: Interval
    crossover: Crossover


def compare_lines(family: str, fit: LineFit, baseline: str, base: LineFit, *, sweep: str, axis: str,
                  x_family, x_baseline, lower_is_better: bool = True) -> Comparison:
    """Gain with interval and p-value, and the crossover, from two independent bootstraps."""
    gain_hat = float(scaling_rate_gain(fit.line.slope, base.line.slope))
    n = min(fit.slope_draws.size, base.slope_draws.size)
    gain_draws = scaling_rate_gain(fit.slope_draws[:n], base.slope_draws[:n]) if n else np.full(0, np.nan)
    return Comparison(
        sweep=sweep, axis=axis, family=family, baseline=baseline,
        gain=percentile_interval(gain_hat, gain_draws),
        p_value=bootstrap_p_value(gain_draws) if n else float("nan"),
        slope_family=fit.intervals["slope"], slope_baseline=base.intervals["slope"],
        crossover=crossover(family, fit, baseline, base, x_family, x_baseline, n, lower_is_better))


def _crossing_log10x(a_f, s_f, a_b, s_b):
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = s_f - s_b
        u = (a_b - a_f) / diff
    return np.where(np.abs(diff) > 1e-12, u, np.nan)


def crossover(family, fit: LineFit, baseline, base: LineFit, x_family, x_baseline, n: int,
              lower_is_better: bool = True) -> Crossover:
    """Crossing of two log-log lines, with a bootstrap interval and a plain statement."""
    lo = float(max(np.min(x_family), np.min(x_baseline)))
    hi = float(min(np.max(x_family), np.max(x_baseline)))
    if lo > hi:   # the families were measured on disjoint ranges: use the union
        lo, hi = float(min(np.min(x_family), np.min(x_baseline))), float(max(np.max(x_family), np.max(x_baseline)))
    u_hat = float(_crossing_log10x(fit.line.intercept, fit.line.slope, base.line.intercept, base.line.slope))
    u_draws = _crossing_log10x(fit.intercept_draws[:n], fit.slope_draws[:n],
                               base.intercept_draws[:n], base.slope_draws[:n]) if n else np.full(0, np.nan)
    iv = percentile_interval(u_hat, u_draws)
    with np.errstate(over="ignore"):
        x_iv = Interval(*(float(np.power(10.0, v)) if np.isfinite(v) else float("nan")
                          for v in (iv.estimate, iv.low, iv.high)))
    finite = u_draws[np.isfinite(u_draws)]
    share = float(np.mean((finite >= np.log10(lo)) & (finite <= np.log10(hi)))) if finite.size else float("nan")
    # the steeper (more negative) line is lower beyond the crossing
    steeper_is_family = fit.line.slope < base.line.slope
    lower_beyond = family if steeper_is_family == lower_is_better else baseline
    mid = 0.5 * (np.log10(lo) + np.log10(hi))
    f_mid = fit.line.intercept + fit.line.slope * mid
    b_mid = base.line.intercept + base.line.slope * mid
    better_mid = family if (f_mid < b_mid) == lower_is_better else baseline
    rng_txt = f"[{lo:.3g}, {hi:.3g}]"
    if not np.isfinite(u_hat):
        statement = f"{family} and {baseline} lines are parallel: they do not cross; {better_mid} is better throughout"
        in_range = False
    else:
        x_txt = f"{x_iv.estimate:.3g} (95% CI {x_iv.low:.3g} to {x_iv.high:.3g})"
        in_range = lo <= x_iv.estimate <= hi
        decades_out = max(np.log10(lo) - u_hat, u_hat - np.log10(hi), 0.0)
        if decades_out > FAR_DECADES:
            statement = (f"{family} and {baseline} do not cross in the measured range {rng_txt} "
                         f"({better_mid} is better there); the lines are so nearly parallel that they "
                         f"would meet only {decades_out:.0f} decades outside it (x = {x_iv.estimate:.3g}), "
                         "which is no meaningful crossing")
        elif in_range:
            statement = (f"{family} and {baseline} cross at x = {x_txt}, inside the measured range {rng_txt}; "
                         f"beyond it {lower_beyond} is better")
        else:
            side = "above" if x_iv.estimate > hi else "below"
            statement = (f"{family} and {baseline} do not cross in the measured range {rng_txt} "
                         f"({better_mid} is better there); extrapolating the lines puts the crossing "
                         f"{side} it at x = {x_txt}, beyond which {lower_beyond} would be better")
    return Crossover(x=x_iv, in_range=bool(in_range), x_range=(lo, hi), lower_beyond=lower_beyond,
                     share_in_range=share, statement=statement)


@dataclass(frozen=True)
class Extrapolation:
    """A family's predicted metric at a named x, from its log-log line."""

    sweep: str
    axis: str
    family: str
    x: float
    value: Interval
    in_range: bool


def extrapolate_line(fit: LineFit, x: float, *, sweep: str, axis: str, family: str,
                     x_observed) -> Extrapolation:
    """Prediction 10**(intercept + slope log10 x) with the bootstrap interval of the line."""
    u = np.log10(float(x))
    est = 10 ** (fit.line.intercept + fit.line.slope * u)
    draws = 10 ** (fit.intercept_draws + fit.slope_draws * u)
    return Extrapolation(sweep=sweep, axis=axis, family=family, x=float(x),
                         value=percentile_interval(float(est), draws),
                         in_range=bool(np.min(x_observed) <= x <= np.max(x_observed)))


def line_band(fit: LineFit, x_grid, level: float = 0.95):
    """Pointwise bootstrap band of the line over x_grid: (low, high) arrays, for figures."""
    if fit.slope_draws.size < 2:
        return None
    u = np.log10(np.asarray(x_grid, float))
    ok = np.isfinite(fit.slope_draws) & np.isfinite(fit.intercept_draws)
    preds = fit.intercept_draws[ok, None] + fit.slope_draws[ok, None] * u[None, :]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(preds, [tail, 100 - tail], axis=0)
    return 10 ** low, 10 ** high


# ---------------------------------------------------------------- thinking (System 2)
def thinking_table(think, metric: str, baseline: str):
    """Per family and eval set: the metric at the model's default inference, the best
    with more thinking (longer chains or best-of-N), improvement, OOD ratio.

    The default is the row with one candidate and think_steps equal to the point's own
    steps (ebt_steps: what it was trained and validated with; one forward pass for a
    Transformer++, which has nothing more to spend). Improvement = (default - best) /
    default, in percent: the paper's "% improvement from thinking". Several trials per
    family are summarised by their median.
    """
    import pandas as pd

    if think is None or len(think) == 0:
        return pd.DataFrame()
    think, metric = normalise_think(think, metric)
    rows = []
    for (family, eval_set), g in think.groupby(["family", "eval_set"], sort=True):
        g = g[np.isfinite(g[metric]) & (g[metric] > 0)]
        if g.empty:
            continue
        own = g["ebt_steps"] if "ebt_steps" in g else pd.Series(np.nan, index=g.index)
        default = g[(g["n_candidates"] <= 1) & (g["think_steps"] == own)]
        if default.empty:                    # no marked default: the fewest forward passes
            default = g[g["forward_passes"] == g["forward_passes"].min()]
        by_config = g.groupby(["think_steps", "n_candidates"])[metric].median()
        one = float(default[metric].median())
        best_key = by_config.idxmin()
        best = float(by_config.min())
        rows.append({"family": family, "eval_set": eval_set, "metric_1pass": one,
                     "min_passes": float(default["forward_passes"].median()), "metric_best": best,
                     "best_passes": float(best_key[0] * max(best_key[1], 1)),
                     "improvement_pct": 100.0 * (one - best) / one,
                     "ood_ratio": float(g["ood_ratio"].median()) if "ood_ratio" in g else float("nan"),
                     "n_trials": int(g["trial_id"].nunique())})
    return pd.DataFrame(rows)


def normalise_think(think, metric: str):
    """kind=='think' rows made uniform: an empty eval_set is "val", a missing
    forward_passes is think_steps x n_candidates; falls back to val_ppl when `metric`
    is absent. Returns (a copy of the rows, the metric to use)."""
    think = think.copy()
    if metric not in think.columns or think[metric].isna().all():
        metric = "val_ppl"
    think["eval_set"] = think["eval_set"].astype(object).where(think["eval_set"].notna(), "").astype(str).replace("", "val")
    think["forward_passes"] = think["forward_passes"].where(
        think["forward_passes"] > 0, think["think_steps"].clip(lower=1) * think["n_candidates"].clip(lower=1))
    return think, metric
