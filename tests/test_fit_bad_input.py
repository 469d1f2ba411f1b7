"""Bad input: a clear ValueError naming the file and the fix, or a partial report saying what was skipped."""
import numpy as np
import pandas as pd
import pytest

from ebt_scaling.report import run_fit
from test_fit_api import SLOPES, X, rows_for, write


def _fit(src, tmp_path, **kw):
    return run_fit(src, tmp_path / "out", n_boot=50, n_boot_saturating=20, figures=False, **kw)


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere.*no such file or folder.*results folder"):
        _fit(tmp_path / "nowhere", tmp_path)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: folder holds no \*\.parquet.*run a sweep first"):
        _fit(tmp_path / "empty", tmp_path)


def test_missing_columns_names_file_and_schema(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"family": ["a"], "val_ppl": [3.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) \['trial_id', 'kind', 'status'\].*schema"):
        _fit(bad, tmp_path)


def test_missing_metric_column_lists_alternatives(tmp_path):
    src = write(rows_for("data", "transformer_pp", X["data"], slope=-0.1), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match=r"r\.parquet: no column 'val_acc' to fit; pass metric="):
        _fit(src, tmp_path, metric="val_acc")


def test_corrupt_parquet_names_file(tmp_path):
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"broken\.parquet: could not be read as parquet.*re-run"):
        _fit(tmp_path / "res", tmp_path)


def test_all_trials_failed(tmp_path):
    src = write(rows_for("data", "transformer_pp", X["data"], slope=-0.1, status="failed"), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match=r"r\.parquet: no rows with kind in final.*5 failed trial\(s\).*select='last'"):
        _fit(src, tmp_path)


def test_one_point_per_family_is_an_error_naming_the_fix(tmp_path):
    rows = rows_for("data", "transformer_pp", X["data"][:1], slope=-0.1) + \
        rows_for("data", "ebt_s1", X["data"][:1], slope=-0.13)
    with pytest.raises(ValueError, match=r"nothing could be fitted.*1 point\(s\).*needs >= 2"):
        _fit(write(rows, tmp_path / "r.parquet"), tmp_path)


def test_partial_fit_skips_thin_family_and_says_so(tmp_path):
    rows = rows_for("data", "transformer_pp", X["data"], slope=-0.1) + \
        rows_for("data", "ebt_s1", X["data"][:1], slope=-0.13)
    res = _fit(write(rows, tmp_path / "r.parquet"), tmp_path)
    assert [f.family for f in res.fits] == ["transformer_pp"]
    report = (res.out / "report.md").read_text()
    assert "ebt_s1: 1 point(s)" in report and "not fitted on this axis" in report


def test_nan_losses_and_failed_trials_are_dropped_with_notes(tmp_path):
    rows = []
    for fam, slope in SLOPES.items():
        rows += rows_for("data", fam, X["data"], slope=slope)
    for r in rows:
        if r["trial_id"] == "data-ebt_s1-0-0" and r["kind"] == "final":
            r["val_ppl"] = np.nan
    rows += rows_for("depth", "ebt_s1", X["depth"][:2], slope=-0.1, status="failed")
    res = _fit(write(rows, tmp_path / "r.parquet"), tmp_path)
    notes = " | ".join(res.notes)
    assert "2 failed trial(s) left out" in notes
    assert "1 row(s) with NaN or non-positive val_ppl dropped" in notes
    ebt = [f for f in res.fits if f.family == "ebt_s1"][0]
    assert ebt.line.n_points == 4
    report = (res.out / "report.md").read_text()
    assert "failed trial(s) left out" in report


def test_two_points_fit_a_line_without_interval(tmp_path):
    rows = rows_for("data", "transformer_pp", X["data"][:2], slope=-0.1)
    res = _fit(write(rows, tmp_path / "r.parquet"), tmp_path)
    iv = res.fits[0].line.intervals["slope"]
    assert np.isfinite(iv.estimate) and np.isnan(iv.low)
    assert any("no interval" in n for n in res.notes)
    assert res.fits[0].saturating is None


def test_unknown_axis_select_and_extrapolate(tmp_path):
    src = write(rows_for("data", "transformer_pp", X["data"], slope=-0.1), tmp_path / "r.parquet")
    with pytest.raises(ValueError, match=r"unknown axis 'sizes'; use one of"):
        _fit(src, tmp_path, axes=["sizes"])
    with pytest.raises(ValueError, match=r"select='newest' is not one of"):
        _fit(src, tmp_path, select="newest")
    with pytest.raises(ValueError, match=r"extrapolate data='lots': not a number; write e.g. data=1e12"):
        _fit(src, tmp_path, extrapolate={"data": "lots"})
    res = _fit(src, tmp_path, extrapolate={"depth": 48})
    assert any("extrapolate depth=48: no fitted axis" in n for n in res.notes)


def test_newer_schema_version_is_refused(tmp_path):
    rows = rows_for("data", "transformer_pp", X["data"], slope=-0.1)
    for r in rows:
        r["schema_version"] = 99
    with pytest.raises(ValueError, match=r"schema_version 99, newer than.*upgrade"):
        _fit(write(rows, tmp_path / "r.parquet"), tmp_path)


def test_ambiguous_unnamed_sweep_asks_for_axes(tmp_path):
    rows = rows_for("data", "transformer_pp", X["data"], slope=-0.1, sweep_name="")
    for i, r in enumerate(rows):
        r["n_layers"] = [2, 4, 6, 8, 10][int(r["trial_id"].split("-")[2])]
    res_rows = rows + rows_for("data", "transformer_pp", X["data"], slope=-0.1, sweep_name="data")
    res = _fit(write(res_rows, tmp_path / "r.parquet"), tmp_path)
    assert any("varies several axes" in n and "--axis" in n for n in res.notes)
    assert {f.sweep for f in res.fits} == {"data"}
