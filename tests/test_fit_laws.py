"""Named laws, the paper's scaling-rate definition, and the paper's line reproducing its numbers."""
import numpy as np
import pytest

from ebt_scaling.fit import (ChinchillaLaw, KaplanComputeLaw, LogLogLine, SaturatingPowerLaw,
                             fit_loglog, scaling_rate_gain)

# The EBT paper's printed scaling-rate gains (section 7 of the recipe).
PAPER_GAINS = {"data": 35.98, "batch": 28.46, "depth": 5.29, "params": 2.91, "flops": 2.92, "width": 0.02}


def test_scaling_rate_gain_definition():
    assert scaling_rate_gain(-0.13598, -0.1) == pytest.approx(0.3598)
    # signed: a rising family line against a falling baseline is below -1 (it does not improve at
    # all), never the |0.05| / |0.1| - 1 = -50% that magnitudes would give
    assert scaling_rate_gain(0.05, -0.1) == pytest.approx(-1.5)
    assert scaling_rate_gain(-0.2, 0.1) < 0         # a falling family against a rising baseline


@pytest.mark.parametrize("axis,gain_pct", sorted(PAPER_GAINS.items()))
def test_ols_of_log10_ppl_on_log10_x_reproduces_paper_percentages(axis, gain_pct):
    """Points on two lines whose slopes differ by the paper's gain: OLS recovers it to 0.01 points."""
    x = np.array([1e8, 3e8, 1e9, 3e9, 1e10])
    slope_tpp = -0.0571
    slope_ebt = slope_tpp * (1 + gain_pct / 100)
    ppl_tpp = 10 ** (2.1 + slope_tpp * np.log10(x))
    ppl_ebt = 10 ** (2.3 + slope_ebt * np.log10(x))
    gain = scaling_rate_gain(fit_loglog(x, ppl_ebt).slope, fit_loglog(x, ppl_tpp).slope)
    assert round(100 * gain, 2) == gain_pct


def test_loglog_line_fits_exact_points():
    x = np.array([2, 4, 6, 12, 24.0])
    line = fit_loglog(x, 10 ** (1.9 - 0.12 * np.log10(x)))
    assert line.slope == pytest.approx(-0.12) and line.intercept == pytest.approx(1.9)
    assert LogLogLine(slope=-0.12, intercept=1.9).predict(10.0) == pytest.approx(10 ** 1.78)


def test_law_predictions_and_rewrites():
    sat = SaturatingPowerLaw(E=1.8, A=400.0, alpha=0.3)
    assert sat.predict(1e9) == pytest.approx(1.8 + 400 * 1e9 ** -0.3)
    kap = KaplanComputeLaw.from_saturating(sat)
    assert kap.predict(np.array([1e15, 1e20])) == pytest.approx(sat.predict(np.array([1e15, 1e20])))
    assert KaplanComputeLaw(C_c=1e8, alpha_C=0.05).predict(1e8) == pytest.approx(1.0)
    assert sat.params() == {"E": 1.8, "A": 400.0, "alpha": 0.3}


def test_chinchilla_compute_optimal_minimises_loss_on_the_budget():
    law = ChinchillaLaw(E=1.817, A=482.0, B=2085.4, alpha=0.3478, beta=0.3659)
    C = 1e22
    n_opt, d_opt = law.compute_optimal(C)
    assert 6 * n_opt * d_opt == pytest.approx(C)
    for factor in (0.8, 1.25):
        n = n_opt * factor
        assert law.predict(n, C / (6 * n)) > law.predict(n_opt, d_opt)
