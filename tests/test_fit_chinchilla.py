"""The Chinchilla fit reproduces Epoch AI's replication (point estimates and bootstrap widths).

Epoch AI, "Chinchilla Scaling: A replication attempt" (2024): on the 240
points left after dropping the 5 highest losses, 95% bootstrap intervals
alpha (0.317, 0.373), beta (0.331, 0.415), E (1.769, 1.871), A (285, 744),
B (1042, 5810). The widths check guards the known trap: an optimiser that
stops at its start gives intervals ~20x too narrow.
"""
from pathlib import Path

import numpy as np
import pytest

from ebt_scaling.report import run_fit, summary
from ebt_scaling.fit.fitting import fit_chinchilla

CSV = Path(__file__).parents[2] / "shared/data/chinchilla_points.csv"
EPOCH_CI = {"alpha": (0.317, 0.373), "beta": (0.331, 0.415), "E": (1.769, 1.871),
            "A": (285.0, 744.0), "B": (1042.0, 5810.0)}
HUBER_GRID_FIT = {"A": 477.8, "B": 2143.9, "E": 1.817, "alpha": 0.3473, "beta": 0.3672}


@pytest.fixture(scope="module")
def chinchilla_result(tmp_path_factory):
    if not CSV.exists():
        pytest.skip(f"{CSV} absent (it lives beside the project, in shared/data)")
    out = tmp_path_factory.mktemp("chinchilla")
    return run_fit(CSV, out, n_boot=600, figures=False)


def test_point_estimates_match_epochs_huber_fit(chinchilla_result):
    law = chinchilla_result.chinchilla["chinchilla_points"].law
    assert chinchilla_result.chinchilla["chinchilla_points"].n_points == 240
    for name, ref in HUBER_GRID_FIT.items():
        assert getattr(law, name) == pytest.approx(ref, rel=3e-3), name
    for name in ("alpha", "beta", "E"):
        lo, hi = EPOCH_CI[name]
        assert lo < getattr(law, name) < hi, name


def test_bootstrap_widths_within_25_percent_of_epochs(chinchilla_result):
    intervals = chinchilla_result.chinchilla["chinchilla_points"].intervals
    for name, (lo, hi) in EPOCH_CI.items():
        ours = intervals[name].width
        assert ours == pytest.approx(hi - lo, rel=0.25), (name, ours, hi - lo)


def test_report_and_table_carry_the_fit(chinchilla_result):
    table = chinchilla_result.table
    rows = table[table["law"] == "chinchilla"].set_index("parameter")
    assert set(rows.index) == {"E", "A", "B", "alpha", "beta"}
    assert np.all(rows["ci_low"] < rows["estimate"]) and np.all(rows["estimate"] < rows["ci_high"])
    report = (chinchilla_result.out / "report.md").read_text()
    assert "Chinchilla law" in report and "highest losses dropped" in report
    assert "chinchilla" in summary(chinchilla_result)


def test_planted_chinchilla_law_recovered():
    rng = np.random.default_rng(3)
    N = 10 ** rng.uniform(7.5, 10, 150)
    D = 10 ** rng.uniform(9, 11.5, 150)
    E, A, B, alpha, beta = 1.7, 400.0, 1800.0, 0.34, 0.28
    L = (E + A * N ** -alpha + B * D ** -beta) * np.exp(rng.normal(0, 0.005, N.size))
    fit = fit_chinchilla(N, D, L, n_boot=100, seed=1)
    # this design pins beta (D spans more decades) better than alpha and E:
    # tolerances are about 1.5 bootstrap standard errors
    assert fit.law.alpha == pytest.approx(alpha, abs=0.05)
    assert fit.law.beta == pytest.approx(beta, abs=0.02)
    assert fit.law.E == pytest.approx(E, abs=0.08)
    for name, true in dict(E=E, alpha=alpha, beta=beta).items():
        iv = fit.intervals[name]
        assert iv.low < true < iv.high, (name, iv)


def test_extrapolated_loss_at_named_scale(tmp_path):
    if not CSV.exists():
        pytest.skip(f"{CSV} absent")
    res = run_fit(CSV, tmp_path, n_boot=50, figures=False, extrapolate={"params": 70e9, "data": 1.4e12})
    (label, iv), = res.chinchilla_extrapolation.items()
    assert 1.8 < iv.estimate < 2.1 and iv.low < iv.estimate < iv.high
