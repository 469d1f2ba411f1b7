"""Comparing a family against the baseline: slope difference, scaling-rate gain, crossover.

The EBT paper compares families by one number per axis, the scaling-rate gain
|slope_EBT| / |slope_T++| - 1 of two log-log lines, 3-5 points per line, no
uncertainty. Taken at face value that number is blind to sign: a line whose
loss *rises* with x has a large |slope| too. Here:

* the test of "no difference" is on the signed slope difference
  d = slope_family - slope_baseline (d < 0: the family's loss falls faster),
  a Welch t test: each line's slope has its own standard error and n_x - 2
  degrees of freedom (fitting.fit_line), combined by Satterthwaite;
* the gain is computed on signed slopes, slope_family / slope_baseline - 1
  (the paper's value wherever both slopes are negative), and reported only
  where the baseline's loss falls with x (its slope interval lies below 0):
  a ratio to a slope that may be 0 or positive says nothing about speed;
* "scales faster" needs both lines to fall and d < 0 at p < 0.05;
* the crossover comes from the joint draws (the share that falls in the
  measured range, an interval), not from the point estimate alone.

Joint draws: both families' (intercept, slope) are drawn as bivariate t with
one shared chi-square scale of the Welch degrees of freedom, so every function
of the two lines (gain, crossing) inherits the Welch test's calibration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fitting import CI_LEVEL, Interval, LineFit, percentile_interval, t_draws, t_interval


def scaling_rate_gain(slope_family, slope_baseline):
    """Signed scaling-rate gain: slope_family / slope_baseline - 1.

    Where both slopes are negative this is the paper's |s_f| / |s_b| - 1:
    slopes -0.13598 (EBT) and -0.1 (Transformer++) give 0.3598, the paper's
    "35.98% faster" for data scaling. A rising family line against a falling
    baseline gives a gain below -1 (it does not improve at all); against a
    baseline that does not fall the ratio means nothing and compare_lines
    does not report it.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(slope_family, float) / np.asarray(slope_baseline, float) - 1.0


def welch_df(se_f: float, df_f: int, se_b: float, df_b: int) -> float:
    """Satterthwaite's degrees of freedom for the difference of two independent estimates."""
    num = (se_f ** 2 + se_b ** 2) ** 2
    den = se_f ** 4 / df_f + se_b ** 4 / df_b
    return float(num / den) if den > 0 else float(df_f + df_b)


@dataclass(frozen=True)
class Crossover:
    """Where the family's line meets the baseline's (x in axis units)."""

    x: Interval
    in_range: bool           # the draws put the crossing inside the measured range (>= 95% of them)
    x_range: tuple[float, float]
    lower_beyond: str        # family that is lower (better) for x above the crossing
    share_in_range: float    # share of the joint draws whose crossing falls in the measured range
    statement: str


@dataclass(frozen=True)
class Comparison:
    """One family against the baseline on one axis."""

    sweep: str
    axis: str
    family: str
    baseline: str
    gain: Interval           # signed gain (fraction; 0.3598 = 35.98% faster); NaN when not reported
    gain_reported: bool      # False where the baseline's loss does not fall with x
    slope_difference: Interval   # slope_family - slope_baseline, Welch t interval
    p_value: float           # Welch test of slope_difference == 0
    slope_family: Interval
    slope_baseline: Interval
    verdict: str             # faster | slower | no detectable difference | <who> does not improve
    basis: str               # what was compared on this axis and why
    crossover: Crossover
    df: float = float("nan")  # Welch degrees of freedom of the difference


def joint_draws(fit: LineFit, base: LineFit, n: int, rng: np.random.Generator):
    """(intercept_f, slope_f, intercept_b, slope_b) draws with one shared Welch scale; None if
    either line has no interval."""
    if fit.df < 1 or base.df < 1 or not (np.isfinite(fit.cov).all() and np.isfinite(base.cov).all()):
        return None, float("nan")
    dfw = welch_df(fit.se_slope, fit.df, base.se_slope, base.df)
    chi2 = rng.chisquare(dfw, n)
    f = t_draws(np.array([fit.line.intercept, fit.line.slope]), fit.cov, dfw, n, rng, chi2)
    b = t_draws(np.array([base.line.intercept, base.line.slope]), base.cov, dfw, n, rng, chi2)
    return np.concatenate([f, b], axis=1), dfw


