"""Fitters recover planted laws, and their 95% intervals cover the truth about 95% of the time."""
import numpy as np
import pytest

from ebt_scaling.fit.compare import compare_lines, extrapolate_line
from ebt_scaling.fit.fitting import (bootstrap_weights, fit_isoflop, fit_line, fit_saturating,
                                     group_budgets)
from ebt_scaling.fit.laws import ChinchillaLaw

SLOPE, INTERCEPT, NOISE = -0.1, 2.6, 0.01


def _line_points(rng, n=8):
    x = np.logspace(8, 10, n)
    return x, 10 ** (INTERCEPT + SLOPE * np.log10(x) + rng.normal(0, NOISE, n))


def _coverage(draws: int, n_boot: int, n_points: int, seed: int):
    rng = np.random.default_rng(seed)
    hits = {"slope": 0, "intercept": 0}
    for _ in range(draws):
        fit = fit_line(*_line_points(rng, n_points), n_boot=n_boot, rng=rng)
        hits["slope"] += fit.intervals["slope"].contains(SLOPE)
        hits["intercept"] += fit.intervals["intercept"].contains(INTERCEPT)
    return {k: v / draws for k, v in hits.items()}


def test_loglog_line_recovers_planted_slope():
    rng = np.random.default_rng(0)
    fit = fit_line(*_line_points(rng, 12), n_boot=500, rng=rng)
    assert fit.line.slope == pytest.approx(SLOPE, abs=0.01)
    assert fit.intervals["slope"].contains(SLOPE)
    assert fit.intervals["slope"].width < 0.03


def test_loglog_interval_coverage_near_95_percent():
    cov = _coverage(draws=200, n_boot=300, n_points=8, seed=1)
    assert 0.88 <= cov["slope"] <= 0.99, cov
    assert 0.88 <= cov["intercept"] <= 0.99, cov


@pytest.mark.slow
@pytest.mark.parametrize("n_points", [5, 12, 20])
def test_loglog_interval_coverage_many_draws(n_points):
    cov = _coverage(draws=1000, n_boot=400, n_points=n_points, seed=2)
    assert 0.9 <= cov["slope"] <= 0.995, cov


def _gain_coverage(draws, seed):
    rng = np.random.default_rng(seed)
    true_gain = 0.3598
    hits = 0
    for _ in range(draws):
        x = np.logspace(8, 9.2, 10)
        y_b = 10 ** (2.65 - 0.1 * np.log10(x) + rng.normal(0, 0.004, x.size))
        y_f = 10 ** (3.0 - 0.13598 * np.log10(x) + rng.normal(0, 0.004, x.size))
        base = fit_line(x, y_b, n_boot=300, rng=rng)
        fam = fit_line(x, y_f, n_boot=300, rng=rng)
        comp = compare_lines("ebt", fam, "tpp", base, sweep="", axis="data", x_family=x, x_baseline=x)
        hits += comp.gain.contains(true_gain)
    return hits / draws


def test_gain_interval_coverage():
    assert 0.88 <= _gain_coverage(150, seed=3) <= 0.995


@pytest.mark.slow
def test_gain_interval_coverage_many_draws():
    assert 0.9 <= _gain_coverage(800, seed=4) <= 0.99


def test_crossover_inside_range_and_extrapolation():
    rng = np.random.default_rng(5)
    x = np.logspace(8, 10, 9)
    # lines crossing at x = 1e9: ebt steeper and higher at small x
    y_b = 10 ** (1.6 - 0.05 * (np.log10(x) - 9) + rng.normal(0, 0.002, x.size))
    y_f = 10 ** (1.6 - 0.08 * (np.log10(x) - 9) + rng.normal(0, 0.002, x.size))
    base, fam = fit_line(x, y_b, n_boot=400, rng=rng), fit_line(x, y_f, n_boot=400, rng=rng)
    comp = compare_lines("ebt", fam, "tpp", base, sweep="", axis="data", x_family=x, x_baseline=x)
    cr = comp.crossover
    assert cr.in_range and cr.x.low < 1e9 < cr.x.high
    assert cr.lower_beyond == "ebt" and "cross inside the measured range" in cr.statement
    assert comp.p_value < 0.01 and comp.gain.estimate == pytest.approx(0.6, abs=0.1)
    ex = extrapolate_line(fam, 1e11, sweep="", axis="data", family="ebt", x_observed=x)
    assert not ex.in_range and ex.value.contains(10 ** (1.6 - 0.08 * 2))


