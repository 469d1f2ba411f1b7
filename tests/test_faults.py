"""The fault matrix of issue 13, one block per promise, against real files, processes,
locks and (marked `slurm`) the local Slurm. The README's "What survives what" table
lists the same faults."""
import errno
import io
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ebt_scaling.execute import locks
from ebt_scaling.execute.launcher import launch, read_plan
from ebt_scaling.execute.layout import Layout
from ebt_scaling.execute.local import LocalExecutor
from ebt_scaling.execute.locks import holder, manifest_lock
from ebt_scaling.execute.state import parquet_state, read_manifest, trial_state, update_manifest
from ebt_scaling.execute.worker import run_trial
from ebt_scaling.fit.io import read_results, select_points
from ebt_scaling.results.outcome import unfinished_ids
from ebt_scaling.results.schema import Row
from ebt_scaling.results.store import MemorySink, ParquetSink, write_rows_atomic
from ebt_scaling.train import train
from ebt_scaling.train.stop import Interrupted, StopRequest

from conftest import tiny
from test_execute_local import ROOT, _wait_for, assert_no_duplicates, finals, spec_dict, trials_of

PY = sys.executable


def cli(*args, **kw):
    return subprocess.run([PY, "-m", "ebt_scaling.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)


def write_spec(tmp_path, d) -> Path:
    spec = tmp_path / f"{d['name']}.yaml"
    spec.write_text(yaml.safe_dump(d))
    return spec


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:      # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ 1. one state machine
def test_nan_at_the_final_evaluation_is_failed_everywhere(tmp_path, capsys, monkeypatch):
    # nan_check off, and the depth-1 model's final evaluation gives NaN (as a diverged one does)
    import ebt_scaling.train.loop as loop
    real = loop.evaluate

    calls = []

    def evaluate(model, source, cfg, device, autocast):
        ev = real(model, source, cfg, device, autocast)
        if cfg.model.n_layers == 1:
            calls.append(cfg.total_steps)
            if len(calls) == 2:        # its second evaluation: the final one (the first is at step 10)
                return {**ev, "loss": math.nan}
        return ev
    monkeypatch.setattr(loop, "evaluate", evaluate)
    bad = trials_of(spec_dict(depths=(1,), train={"nan_check": False}))
    good = trials_of(spec_dict(depths=(2,), train={"nan_check": False}))
    counts = launch(bad + good, LocalExecutor(in_process=True), tmp_path, max_retries=0, progress_every=60)
    assert counts == {"done": 1, "failed": 1, "pending": 0, "total": 2}
    layout = Layout(tmp_path, "depth")
    m = read_manifest(layout)
    assert m[bad[0].id]["status"] == "failed" and "final evaluation" in m[bad[0].id]["error"]
    ts = trial_state(layout, bad[0].id)
    assert ts.state == "failed" and "nan" in ts.reason.lower()
    f = finals(tmp_path)
    assert not ((f["trial_id"] == bad[0].id) & (f["status"] == "ok")).any()   # no ok final row for it
    chosen = select_points(read_results(tmp_path / "depth")).points
    assert set(chosen["trial_id"]) == {good[0].id}


def test_an_ok_final_row_without_a_finite_loss_is_not_done(tmp_path):
    """Files written before the fix: an ok final row with a NaN loss, then a failed one."""
    t = trials_of(spec_dict(depths=(1,)))[0]
    layout = Layout(tmp_path, "depth")
    layout.make()
    rows = [Row(trial_id=t.id, family=t.family, kind="final", step=20, status="ok", val_loss=math.nan),
            Row(trial_id=t.id, family=t.family, kind="final", step=20, status="failed",
                error="PointFailed: validation loss is nan")]
    write_rows_atomic(rows, layout.parquet(t.id))
    assert parquet_state(layout.parquet(t.id)) == ("failed", "PointFailed: validation loss is nan")
    write_rows_atomic(rows[:1], layout.parquet(t.id))
    state, reason = parquet_state(layout.parquet(t.id))
    assert state == "failed" and "no finite validation loss" in reason
    assert unfinished_ids(pd.DataFrame([r.asdict() for r in rows[:1]])) == {t.id}     # fit leaves it out too


def test_status_and_manifest_agree(tmp_path, capsys):
    from ebt_scaling.cli import main
    trials = trials_of(spec_dict(depths=(1, 2))) + trials_of(spec_dict(depths=(3,), train={"fail_at_step": 2}))
    launch(trials, LocalExecutor(in_process=True), tmp_path, max_retries=0, progress_every=60)
    layout = Layout(tmp_path, "depth")
    m = read_manifest(layout)
    want = {"ok": "done", "failed": "failed"}
    assert {t.id: want[m[t.id]["status"]] for t in trials} == {t.id: trial_state(layout, t.id).state for t in trials}
    capsys.readouterr()
    assert main(["status", str(tmp_path / "depth")]) == 1
    assert "2 done, 0 running, 1 failed, 0 pending (of 3)" in capsys.readouterr().out


# ------------------------------------------------------------------ 2. manifest and plan files
@pytest.fixture
def finished_sweep(tmp_path):
    """Two trials: one done, one failed twice (attempts 2)."""
    good = trials_of(spec_dict(depths=(1,)))
    bad = trials_of(spec_dict(depths=(2,), train={"fail_at_step": 2}))
    bad = [b for b in bad]
    launch(good + bad, LocalExecutor(in_process=True), tmp_path, max_retries=1, progress_every=60)
    layout = Layout(tmp_path, "depth")
    assert read_manifest(layout)[bad[0].id]["attempts"] == 2
    return tmp_path, layout, good, bad


@pytest.mark.parametrize("garbage", ["{not json", "[]", "null", '{"trials": [1, 2]}', '{"trials": {"x": 3}}'])
def test_a_corrupt_manifest_is_kept_aside_and_rebuilt(finished_sweep, garbage, capsys):
    from ebt_scaling.cli import main
    root, layout, good, bad = finished_sweep
    layout.manifest.write_text(garbage)
    capsys.readouterr()
    assert main(["status", str(root / "depth")]) == 1          # no AttributeError, no crash
    cap = capsys.readouterr()
    assert "1 done, 0 running, 1 failed, 0 pending (of 2)" in cap.out
    assert "kept aside as manifest.json.corrupt-" in cap.err
    aside = list(layout.state.glob("manifest.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == garbage
    m = read_manifest(layout)
    assert m[bad[0].id]["attempts"] == 2 and m[good[0].id]["attempts"] == 1   # from the logs: not reset
    counts = launch(good + bad, LocalExecutor(in_process=True), root, max_retries=1, progress_every=60)
    assert counts["done"] == 1 and read_manifest(layout)[bad[0].id]["attempts"] == 2   # nothing retrained
    assert set(read_manifest(layout)) == {good[0].id, bad[0].id}


@pytest.mark.parametrize("garbage", ["\x00\x01garbage", "[]", "null", '{"trials": 7}'])
def test_a_corrupt_plan_is_kept_aside_and_rebuilt(finished_sweep, garbage, capsys):
    from ebt_scaling.cli import main
    root, layout, good, bad = finished_sweep
    layout.plan_file.write_text(garbage)
    capsys.readouterr()
    assert main(["status", str(root / "depth")]) == 1
    cap = capsys.readouterr()
    assert "(of 2)" in cap.out and "kept aside as plan.json.corrupt-" in cap.err
    assert set(read_plan(layout)) == {good[0].id, bad[0].id}


def test_a_truncated_parquet_shows_its_reason_and_is_retrained(finished_sweep, capsys):
    from ebt_scaling.cli import main
    root, layout, good, bad = finished_sweep
    p = layout.parquet(good[0].id)
    p.write_bytes(p.read_bytes()[:100])
    ts = trial_state(layout, good[0].id)
    assert ts.state == "partial" and "unreadable parquet" in ts.reason
    capsys.readouterr()
    main(["status", str(root / "depth")])
    assert "unreadable parquet" in capsys.readouterr().out
    counts = launch(good, LocalExecutor(in_process=True), root, max_retries=1, progress_every=60)
    assert counts["done"] == 1
    assert list(layout.state.glob(f"{p.name}.corrupt-*"))           # the broken file is kept aside
    assert_no_duplicates(root)


# ------------------------------------------------------------------ 3. no silent waits
HOLD = """
import sys, time
from pathlib import Path
from ebt_scaling.execute.locks import TrialLock
lock = TrialLock(Path(sys.argv[1]))
assert lock.acquire()
print("held", flush=True)
if sys.argv[2] == "orphan":          # a child keeps the descriptor, the holder exits
    import os
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
    sys.exit(0)
time.sleep(120)
"""


def hold(path: Path, how: str = "hang") -> subprocess.Popen:
    p = subprocess.Popen([PY, "-c", HOLD, str(path), how], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_stalled_holder_is_named_and_waited_for_with_a_message(tmp_path, capsys):
    from ebt_scaling.cli import main
    t = trials_of(spec_dict(depths=(1,)))
    layout = Layout(tmp_path, "depth")
    layout.make()
    p = hold(layout.lock(t[0].id))
    try:
        old = time.time() - 3600
        os.utime(layout.lock(t[0].id), (old, old))          # its last heartbeat: an hour ago
        launch([], LocalExecutor(), tmp_path)                # (an empty plan touches nothing)
        write_spec(tmp_path, spec_dict(depths=(1,)))
        from ebt_scaling.execute.launcher import write_plan
        write_plan(layout, t, "", "cpu")
        capsys.readouterr()
        main(["status", str(tmp_path / "depth"), "--stall-minutes", "5"])
        out = capsys.readouterr().out
        assert f"pid {p.pid} on" in out and "no progress for 60 min (stalled?)" in out
        buf = io.StringIO()
        th = threading.Thread(target=launch, args=(t, LocalExecutor(in_process=True), tmp_path),
                              kwargs=dict(out=buf, poll=0.1, progress_every=60, stall_minutes=5))
        th.start()
        assert _wait_for(lambda: "waiting for 1 trial(s)" in buf.getvalue(), 30)
        assert f"held by pid {p.pid}" in buf.getvalue() and "stalled" in buf.getvalue()
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    th.join(timeout=120)
    assert not th.is_alive() and trial_state(layout, t[0].id).state == "done"


def test_a_lock_outliving_its_holder_is_taken_over_with_steal(tmp_path):
    t = trials_of(spec_dict(depths=(1,)))
    layout = Layout(tmp_path, "depth")
    layout.make()
    p = hold(layout.lock(t[0].id), "orphan")
    p.wait()
    h = holder(layout.lock(t[0].id))
    try:
        assert h is not None and h.pid == p.pid and not h.alive      # dead, yet its lock is held
        buf = io.StringIO()
        counts = launch(t, LocalExecutor(in_process=True), tmp_path, out=buf, poll=0.1, progress_every=60)
        assert counts["done"] == 0 and "run again with --steal" in buf.getvalue()
        counts = launch(t, LocalExecutor(in_process=True), tmp_path, out=buf, poll=0.1, progress_every=60,
                        take_over=True)
        assert counts["done"] == 1 and f"took over trial {t[0].id}" in buf.getvalue()
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(p.pid)])     # the orphan child, by its session id


def test_the_manifest_lock_times_out_naming_its_holder(tmp_path, monkeypatch, capsys):
    layout = Layout(tmp_path, "depth")
    layout.make()
    p = subprocess.Popen(["flock", str(layout.state / ".manifest.lock"), "sleep", "60"], start_new_session=True)
    try:
        assert _wait_for(lambda: locks.is_locked(layout.state / ".manifest.lock"), 10)
        monkeypatch.setattr(locks, "MANIFEST_TIMEOUT_S", 1.5)
        t0 = time.time()
        with pytest.raises(locks.LockTimeout, match=r"held for more than 2 s by pid \d+"):
            update_manifest(layout, "x", lambda r: None)
        assert time.time() - t0 < 10
        with pytest.raises(locks.LockTimeout):
            with manifest_lock(layout.state, timeout=0.5, notice=0.1):
                pass
        assert "waiting for" in capsys.readouterr().err
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


# ------------------------------------------------------------------ 4. no orphans
@pytest.mark.parametrize("sig", [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_killed_launcher_leaves_no_trainer_running(tmp_path, sig):
    d = spec_dict(depths=(2,), train={"steps": 30000, "checkpoint_every": 50, "eval_every": 1000})
    spec = write_spec(tmp_path, d)
    cmd = [PY, "-m", "ebt_scaling.cli", "launch", str(spec), "--backend", "local", "--results",
           str(tmp_path / "res"), "--scale", "cpu"]
    launcher = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    layout = Layout(tmp_path / "res", "depth")
    t = trials_of(d)[0]
    assert _wait_for(lambda: (layout.ckpt(t.id) / "last.pt").exists(), 120)
    trainer = holder(layout.lock(t.id)).pid
    assert trainer != launcher.pid and alive(trainer)
    launcher.send_signal(sig)
    launcher.wait(timeout=60)
    assert _wait_for(lambda: not alive(trainer), 40), f"trainer {trainer} outlived its launcher ({sig.name})"
    ts = trial_state(layout, t.id)
    assert ts.state == "partial" and (layout.ckpt(t.id) / "last.pt").exists()


# ------------------------------------------------------------------ 5. stop, checkpoint, resume
def _rows(sink):
    def num(x):
        return None if x != x else x
    return [(r.kind, r.step, num(r.train_loss), num(r.val_loss), num(r.lr), num(r.grad_norm)) for r in sink.rows]


def test_a_stop_checkpoints_now_and_the_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = tiny(train={"steps": 40, "eval_every": 10, "log_every": 5, "checkpoint_every": 1000,
                      "checkpoint_dir": str(tmp_path / "ck")})
    whole = MemorySink()
    import dataclasses
    train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_dir="")), whole)

    class StopAt(MemorySink):          # asks for a stop when step 13 has been logged
        def __init__(self, path, at):
            super().__init__()
            self.inner, self.at, self.stop = ParquetSink(path), at, StopRequest()
            self.rows = self.inner.rows

        def emit(self, row):
            self.inner.emit(row)
            if row.step >= self.at:
                self.stop.ask("test", requeue=True)

        def flush(self):
            self.inner.flush()

        def truncate_after(self, step):
            self.inner.truncate_after(step)
            self.rows = self.inner.rows

    path = tmp_path / "rows.parquet"
    for at in (13, 27):
        s = StopAt(path, at)
        with pytest.raises(Interrupted) as e:
            train(cfg, s, stop=s.stop)
        assert e.value.requeue and e.value.step == -(-at // 5) * 5     # the end of the step it was asked in
    final = ParquetSink(path)
    train(cfg, final)
    assert _rows(final) == _rows(whole)


def test_checkpoints_by_wall_time(tmp_path):
    cfg = tiny(train={"steps": 30, "checkpoint_every": 1000, "checkpoint_minutes": 1e-6,
                      "checkpoint_dir": str(tmp_path / "ck")})

    class Watch(MemorySink):
        seen = []

        def emit(self, row):
            super().emit(row)
            if (tmp_path / "ck" / "last.pt").exists():
                self.seen.append(row.step)
    s = Watch()
    train(cfg, s)
    assert s.seen and min(s.seen) < 30       # a checkpoint existed long before the end


# ------------------------------------------------------------------ 6. retries
def test_a_configuration_error_is_not_retried(tmp_path):
    d = spec_dict(depths=(1,))
    d["base"]["model"]["vocab_size"] = 7          # the data's tokenizer has 32: a ValueError at set-up
    t = trials_of(d)
    counts = launch(t, LocalExecutor(in_process=True), tmp_path, max_retries=3, progress_every=60)
    assert counts["failed"] == 1
    rec = read_manifest(Layout(tmp_path, "depth"))[t[0].id]
    assert rec["attempts"] == 1 and "configuration error is not retried" in rec["no_retry"]
    launch(t, LocalExecutor(in_process=True), tmp_path, max_retries=5, progress_every=60)
    assert read_manifest(Layout(tmp_path, "depth"))[t[0].id]["attempts"] == 1


def test_the_same_failure_twice_is_not_retried_again(tmp_path):
    t = trials_of(spec_dict(depths=(1,), train={"fail_at_step": 4}))
    launch(t, LocalExecutor(in_process=True), tmp_path, max_retries=5, progress_every=60)
    rec = read_manifest(Layout(tmp_path, "depth"))[t[0].id]
    assert rec["attempts"] == 2 and [h["step"] for h in rec["history"]] == [4, 4]


def test_a_retry_starts_in_its_slot_without_waiting_for_the_round(tmp_path):
    flaky = trials_of(spec_dict(depths=(1,), train={"fail_at_step": 3}))
    slow = trials_of(spec_dict(depths=(2,), train={"steps": 600, "eval_every": 600}))
    launch(flaky + slow, LocalExecutor(workers=2), tmp_path, max_retries=1, progress_every=60)
    m = read_manifest(Layout(tmp_path, "depth"))
    assert m[flaky[0].id]["attempts"] == 2
    assert m[flaky[0].id]["finished"] < m[slow[0].id]["finished"]   # both attempts ran beside the slow one


def test_max_retries_help_says_what_it_does():
    r = cli("launch", "--help")
    text = " ".join(r.stdout.split())
    assert "until it has had 1+N attempts in all" in text and "over every launch" in text
    assert "Never retried: configuration errors" in text and "failed twice the same way at the same step" in text
    assert "Not counted: a Slurm requeue" in text and "a full disk" in text


# ------------------------------------------------------------------ 8. the failure path cannot raise
def test_a_full_disk_while_writing_the_failed_row_keeps_the_trial_retryable(tmp_path, monkeypatch):
    """The disk fills just as the trial fails: its failed row cannot be written."""
    import pyarrow.parquet as pq
    from ebt_scaling.results import store
    t = trials_of(spec_dict(depths=(1,), train={"fail_at_step": 12}))[0]
    real = pq.write_table

    def write_table(table, where, *a, **k):
        if "final" in table.column("kind").to_pylist():
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)
    monkeypatch.setattr(store.pq, "write_table", write_table)
    out = run_trial(t, tmp_path, max_attempts=1)                 # does not raise
    assert out["status"] == "failed"
    layout = Layout(tmp_path, "depth")
    assert not list(tmp_path.rglob(".*.tmp*"))                   # no temporary file left behind
    ts = trial_state(layout, t.id)
    assert ts.state == "partial" and "No space left on device" in ts.reason   # not "killed or out of memory"
    rec = read_manifest(layout)[t.id]
    assert rec["uncounted"] == 1 and rec["history"][-1]["failure"] == "environment"   # not the point's fault
    monkeypatch.setattr(store.pq, "write_table", real)           # space again: the trial is retried
    run_trial(t, tmp_path, max_attempts=1)                       # one counted attempt is still left
    rec = read_manifest(layout)[t.id]
    assert rec["attempts"] == 2 and trial_state(layout, t.id).state == "failed"     # its own NaN, this time
    assert rec["history"][-1]["failure"] == "training"
    assert_no_duplicates(tmp_path)


def test_a_full_disk_for_the_manifest_leaves_the_worker_and_launcher_alive(tmp_path, monkeypatch):
    from ebt_scaling.execute import state
    t = trials_of(spec_dict(depths=(1,)))
    real = state.write_json_atomic

    def write(path, data):
        if any(r.get("status") == "ok" for r in data.get("trials", {}).values()):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)
    monkeypatch.setattr(state, "write_json_atomic", write)
    counts = launch(t, LocalExecutor(in_process=True), tmp_path, progress_every=60)   # does not raise
    assert counts["done"] == 1                                   # the rows say done, and rows come first
    monkeypatch.setattr(state, "write_json_atomic", real)
    assert trial_state(Layout(tmp_path, "depth"), t[0].id).state == "done"


def test_atomic_writes_that_fail_leave_no_temporary_file(tmp_path):
    from ebt_scaling.execute.layout import write_json_atomic
    (tmp_path / "m.json").mkdir()                                # os.replace onto a folder fails
    with pytest.raises(OSError):
        write_json_atomic(tmp_path / "m.json", {"a": 1})
    (tmp_path / "r.parquet").mkdir()
    with pytest.raises(OSError):
        write_rows_atomic([Row(trial_id="x", family="t", kind="train")], tmp_path / "r.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "r.parquet"]


def test_ray_start_up_errors_are_one_message(monkeypatch):
    ray = pytest.importorskip("ray")
    from ebt_scaling.config import ConfigError
    from ebt_scaling.execute.ray_tune import RayExecutor

    def boom(**kw):
        raise ConnectionError("Could not find any running Ray instance.\nPlease specify ...")
    monkeypatch.setattr(ray, "init", boom)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ConfigError, match=r"could not start or join the Ray cluster at 'auto'.*"
                                          r"Could not find any running Ray instance\.; check --address"):
        RayExecutor(address="auto")._init()


# ------------------------------------------------------------------ 9. scale
def test_a_round_and_a_progress_line_over_1000_trials_are_fast(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_launcher import build, measure
    layout, trials = build(tmp_path, 1000)
    figures = measure(layout, trials, repeats=2)
    assert figures["round_s"] < 1.0 and figures["progress_s"] < 1.0, figures


# ------------------------------------------------------------------ 4, 5, 8 on the real Slurm
from test_execute_slurm import slurm_idle  # noqa: E402


def _steps_for(seconds: float) -> int:
    """Steps of the tiny config that take about `seconds` here, now (the machine is shared:
    the rate is measured over 5 s of training, beside whatever else runs). The clock
    starts at the first logged row, so the set-up before it does not lower the rate."""
    import torch
    torch.set_num_threads(1)
    t0 = []

    class Clock(MemorySink):
        def emit(self, row):
            super().emit(row)
            if not t0:
                t0.append((time.perf_counter(), row.step))
            elif time.perf_counter() - t0[0][0] > 5:
                raise KeyboardInterrupt
    sink = Clock()
    with pytest.raises(KeyboardInterrupt):
        train(tiny(train={"steps": 10 ** 6, "eval_every": 10 ** 6, "log_every": 10}), sink)
    return int(seconds * (sink.rows[-1].step - t0[0][1]) / (time.perf_counter() - t0[0][0]))


def _comparable(frame):
    rows = frame[frame["kind"].isin(["train", "eval", "final"])].sort_values(["step", "kind"])
    return rows[["kind", "step", "train_loss", "val_loss", "lr", "grad_norm", "tokens"]].reset_index(drop=True)


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_a_trial_longer_than_its_time_limit_finishes_through_requeues(tmp_path, capsys):
    from ebt_scaling.execute.slurm import SlurmExecutor
    from ebt_scaling.sweep.spec import SlurmOptions
    steps = min(400_000, max(500, _steps_for(200)))        # about 3.5 minutes of training, 1-minute limit
    # (a segment trains for about 40 s: the limit less Slurm's 15 s warning and the start)
    d = spec_dict(depths=(1,), train={"steps": steps, "eval_every": max(1, steps // 4), "log_every": 25})
    t = trials_of(d)
    reference = tmp_path / "reference"
    th = threading.Thread(target=run_trial, args=(t[0], reference))
    th.start()                       # the uninterrupted run, beside the Slurm one
    counts = launch(t, SlurmExecutor(SlurmOptions(time="00:01:00"), poll=1.0), tmp_path / "slurm",
                    max_retries=0, progress_every=600)
    th.join()
    assert counts["done"] == 1, capsys.readouterr().out
    rec = read_manifest(Layout(tmp_path / "slurm", "depth"))[t[0].id]
    requeues = [h for h in rec["history"] if h["status"] == "requeued"]
    assert len(requeues) >= 3 and rec["attempts"] == 1, rec["history"]
    assert [h["step"] for h in requeues] == sorted({h["step"] for h in requeues})   # each made progress
    got = _comparable(read_results(tmp_path / "slurm" / "depth").frame)
    want = _comparable(read_results(reference / "depth").frame)
    pd.testing.assert_frame_equal(got, want)
    assert_no_duplicates(tmp_path / "slurm")


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_a_relaunch_adopts_slurm_tasks_still_queued(tmp_path, capsys):
    from ebt_scaling.execute.slurm import SlurmExecutor, squeue_states
    from ebt_scaling.sweep.spec import SlurmOptions
    t = trials_of(spec_dict(depths=(1, 2)))
    ex = SlurmExecutor(SlurmOptions(time="00:05:00"), poll=0.5)
    first = ex.submit(t, tmp_path, 3)              # a launcher that submitted, then died
    ids = sorted(j for _, j, _, _ in first)
    assert set(squeue_states(ids)) == set(ids)
    counts = launch(t, SlurmExecutor(SlurmOptions(time="00:05:00"), poll=0.5), tmp_path, progress_every=600)
    out = capsys.readouterr().out
    assert counts["done"] == 2 and "adopting 2 Slurm task(s)" in out
    m = read_manifest(Layout(tmp_path, "depth"))
    assert sorted(r["slurm_job"] for r in m.values()) == ids and all(r["attempts"] == 1 for r in m.values())
    assert_no_duplicates(tmp_path)


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_a_bad_partition_is_one_message_with_exit_code_2(tmp_path):
    spec = write_spec(tmp_path, spec_dict(depths=(1,)))
    r = cli("launch", str(spec), "--backend", "slurm", "--partition", "nope", "--results", str(tmp_path / "r"),
            "--scale", "cpu")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "Slurm did not accept the jobs" in r.stderr
    assert "invalid partition" in r.stderr.lower() and "--partition" in r.stderr


def test_a_ray_address_where_nothing_listens_is_one_message_at_once(tmp_path):
    import socket
    with socket.socket() as s:          # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = write_spec(tmp_path, spec_dict(depths=(1,)))
    t0 = time.time()
    r = cli("launch", str(spec), "--address", f"127.0.0.1:{port}", "--results", str(tmp_path / "r"), "--scale", "cpu",
            timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"nothing answers at 127.0.0.1:{port}" in r.stderr and time.time() - t0 < 60


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/proc/filesystems").read_text().count("tmpfs"),
                    reason="needs root to mount a small tmpfs")
def test_a_real_full_disk_fails_cleanly_then_resumes(tmp_path):
    """A 400 KiB tmpfs fills with the first checkpoints; after it grows, the next launch resumes."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], check=True)
    try:
        d = spec_dict(depths=(1, 2, 3), train={"steps": 60, "checkpoint_every": 5})
        d["base"]["model"]["d_model"] = 64
        spec = write_spec(tmp_path, d)
        args = ("launch", str(spec), "--backend", "local", "--results", str(disk / "res"), "--scale", "cpu")
        r = cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        assert "No space left on device" in r.stdout and not list(disk.rglob(".*.tmp*"))
        subprocess.run(["mount", "-o", "remount,size=30m", str(disk)], check=True)
        r = cli(*args)
        assert r.returncode == 0 and "3/3 done" in r.stdout, r.stdout + r.stderr
        m = read_manifest(Layout(disk / "res", "depth"))
        assert all(rec["uncounted"] == 1 and rec["history"][0]["failure"] == "environment" for rec in m.values())
        assert_no_duplicates(disk / "res")
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_scontrol_requeue_checkpoints_at_once_and_continues_the_attempt(tmp_path, capsys):
    from ebt_scaling.execute.slurm import SlurmExecutor
    from ebt_scaling.sweep.spec import SlurmOptions
    steps = min(100_000, max(400, _steps_for(40)))
    t = trials_of(spec_dict(depths=(1,), train={"steps": steps, "eval_every": max(1, steps // 4), "log_every": 25,
                                                 "checkpoint_every": 10 ** 6}))
    layout = Layout(tmp_path, "depth")
    th = threading.Thread(target=launch, args=(t, SlurmExecutor(SlurmOptions(time="00:10:00"), poll=1.0), tmp_path),
                          kwargs={"max_retries": 0, "progress_every": 600})
    th.start()
    assert _wait_for(lambda: layout.parquet(t[0].id).exists(), 120)       # it trains (first evaluation)
    job = read_manifest(layout)[t[0].id]["slurm_job"]
    subprocess.run(["scontrol", "requeue", job], check=True)
    th.join(timeout=600)
    rec = read_manifest(layout)[t[0].id]
    stops = [h for h in rec["history"] if h["status"] == "interrupted"]
    assert rec["status"] == "ok" and rec["attempts"] == 1, rec          # the requeue was not an attempt
    assert len(stops) == 1 and "SIGTERM" in stops[0]["error"] and 0 < stops[0]["step"] < steps
    f = finals(tmp_path)
    assert len(f) == 1 and f["step"].iloc[0] == steps
    assert_no_duplicates(tmp_path)
