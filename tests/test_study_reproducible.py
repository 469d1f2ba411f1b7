"""The shipped study (results/ -> analysis/) must be reproducible: `ebt-sweep fit
results/` on a fresh clone gives the numbers in analysis/fits.csv and report.md."""
from pathlib import Path

import pandas as pd
import pytest

from ebt_scaling.report import run_fit
from ebt_scaling.report.tables import PROVENANCE_FIELDS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "analysis" / "fits.csv"


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped study (analysis/fits.csv) yet")
def test_shipped_fits_regenerate_from_shipped_rows(tmp_path):
    result = run_fit(ROOT / "results", tmp_path, figures=False)
    new = pd.read_csv(tmp_path / "fits.csv")
    old = pd.read_csv(SHIPPED)
    assert list(new.columns) == list(old.columns) and len(new) == len(old)
    pd.testing.assert_frame_equal(new, old, check_exact=False, rtol=1e-9, atol=1e-12)
    # the report says the same, apart from what made it (date, code, command, machine: they
    # change from run to run) and the figure list (figures=False here)
    def strip(path):
        text = path.read_text().split("## Figures")[0].rstrip()
        return [l for l in text.splitlines() if not l.startswith(tuple(f"- {k}:" for k in PROVENANCE_FIELDS))]
    new_report, old_report = strip(tmp_path / "report.md"), strip(ROOT / "analysis" / "report.md")
    assert len(new_report) > 50 and new_report == old_report
    assert result.n_trials > 0