def test_no_crossing_in_range_is_stated_with_extrapolated_point():
    x = np.logspace(8, 9, 6)
    rng = np.random.default_rng(6)
    y_b = 10 ** (2.0 - 0.05 * np.log10(x) + rng.normal(0, 0.002, x.size))
    y_f = 10 ** (2.5 - 0.1 * np.log10(x) + rng.normal(0, 0.002, x.size))   # cross at 1e10
    base, fam = fit_line(x, y_b, n_boot=300, rng=rng), fit_line(x, y_f, n_boot=300, rng=rng)
    cr = compare_lines("ebt", fam, "tpp", base, sweep="", axis="data", x_family=x, x_baseline=x).crossover
    assert not cr.in_range
    assert "do not cross in the measured range" in cr.statement and "above it" in cr.statement
    assert cr.x.estimate == pytest.approx(1e10, rel=0.5)


def test_saturating_law_recovered_with_intervals():
    rng = np.random.default_rng(7)
    x = np.logspace(7, 10, 8)
    E, A, alpha = 2.0, 300.0, 0.3
    L = (E + A * x ** -alpha) * np.exp(rng.normal(0, 0.003, x.size))
    fit = fit_saturating(x, L, n_boot=300, seed=1)
    assert fit.law.E == pytest.approx(E, abs=0.15)
    assert fit.law.alpha == pytest.approx(alpha, abs=0.06)
    for name, true in dict(E=E, A=A, alpha=alpha).items():
        assert fit.intervals[name].contains(true), (name, fit.intervals[name])
    assert fit.n_boot_ok == 300


@pytest.mark.slow
def test_saturating_coverage():
    rng = np.random.default_rng(8)
    hits, draws = 0, 200
    x = np.logspace(7, 10, 10)
    for i in range(draws):
        L = (2.0 + 300.0 * x ** -0.3) * np.exp(rng.normal(0, 0.003, x.size))
        hits += fit_saturating(x, L, n_boot=200, seed=i).intervals["alpha"].contains(0.3)
    assert 0.85 <= hits / draws <= 0.99


def test_isoflop_recovers_compute_optimal_exponents():
    law = ChinchillaLaw(E=1.7, A=400.0, B=1800.0, alpha=0.34, beta=0.28)
    rng = np.random.default_rng(9)
    C, N, D = [], [], []
    for c in (1e18, 1e19, 1e20, 1e21):
        n_opt, _ = law.compute_optimal(c)
        for f in np.logspace(-0.8, 0.8, 7):
            n = n_opt * f
            C.append(c * (1 + rng.uniform(-0.02, 0.02)))    # steps rounded: budgets not exact
            N.append(n)
            D.append(c / (6 * n))
    C, N, D = map(np.array, (C, N, D))
    L = law.predict(N, D) * np.exp(rng.normal(0, 0.002, N.size))
    assert np.unique(group_budgets(C)).size == 4
    fit = fit_isoflop(C, N, D, L, n_boot=200, rng=rng)
    a_true = law.beta / (law.alpha + law.beta)
    assert fit.a.estimate == pytest.approx(a_true, abs=0.03)
    assert fit.b.estimate == pytest.approx(1 - a_true, abs=0.03)
    assert fit.a.low < fit.a.estimate < fit.a.high


def test_bootstrap_weights_resample_trials_whole():
    rng = np.random.default_rng(10)
    units = np.array(["a", "a", "b", "c", "c", "c"])
    x = np.array([1, 1, 2, 3, 3, 3.0])
    W = bootstrap_weights(500, rng, units=units, x=x, min_distinct=2)
    assert np.all(W[:, 0] == W[:, 1]) and np.all(W[:, 3] == W[:, 5])
    assert np.all(W.sum(axis=1) > 0)
    distinct = ((W[:, [0, 2, 3]] > 0).sum(axis=1))
    assert distinct.min() >= 2


def test_saturating_fit_survives_a_singular_bootstrap_draw():
    """A bootstrap draw from a real study line (EBT depth, 8 trials) that leaves out x = 1:
    one term's weight underflows to 0 and the damping decays until the normal equations are
    exactly singular. `ebt-sweep fit` crashed on it; the draw must give a finite fit."""
    x = [2.0, 3.0, 3.0, 1.0, 1.0, 4.0, 4.0, 2.0]
    L = [2.340357393026352, 2.2589502036571503, 2.2498976588249207, 2.4452454149723053,
         2.4404323995113373, 2.2350334525108337, 2.259793668985367, 2.335416078567505]
    f = fit_saturating(x, L, n_boot=0, weights=np.array([[4.0, 1, 1, 0, 0, 0, 2, 0]]))
    assert f.n_boot_ok == 1
    assert all(np.isfinite(v).all() for v in f.draws.values())
