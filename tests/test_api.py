"""The Python API returns the CLI's tables; plan's time estimate comes from measured rates."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ebt_scaling
from ebt_scaling import final_points, fit_results, load_results, plan
from ebt_scaling.fit.io import read_results, select_points
from ebt_scaling.report import run_fit
from ebt_scaling.report.numbers import sig
from ebt_scaling.sweep import load_spec
from ebt_scaling.sweep import plan as plan_trials
from ebt_scaling.sweep.plan import rate_for, rates, vocab_elements, work_flops

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def test_package_root_exposes_the_api():
    import ebt_scaling.fit  # noqa: F401  (the sub-package must not shadow an API name)
    assert callable(ebt_scaling.fit_results) and callable(ebt_scaling.plan)
    assert set(ebt_scaling.__all__) >= {"load_results", "final_points", "fit_results", "plan"}
    with pytest.raises(AttributeError):
        ebt_scaling.no_such_thing


def test_load_results_and_final_points_are_what_fit_reads():
    rows = load_results(RESULTS / "depth")
    table = read_results(RESULTS / "depth")
    assert len(rows) == len(table.frame) and "_file" not in rows.columns
    pts = final_points(RESULTS / "depth")
    sel = select_points(table)
    assert list(pts["trial_id"]) == list(sel.points["trial_id"])
    assert (pts["kind"] == "final").all() and pts["trial_id"].is_unique
    assert list(final_points(rows)["trial_id"]) == list(pts["trial_id"])    # a DataFrame works too


def test_fit_table_is_fits_csv(tmp_path):
    res = fit_results(RESULTS / "depth", n_boot=50, n_boot_saturating=0)
    run_fit(RESULTS / "depth", tmp_path, figures=False, n_boot=50, n_boot_saturating=0)
    cli = pd.read_csv(tmp_path / "fits.csv")
    pd.testing.assert_frame_equal(res.table.reset_index(drop=True), cli, check_dtype=False, rtol=1e-9)
    written = fit_results(RESULTS / "depth", out=tmp_path / "out", figures=False, n_boot=50, n_boot_saturating=0)
    assert (tmp_path / "out" / "report.md").exists() and len(written.table) == len(cli)
    # the report says what made it
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"\n- code: ebt-scaling {ebt_scaling.__version__} (git " in report and "\n- command: `" in report
    assert "\n- generated: 20" in report and " UTC\n" in report and "CPU threads" in report


def test_plan_frame_is_the_cli_plan():
    frame = plan(ROOT / "sweeps" / "depth.yaml")
    trials = plan_trials(load_spec(ROOT / "sweeps" / "depth.yaml", "cpu"))
    assert list(frame["id"]) == [t.id for t in trials]
    assert list(frame["seed"]) == [t.seed for t in trials]
    assert np.allclose(frame["est_seconds"], [t.est_seconds for t in trials])
    out = subprocess.run([sys.executable, "-m", "ebt_scaling.cli", "plan", "sweeps/depth.yaml", "--scale", "cpu"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    lines = out.splitlines()
    assert lines[1].split()[:4] == ["id", "family", "point", "seed"]
    end = next(i for i, line in enumerate(lines) if line.startswith("total:"))
    body = lines[2:end]
    assert [line.split()[0] for line in body] == list(frame["id"])
    assert [int(line.split()[3]) for line in body] == list(frame["seed"])   # two rows per point differ by seed
    assert "e+" not in out                              # one number format: 1.64e11, never 1.64e+11
    assert "sweep/rates.json cpu: measured" in lines[end + 1]


def test_estimate_is_overhead_plus_work_over_the_measured_rate():
    spec = load_spec(ROOT / "sweeps" / "depth.yaml", "cpu")
    measured = rates()["cpu"]["families"]
    for t in plan_trials(spec):
        r = rate_for(spec, t.family)
        # a family with no measured rates borrows another EBT's
        key = t.family if t.family in measured else min(f for f in measured if f.startswith("ebt"))
        entry = measured[key]
        assert r == {k: entry.get(k, 0.0) for k in ("flops_per_s", "step_s", "overhead_s", "vocab_element_s")}
        assert t.est_seconds == pytest.approx(r["overhead_s"] + t.config.total_steps * r["step_s"]
                                              + work_flops(t.config)[1] / r["flops_per_s"]
                                              + vocab_elements(t.config) * r["vocab_element_s"])


def _calibrator():
    spec = importlib.util.spec_from_file_location("calibrate_rates", ROOT / "benchmarks" / "calibrate_rates.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calibration_recovers_a_planted_rate(tmp_path):
    """Final rows whose wall time is 4 s + 0.01 s per step + work / 2e10 + 5e-8 s per
    token x V (x log-normal noise of 5%): the calibration gets the four figures back."""
    rows = load_results(RESULTS)         # every sweep: steps and FLOPs vary apart (batch sizes differ)
    final = rows[rows["kind"] == "final"].drop_duplicates("trial_id").copy()
    final = final[final["family"] == "transformer_pp"]
    from ebt_scaling.config import config_from_dict
    work = np.array([work_flops(config_from_dict(json.loads(c), "t"))[1] for c in final["config_json"]])
    rng = np.random.default_rng(0)
    steps = final["total_steps"].to_numpy(float)
    elements = np.array([vocab_elements(config_from_dict(json.loads(c), "t")) for c in final["config_json"]])
    assert elements.max() > 10 * elements.min()       # bytes and the 4096-token BPE: the term is identifiable
    final["wall_time"] = (4.0 + 0.01 * steps + work / 2e10 + 5e-8 * elements) * np.exp(rng.normal(0, 0.05, len(work)))
    (tmp_path / "r").mkdir()
    final.to_parquet(tmp_path / "r" / "rows.parquet")
    got = _calibrator().calibrate(tmp_path / "r")["transformer_pp"]
    assert got["flops_per_s"] == pytest.approx(2e10, rel=0.1)
    assert got["overhead_s"] == pytest.approx(4.0, abs=1.5)
    assert got["step_s"] == pytest.approx(0.01, rel=0.3)
    assert got["vocab_element_s"] == pytest.approx(5e-8, rel=0.3)
    assert got["median_rel_error"] < 0.06


@pytest.mark.slow
def test_the_api_example_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "api.py"), str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "trials" in r.stdout and (tmp_path / "fits.csv").exists()


def test_latex_table_has_every_fitted_parameter(tmp_path):
    import re
    res = run_fit(RESULTS / "depth", tmp_path, figures=False, latex=True, n_boot=50, n_boot_saturating=0)
    tex = (tmp_path / "fits.tex").read_text()
    assert tex.startswith("\\begin{longtable}") and tex.rstrip().endswith("\\end{longtable}")
    body = tex.split("\\endlastfoot")[1].split("\\end{longtable}")[0].strip().splitlines()
    assert len(body) == len(res.table)
    assert not re.search(r"(?<!\\)[%_]", tex)          # every % and _ escaped for LaTeX
    slope = res.table[(res.table["law"] == "loglog") & (res.table["parameter"] == "slope")].iloc[0]
    assert f"& slope & {sig(slope['estimate'])} & [{sig(slope['ci_low'])}, {sig(slope['ci_high'])}]" in tex
