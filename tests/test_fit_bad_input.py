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


def test_perplexity_at_or_below_one_never_crashes(tmp_path):
    """ln(ppl) <= 0 cannot enter a law fitted on log loss: those points are left out of it
    with a note; the paper's line, the other family and the report stand."""
    rows = []
    for fam, slope in SLOPES.items():
        rows += rows_for("data", fam, X["data"], slope=slope)
    for r in rows:
        if r["family"] == "ebt_s1" and r["kind"] == "final" and r["trial_id"].endswith(("-3-0", "-4-0")):
            r["val_ppl"] = 0.9 if r["trial_id"].endswith("-3-0") else 1.0
    res = _fit(write(rows, tmp_path / "r.parquet"), tmp_path)
    assert {f.family for f in res.fits} == set(SLOPES)
    assert any("loss <= 0" in n for n in res.notes)
    ebt = [f for f in res.fits if f.family == "ebt_s1"][0]
    assert ebt.line.n_points == 5 and ebt.saturating is None   # 3 positive losses: too few for it
    assert (res.out / "report.md").exists()


def test_a_failing_law_leaves_the_rest_standing(tmp_path, monkeypatch):
    import ebt_scaling.fit.api as api

    def broken(*a, **k):
        raise ValueError("planted failure")
    monkeypatch.setattr(api, "fit_saturating", broken)
    rows = []
    for fam, slope in SLOPES.items():
        rows += rows_for("data", fam, X["data"], slope=slope)
    res = _fit(write(rows, tmp_path / "r.parquet"), tmp_path)
    assert len(res.fits) == 2 and len(res.comparisons) == 1
    assert sum("saturating law not fitted (planted failure)" in n for n in res.notes) == 2
    assert "planted failure" in (res.out / "report.md").read_text()


def test_plain_csv_of_family_x_and_loss(tmp_path):
    """The README's example: family, x, val_loss (nats), optional seed and axis."""
    rng = np.random.default_rng(0)
    lines = ["family,x,val_loss,seed,axis"]
    for fam, slope in SLOPES.items():
        for x in X["data"]:
            for seed in (0, 1):
                loss = np.log(10 ** (2.6 + slope * np.log10(x) + rng.normal(0, 0.003)))
                lines.append(f"{fam},{x:g},{loss:.6f},{seed},data")
    src = tmp_path / "plain.csv"
    src.write_text("\n".join(lines) + "\n")
    res = _fit(src, tmp_path)
    assert {(f.axis, f.family) for f in res.fits} == {("data", fam) for fam in SLOPES}
    assert all(f.line.n_points == 10 and f.line.n_distinct_x == 5 for f in res.fits)
    c, = res.comparisons
    assert c.gain_reported and c.gain.contains(0.3598)
    # without axis and seed: one axis called "x"
    (tmp_path / "bare.csv").write_text("family,x,val_ppl\n" + "".join(
        f"{fam},{x},{10 ** (2.6 + s * np.log10(x)):.5f}\n" for fam, s in SLOPES.items() for x in (1e3, 1e4, 1e5)))
    res = _fit(tmp_path / "bare.csv", tmp_path)
    assert {f.axis for f in res.fits} == {"x"} and len(res.comparisons) == 1


def _cli(*args):
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(__import__("pathlib").Path(__file__).parents[1]))
    return subprocess.run([sys.executable, "-m", "ebt_scaling.cli", *args], capture_output=True, text=True,
                          env=env)


def test_cli_fit_error_is_one_line_exit_2_traceback_only_with_debug(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"family": ["a"], "val_ppl": [3.0]}).to_csv(bad, index=False)
    run = _cli("fit", str(bad), "--out", str(tmp_path / "o"))
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "bad.csv" in err[0] and "Traceback" not in run.stderr
    run = _cli("--debug", "fit", str(bad), "--out", str(tmp_path / "o"))
    assert run.returncode != 0 and "Traceback" in run.stderr
    run = _cli("fit", str(bad), "--out", str(tmp_path / "o"), "--extrapolate", "data=lots")
    assert run.returncode == 2 and "not a number" in run.stderr and "Traceback" not in run.stderr


def test_loss_metric_with_the_papers_line_warns(tmp_path):
    src = write(rows_for("data", "transformer_pp", X["data"], slope=-0.1), tmp_path / "r.parquet")
    run = _cli("fit", str(src), "--out", str(tmp_path / "o"), "--metric", "val_loss")
    assert run.returncode == 0, run.stderr
    assert "warning: --metric val_loss" in run.stderr and "not the paper's" in run.stderr
    assert "paper's line" in _cli("fit", "--help").stdout
