"""The Slurm backend through sbatch on a real single-node Slurm (scripts/slurm-up.sh)."""
import shutil
import subprocess
from pathlib import Path

import pytest
import submitit

from ebt_scaling.execute.launcher import launch
from ebt_scaling.execute.layout import Layout
from ebt_scaling.execute.state import read_manifest
from ebt_scaling.execute.slurm import SlurmExecutor, TrialJob, collect
from ebt_scaling.fit.io import read_results as _read_table


def read_results(path):
    return _read_table(path).frame
from ebt_scaling.sweep import plan
from ebt_scaling.sweep.spec import SlurmOptions, spec_from_dict

from test_execute_local import assert_no_duplicates, spec_dict


def slurm_idle() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s.strip() in ("idle", "mixed") for s in out.splitlines())


def test_requeue_is_the_same_attempt():
    job = TrialJob()
    resubmit = job.checkpoint({"id": "x"}, "/tmp/r", 3)
    assert isinstance(resubmit, submitit.helpers.DelayedSubmission)
    assert resubmit.args == ({"id": "x"}, "/tmp/r", 3, False)


def test_slurm_parameters_from_spec_and_resources():
    spec = spec_from_dict(spec_dict(resources={"cpus": 2, "gpus": 0.5},
                                    backend={"slurm": {"partition": "gpu", "time": "01:30:00", "mem": "8G",
                                                       "account": "lab"}}))
    t = plan(spec)[0]
    p = SlurmExecutor(spec.slurm).parameters(t)
    assert p["slurm_partition"] == "gpu" and p["timeout_min"] == 90 and p["slurm_mem"] == "8G"
    assert p["slurm_account"] == "lab" and p["cpus_per_task"] == 2 and p["gpus_per_node"] == 1


def test_a_trial_over_several_nodes_is_one_task_per_gpu():
    spec = spec_from_dict(spec_dict(resources={"cpus": 32, "gpus": 16},
                                    backend={"slurm": {"nodes": 2}}))
    p = SlurmExecutor(spec.slurm).parameters(plan(spec)[0])
    assert (p["nodes"], p["tasks_per_node"], p["gpus_per_node"], p["cpus_per_task"]) == (2, 8, 8, 2)
    one = spec_from_dict(spec_dict(resources={"cpus": 8, "gpus": 8}))     # default: one task starts its ranks
    p = SlurmExecutor(one.slurm).parameters(plan(one)[0])
    assert "tasks_per_node" not in p and p["gpus_per_node"] == 8


