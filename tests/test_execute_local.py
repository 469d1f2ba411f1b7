"""The local backend and the shared launcher logic, against real files and processes:
resume, retries, a raising trial, a NaN trial, a SIGKILLed trial, a killed launcher,
two launchers at once."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

from ebt_scaling.execute.launcher import launch
from ebt_scaling.execute.layout import Layout
from ebt_scaling.execute.state import read_manifest, trial_state
from ebt_scaling.execute.local import LocalExecutor
from ebt_scaling.fit.io import read_results as _read_table


def read_results(path):
    return _read_table(path).frame
from ebt_scaling.sweep import plan
from ebt_scaling.sweep.spec import spec_from_dict

ROOT = Path(__file__).parent.parent


def spec_dict(name="depth", depths=(1, 2), families=("transformer_pp",), train=None, data=None, **over):
    d = {"name": name, "families": list(families),
         "base": {"model": {"d_model": 32, "n_heads": 2},
                  "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16, **(data or {})},
                  "train": {"batch_size": 8, "steps": 20, "eval_every": 10, "eval_tokens": 256,
                            "log_every": 5, **(train or {})}},
         "axes": {"depth": list(depths)}}
    d.update(over)
    return d


def trials_of(d):
    return plan(spec_from_dict(d, "<test>"))


def finals(root, sweep="depth"):
    df = read_results(Path(root) / sweep)
    return df[df["kind"] == "final"]


def assert_no_duplicates(root, sweep="depth"):
    df = read_results(Path(root) / sweep)
    f = df[df["kind"] == "final"]
    assert f["trial_id"].is_unique, "more than one final row for a trial"
    train = df[df["kind"] == "train"]
    assert not train.duplicated(["trial_id", "step"]).any(), "a train row was written twice"


def test_launch_resume_and_grow(tmp_path, capsys):
    trials = trials_of(spec_dict())
    counts = launch(trials, LocalExecutor(in_process=True), tmp_path, progress_every=60)
    assert counts == {"done": 2, "failed": 0, "pending": 0, "total": 2}
    f = finals(tmp_path)
    assert len(f) == 2 and set(f["status"]) == {"ok"} and set(f["sweep"]) == {"depth"}
    layout = Layout(tmp_path, "depth")
    mtimes = {t.id: layout.parquet(t.id).stat().st_mtime_ns for t in trials}
    launch(trials, LocalExecutor(in_process=True), tmp_path, progress_every=60)     # again: nothing trains
    assert {t.id: layout.parquet(t.id).stat().st_mtime_ns for t in trials} == mtimes
    assert all(r["attempts"] == 1 for r in read_manifest(layout).values())
    grown = trials_of(spec_dict(depths=(1, 2, 3)))
    launch(grown, LocalExecutor(in_process=True), tmp_path, progress_every=60)       # only the new point
    m = read_manifest(layout)
    assert len(m) == 3 and all(r["attempts"] == 1 for r in m.values())
    assert {t.id: layout.parquet(t.id).stat().st_mtime_ns for t in trials} == mtimes
    assert_no_duplicates(tmp_path)
    assert (layout.log(trials[0].id)).read_text().count("attempt 1") == 1


def test_nan_trial_is_retried_then_recorded(tmp_path, capsys):
    bad = trials_of(spec_dict(depths=(1,), train={"fail_at_step": 3}))
    good = trials_of(spec_dict(depths=(2,)))
    counts = launch(bad + good, LocalExecutor(in_process=True), tmp_path, max_retries=1, progress_every=60)
    assert counts["done"] == 1 and counts["failed"] == 1
    layout = Layout(tmp_path, "depth")
    rec = read_manifest(layout)[bad[0].id]
    assert rec["attempts"] == 2 and rec["status"] == "failed" and "nan" in rec["error"].lower()
    assert [h["status"] for h in rec["history"]] == ["failed", "failed"]
    f = finals(tmp_path)
    assert len(f) == 2                       # the failed trial keeps exactly one (failed) final row
    assert f.set_index("trial_id").loc[bad[0].id, "status"] == "failed"
    ts = trial_state(layout, bad[0].id)
    assert ts.state == "failed" and "step 3" in ts.reason
    out = capsys.readouterr().out
    assert "failed" in out and str(layout.log(bad[0].id)) in out
    # out of attempts: launching again does not train it again
    launch(bad, LocalExecutor(in_process=True), tmp_path, max_retries=1, progress_every=60)
    assert read_manifest(layout)[bad[0].id]["attempts"] == 2
    # it failed twice the same way at the same step: a higher limit does not retry it either
    capsys.readouterr()
    launch(bad, LocalExecutor(in_process=True), tmp_path, max_retries=2, progress_every=60)
    assert read_manifest(layout)[bad[0].id]["attempts"] == 2
    assert "not retried: failed twice the same way at step 3" in capsys.readouterr().out
    assert_no_duplicates(tmp_path)


def test_raising_trial_is_recorded_with_reason(tmp_path, capsys):
    t = trials_of(spec_dict(depths=(1,), data={"source": "file", "path": str(tmp_path / "missing.txt")}))
    counts = launch(t, LocalExecutor(), tmp_path, max_retries=0, progress_every=60)   # subprocess mode
    assert counts["failed"] == 1
    ts = trial_state(Layout(tmp_path, "depth"), t[0].id)
    assert ts.state == "failed" and "does not exist" in ts.reason and ts.attempts == 1
    assert "does not exist" in Layout(tmp_path, "depth").log(t[0].id).read_text()


def _wait_for(cond, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_sigkilled_trial_resumes_from_checkpoint(tmp_path, capsys):
    t = trials_of(spec_dict(depths=(2,), train={"steps": 400, "checkpoint_every": 20, "eval_every": 100,
                                                "log_every": 10}))[0]
    layout = Layout(tmp_path, "depth")
    th = threading.Thread(target=launch, args=([t], LocalExecutor(), tmp_path), kwargs={"progress_every": 60})
    th.start()
    assert _wait_for(lambda: (layout.ckpt(t.id) / "last.pt").exists() and layout.parquet(t.id).exists())
    pid = read_manifest(layout)[t.id]["pid"]
    os.kill(pid, signal.SIGKILL)
    th.join(timeout=120)
    assert not th.is_alive()
    rec = read_manifest(layout)[t.id]
    assert rec["attempts"] == 2 and rec["status"] == "ok"
    assert "SIGKILL" in rec["history"][0]["error"]
    f = finals(tmp_path)
    assert len(f) == 1 and f["status"].iloc[0] == "ok" and f["step"].iloc[0] == 400
    assert_no_duplicates(tmp_path)
    log = layout.log(t.id).read_text()
    assert "attempt 1" in log and "attempt 2" in log


def test_killed_launcher_then_relaunch(tmp_path):
    d = spec_dict(depths=(1, 2, 3), train={"steps": 60, "checkpoint_every": 10})
    spec = tmp_path / "depth.yaml"
    spec.write_text(yaml.safe_dump(d))
    cmd = [sys.executable, "-m", "ebt_scaling.cli", "launch", str(spec), "--backend", "local", "--in-process",
           "--results", str(tmp_path / "res"), "--scale", "cpu"]
    p = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    layout = Layout(tmp_path / "res", "depth")

    def one_done_one_started():
        m = read_manifest(layout)
        return sum(r.get("status") == "ok" for r in m.values()) >= 1 and any(
            r.get("status") == "running" for r in m.values())
    assert _wait_for(one_done_one_started, 60)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3/3 done" in r.stdout
    f = finals(tmp_path / "res")
    assert len(f) == 3 and set(f["status"]) == {"ok"}
    assert_no_duplicates(tmp_path / "res")
    m = read_manifest(layout)
    assert sorted(x["attempts"] for x in m.values())[-1] <= 2


def test_two_launchers_train_each_trial_once(tmp_path, capsys):
    trials = trials_of(spec_dict(depths=(1, 2, 3)))
    ths = [threading.Thread(target=launch, args=(trials, LocalExecutor(), tmp_path),
                            kwargs={"progress_every": 60, "poll": 0.2}) for _ in range(2)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(timeout=180)
    m = read_manifest(Layout(tmp_path, "depth"))
    assert len(m) == 3 and all(r["attempts"] == 1 and r["status"] == "ok" for r in m.values())
    assert len(finals(tmp_path)) == 3
    assert_no_duplicates(tmp_path)


def test_status_cli(tmp_path, capsys):
    from ebt_scaling.cli import main
    d = spec_dict(depths=(1, 2))
    spec = tmp_path / "depth.yaml"
    spec.write_text(yaml.safe_dump(d))
    bad = spec_dict(depths=(1,), train={"fail_at_step": 2})
    launch(trials_of(bad), LocalExecutor(in_process=True), tmp_path / "res", max_retries=0, progress_every=60)
    capsys.readouterr()
    assert main(["status", str(spec), "--results", str(tmp_path / "res"), "--scale", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "0 done" in out and "2 pending" in out
    assert main(["status", str(tmp_path / "res")]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "reason:" in out and "log:" in out and "nan" in out.lower()
    plan_json = json.loads((tmp_path / "res" / "depth" / "_state" / "plan.json").read_text())
    assert len(plan_json["trials"]) == 1
    assert isinstance(pd.read_parquet(next((tmp_path / "res" / "depth").glob("*.parquet"))), pd.DataFrame)


def test_a_round_runs_longest_first_and_plan_expects_it(tmp_path, capsys):
    """The local backend gets a round's trials longest first; plan's wall-time estimate
    packs them in the same order."""
    from ebt_scaling.execute.cli import _wall_here
    from ebt_scaling.execute.launcher import longest_first
    trials = trials_of(spec_dict(depths=(1, 2, 3), families=("transformer_pp", "ebt_s2")))
    got = longest_first(trials)
    assert [t.est_seconds for t in got] == sorted((t.est_seconds for t in trials), reverse=True)
    launch(list(reversed(got)), LocalExecutor(workers=1), tmp_path, progress_every=60)
    df = read_results(tmp_path / "depth")
    start = (df["time_unix"] - df["wall_time"]).groupby(df["trial_id"]).min().sort_values()
    assert list(start.index) == [t.id for t in got]
    spec = spec_from_dict(spec_dict(resources={"cpus": 1}), "<test>")
    # 2 slots at least (this machine has 2 cores): [3, 1, 1, 1] fits in 3 + the overhead
    # when the 3 starts first; in the given order it would take 1 + 3
    import os
    if len(os.sched_getaffinity(0)) == 2:
        assert _wall_here(spec, [1, 1, 1, 3]) == _wall_here(spec, [3, 1, 1, 1])