def _trend(iv: Interval) -> str:
    """How a line's loss moves with x, as its slope interval says."""
    if not (np.isfinite(iv.low) and np.isfinite(iv.high)):
        return f"has a slope of {iv.estimate:.3g} without an interval (too few distinct x)"
    if iv.high < 0:
        return f"falls (slope {iv.fmt()})"
    if iv.low > 0:
        return f"rises (slope {iv.fmt()})"
    return f"does not measurably fall (slope {iv.fmt()}: the interval holds 0)"


def _falls(iv: Interval) -> bool:
    return bool(np.isfinite(iv.high) and iv.high < 0)


def compare_lines(family: str, fit: LineFit, baseline: str, base: LineFit, *, sweep: str, axis: str,
                  x_family, x_baseline, lower_is_better: bool = True, n_draws: int = 4000,
                  rng: np.random.Generator | None = None, alpha: float = 1 - CI_LEVEL) -> Comparison:
    """Slope difference (Welch), signed gain where the baseline falls, and the crossover."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(0) if rng is None else rng
    draws, dfw = joint_draws(fit, base, n_draws, rng)
    d_hat = fit.line.slope - base.line.slope
    se_d = float(np.hypot(fit.se_slope, base.se_slope))
    if draws is None:
        diff, p = Interval(d_hat, float("nan"), float("nan")), float("nan")
    else:
        diff = t_interval(d_hat, se_d, dfw)
        p = float(2 * student_t.sf(abs(d_hat) / se_d, dfw)) if se_d > 0 else float("nan")
    s_f, s_b = fit.intervals["slope"], base.intervals["slope"]
    base_falls, fam_falls = _falls(s_b), _falls(s_f)
    gain_hat = float(scaling_rate_gain(fit.line.slope, base.line.slope))
    if base_falls:
        gain = percentile_interval(gain_hat, scaling_rate_gain(draws[:, 1], draws[:, 3])) \
            if draws is not None else Interval(gain_hat, float("nan"), float("nan"))
    else:
        gain = Interval(float("nan"), float("nan"), float("nan"))
    significant = np.isfinite(p) and p < alpha
    if not base_falls:
        verdict = (f"neither improves" if not fam_falls else f"{baseline} does not improve")
        basis = (f"{baseline}'s loss {_trend(s_b)} with x in this range, so the "
                 "scaling-rate gain, a ratio to that slope, is not reported: its sign and size would "
                 "not say which family scales faster. Compared instead: the slope difference "
                 f"{family} - {baseline} = {diff.fmt()} (Welch t, p = {p:.3g})")
        if not fam_falls:
            basis += f"; {family}'s loss {_trend(s_f)} either"
    else:
        if significant and d_hat < 0 and fam_falls:
            verdict = "faster"
        elif significant and d_hat > 0:
            verdict = "slower"
        else:
            verdict = "no detectable difference"
        basis = (f"{baseline}'s loss falls with x (slope {s_b.fmt()}), so the paper's scaling-rate gain "
                 f"slope_{family} / slope_{baseline} - 1 is reported; the test of no difference is on the "
                 f"signed slope difference {diff.fmt()} (negative: {family} falls faster; Welch t, "
                 f"p = {p:.3g})")
        if not fam_falls:
            basis += f"; {family}'s loss {_trend(s_f)} in this range"
    return Comparison(
        sweep=sweep, axis=axis, family=family, baseline=baseline, gain=gain, gain_reported=base_falls,
        slope_difference=diff, p_value=p, slope_family=s_f, slope_baseline=s_b, verdict=verdict,
        basis=basis, crossover=crossover(family, fit, baseline, base, x_family, x_baseline, draws,
                                         lower_is_better),
        df=dfw)


def _crossing_log10x(a_f, s_f, a_b, s_b):
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.asarray(s_f - s_b, float)
        u = (a_b - a_f) / diff
    return np.where(np.abs(diff) > 1e-12, u, np.nan)


def crossover(family, fit: LineFit, baseline, base: LineFit, x_family, x_baseline, draws,
              lower_is_better: bool = True) -> Crossover:
    """Crossing of two log-log lines from the joint draws: interval, share in range, statement."""
    lo = float(max(np.min(x_family), np.min(x_baseline)))
    hi = float(min(np.max(x_family), np.max(x_baseline)))
    if lo > hi:   # the families were measured on disjoint ranges: use the union
        lo, hi = float(min(np.min(x_family), np.min(x_baseline))), float(max(np.max(x_family), np.max(x_baseline)))
    u_lo, u_hi = np.log10(lo), np.log10(hi)
    u_hat = float(_crossing_log10x(fit.line.intercept, fit.line.slope, base.line.intercept, base.line.slope))
    u_draws = (_crossing_log10x(draws[:, 0], draws[:, 1], draws[:, 2], draws[:, 3])
               if draws is not None else np.full(0, np.nan))
    # a draw without a crossing (parallel lines) counts as outside the range
    share = float(np.mean((u_draws >= u_lo) & (u_draws <= u_hi))) if u_draws.size else float("nan")
    iv = percentile_interval(u_hat, u_draws)
    with np.errstate(over="ignore"):
        x_iv = Interval(*(float(np.power(10.0, v)) if np.isfinite(v) else float("nan")
                          for v in (iv.estimate, iv.low, iv.high)))
    steeper_is_family = fit.line.slope < base.line.slope
    lower_beyond = family if steeper_is_family == lower_is_better else baseline
    mid = 0.5 * (u_lo + u_hi)
    f_mid = fit.line.intercept + fit.line.slope * mid
    b_mid = base.line.intercept + base.line.slope * mid
    better_mid = family if (f_mid < b_mid) == lower_is_better else baseline
    rng_txt = f"[{lo:.3g}, {hi:.3g}]"
    share_txt = f"{share * 100:.0f}% of draws cross inside it" if np.isfinite(share) else "no interval"
    in_range = bool(np.isfinite(share) and share >= 0.95)
    if not np.isfinite(u_hat):
        statement = f"{family} and {baseline} lines are parallel: they do not cross; {better_mid} is better throughout"
    elif not np.isfinite(share):
        where = "inside" if u_lo <= u_hat <= u_hi else "outside"
        statement = (f"the point estimates cross {where} the measured range {rng_txt} at x = "
                     f"{x_iv.estimate:.3g}; with no interval on a line this is not a finding")
    elif in_range:
        statement = (f"{family} and {baseline} cross inside the measured range {rng_txt} ({share_txt}) at "
                     f"x = {x_iv.estimate:.3g} (95% interval {x_iv.low:.3g} to {x_iv.high:.3g}); beyond it "
                     f"{lower_beyond} is better")
    elif share <= 0.05:
        statement = (f"{family} and {baseline} do not cross in the measured range {rng_txt} ({better_mid} is "
                     f"better there; {share_txt})")
        if iv.low > u_hi or iv.high < u_lo:
            side = "above" if iv.low > u_hi else "below"
            statement += (f"; extended beyond the data the lines would cross {side} it, at x = "
                          f"{x_iv.estimate:.3g} (95% interval {x_iv.low:.3g} to {x_iv.high:.3g}), an extrapolation")
        else:
            statement += ("; where the extended lines would meet is not determined (the draws put the "
                          "crossing on both sides of the range, or nowhere)")
    else:
        statement = (f"whether {family} and {baseline} cross in the measured range {rng_txt} is not resolved: "
                     f"{share_txt}; point estimate x = {x_iv.estimate:.3g}, 95% interval "
                     f"{x_iv.low:.3g} to {x_iv.high:.3g} ({better_mid} is better at the middle of the range)")
    return Crossover(x=x_iv, in_range=in_range, x_range=(lo, hi), lower_beyond=lower_beyond,
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
def thinking_table(think, metric: str, baseline: str, sequences=None, rng=None, n_draws: int = 2000):
    """Per family and eval set: the metric at the model's default inference, the best
    with more thinking (longer chains or best-of-N), improvement with a 95% interval,
    OOD ratio.

    The default is the row with one candidate and think_steps equal to the point's own
    steps (ebt_steps: what it was trained and validated with; one forward pass for a
    Transformer++, which has nothing more to spend). Improvement = (default - best) /
    default, in percent: the paper's "% improvement from thinking". Several trials per
    family are summarised by their median.

    Interval: where `sequences` (per-sequence summed losses, see train/think.py) cover a
    (family, eval set) of one trial, sequences are resampled with replacement, every
    setting's metric is recomputed on the resample, the best setting is chosen again in
    each draw (so the interval includes the luck of picking the best) and the
    improvement's 2.5 and 97.5 percentiles are reported. Otherwise the interval is NaN.
    """
    import pandas as pd

    if think is None or len(think) == 0:
        return pd.DataFrame()
    think, metric = normalise_think(think, metric)
    rng = np.random.default_rng(0) if rng is None else rng
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
        default_key = (int(default["think_steps"].iloc[0]), int(default["n_candidates"].iloc[0]))
        low, high, n_seq = _improvement_interval(sequences, g, family, eval_set, default_key,
                                                 metric, rng, n_draws)
        rows.append({"family": family, "eval_set": eval_set, "metric_1pass": one,
                     "min_passes": float(default["forward_passes"].median()), "metric_best": best,
                     "best_passes": float(best_key[0] * max(best_key[1], 1)),
                     "improvement_pct": 100.0 * (one - best) / one,
                     "improvement_low": low, "improvement_high": high, "n_sequences": n_seq,
                     "ood_ratio": float(g["ood_ratio"].median()) if "ood_ratio" in g else float("nan"),
                     "n_trials": int(g["trial_id"].nunique())})
    return pd.DataFrame(rows)


def _improvement_interval(sequences, g, family, eval_set, default_key, metric, rng, n_draws):
    """Sequence-bootstrap 95% interval of the improvement (percent), re-choosing the best setting."""
    nan = (float("nan"), float("nan"), 0)
    if sequences is None or len(sequences) == 0 or g["trial_id"].nunique() != 1:
        return nan
    s = sequences[(sequences["trial_id"].astype(str) == str(g["trial_id"].iloc[0]))
                  & (sequences["eval_set"].astype(str) == eval_set)]
    if s.empty:
        return nan
    loss = s.pivot_table(index=["think_steps", "n_candidates"], columns="sequence", values="loss_sum")
    tokens = s.pivot_table(index=["think_steps", "n_candidates"], columns="sequence", values="n_tokens")
    if default_key not in loss.index or loss.isna().any().any():
        return nan
    L, T = loss.to_numpy(float), tokens.to_numpy(float)          # (settings, sequences)
    n_seq = L.shape[1]
    counts = np.zeros((n_draws, n_seq))
    np.add.at(counts, (np.repeat(np.arange(n_draws), n_seq), rng.integers(0, n_seq, n_draws * n_seq)), 1.0)
    mean_loss = (counts @ L.T) / (counts @ T.T)                  # (draws, settings)
    value = np.exp(mean_loss) if metric.endswith("ppl") else mean_loss
    d = list(loss.index).index(default_key)
    imp = 100.0 * (value[:, d] - value.min(axis=1)) / value[:, d]
    low, high = np.percentile(imp, [2.5, 97.5])
    return float(low), float(high), int(n_seq)


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