@pytest.mark.parametrize("slurm,gpus", [({"nodes": 3}, 16), ({"nodes": 2}, 0), ({"nodes": 2, "tasks_per_node": 4}, 16)])
def test_nodes_that_cannot_hold_the_trial_are_refused_naming_the_key(slurm, gpus):
    from ebt_scaling.config import ConfigError
    with pytest.raises(ConfigError, match="backend.slurm.nodes"):
        spec_from_dict(spec_dict(resources={"cpus": 1, "gpus": gpus}, backend={"slurm": slurm}))


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_two_slurm_tasks_train_one_point_as_one_process_does(tmp_path, capsys):
    """backend.slurm.tasks_per_node: 2 on CPU: two tasks, two gloo ranks, task 0 leads.
    The point's rows are written once and its curve is the one-process curve (fp32 sums
    in another order: 2e-5, as tests/test_distributed.py)."""
    from dataclasses import replace
    from ebt_scaling.results.store import MemorySink
    from ebt_scaling.train import train
    spec = spec_from_dict(spec_dict(depths=(2,), train={"batch_size": 7, "steps": 12, "log_every": 1},
                                    backend={"slurm": {"tasks_per_node": 2, "time": "00:10:00"}}))
    t = plan(spec)
    counts = launch(t, SlurmExecutor(spec.slurm), tmp_path, max_retries=0, progress_every=60)
    assert counts["done"] == 1, read_manifest(Layout(tmp_path, "depth"))
    assert_no_duplicates(tmp_path)
    df = read_results(tmp_path / "depth")
    one = MemorySink()
    cfg = t[0].config
    train(replace(cfg, train=replace(cfg.train, threads=1)), one)
    got = df[df["kind"] == "train"].sort_values("step")["train_loss"].tolist()
    assert got == pytest.approx([r.train_loss for r in one.rows if r.kind == "train"], rel=2e-5)
    assert df[df["kind"] == "final"]["val_loss"].iloc[0] == pytest.approx(one.rows[-1].val_loss, rel=2e-5)
    import pickle
    follower = list((tmp_path / "depth" / "_state" / "logs" / "slurm").rglob("*_1_result.pkl"))
    assert len(follower) == 1, "no result of task 1: the job did not run two tasks"
    outcome, value = pickle.loads(follower[0].read_bytes())
    assert outcome == "success" and value["status"] == "follower" and value["trained"] == 1


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_two_slurm_tasks_cancelled_mid_run_stop_together_and_resume(tmp_path, capsys):
    """scancel reaches both tasks; the ranks stop at one step (a stop asked on any rank
    is all-reduced), task 0 checkpoints and records it; the next launch resumes both
    ranks from that checkpoint and the rows are each written once."""
    import time
    spec = spec_from_dict(spec_dict(depths=(2,), train={"steps": 3000, "checkpoint_every": 50, "eval_every": 1000,
                                                        "log_every": 50},
                                    backend={"slurm": {"tasks_per_node": 2, "time": "00:10:00"}}))
    t = plan(spec)
    ex = SlurmExecutor(spec.slurm)
    _, job_id, result, stderr = ex.submit(t, tmp_path, 3)[0]
    layout = Layout(tmp_path, "depth")
    t0 = time.time()
    while not (layout.ckpt(t[0].id) / "last.pt").exists() and time.time() - t0 < 120:
        time.sleep(0.2)
    subprocess.run(["scancel", job_id], check=True)
    t0 = time.time()
    while read_manifest(layout)[t[0].id]["status"] == "running" and time.time() - t0 < 60:
        time.sleep(0.2)
    collect(layout, t[0], job_id, Path(result), stderr)
    rec = read_manifest(layout)[t[0].id]
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"], rec
    stopped = rec["stopped_at"]
    assert 0 < stopped < 3000
    counts = launch(t, ex, tmp_path, max_retries=2, progress_every=60)
    assert counts["done"] == 1, read_manifest(layout)
    assert_no_duplicates(tmp_path)
    df = read_results(tmp_path / "depth")
    assert sorted(df[df["kind"] == "train"]["step"]) == list(range(50, 3001, 50))


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_slurm_sweep_end_to_end(tmp_path, capsys):
    ok = plan(spec_from_dict(spec_dict(depths=(1, 2), families=("transformer_pp", "ebt_s2"))))
    bad = plan(spec_from_dict(spec_dict(depths=(3,), train={"fail_at_step": 2})))
    counts = launch(ok + bad, SlurmExecutor(SlurmOptions(time="00:10:00")), tmp_path, max_retries=1,
                    progress_every=60)
    assert counts == {"done": 4, "failed": 1, "pending": 0, "total": 5}
    df = read_results(tmp_path / "depth")
    assert len(df[df["kind"] == "final"]) == 5
    assert_no_duplicates(tmp_path)
    m = read_manifest(Layout(tmp_path, "depth"))
    assert m[bad[0].id]["attempts"] == 2
    assert any((tmp_path / "depth" / "_state" / "logs" / "slurm").iterdir())


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_idle(), reason="no idle Slurm node (run scripts/slurm-up.sh)")
def test_cancelled_slurm_job_is_recorded_and_retried(tmp_path, capsys):
    t = plan(spec_from_dict(spec_dict(depths=(2,), train={"steps": 3000, "checkpoint_every": 50,
                                                          "eval_every": 1000})))
    ex = SlurmExecutor(SlurmOptions(time="00:10:00"))
    jobs = ex.submit(t, tmp_path, 3)
    layout = Layout(tmp_path, "depth")
    import time
    t0 = time.time()
    while not (layout.ckpt(t[0].id) / "last.pt").exists() and time.time() - t0 < 60:
        time.sleep(0.2)
    _, job_id, result, stderr = jobs[0]
    subprocess.run(["scancel", job_id], check=True)
    t0 = time.time()      # the task checkpoints at the end of its step and says why it stopped
    while read_manifest(layout)[t[0].id]["status"] == "running" and time.time() - t0 < 30:
        time.sleep(0.2)
    collect(layout, t[0], job_id, Path(result), stderr)
    rec = read_manifest(layout)[t[0].id]
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"]
    quick = [x for x in t]
    counts = launch(quick, ex, tmp_path, max_retries=2, progress_every=60)
    assert counts["done"] == 1
    assert_no_duplicates(tmp_path)
