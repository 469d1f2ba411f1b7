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
