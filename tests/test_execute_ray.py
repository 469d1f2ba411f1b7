"""The Ray backend on a real local cluster (started once per test session)."""
import pytest

from ebt_scaling.execute.launcher import launch
from ebt_scaling.execute.layout import Layout
from ebt_scaling.execute.state import read_manifest
from ebt_scaling.execute.ray_tune import RayExecutor
from ebt_scaling.fit.io import read_results as _read_table


def read_results(path):
    return _read_table(path).frame
from ebt_scaling.sweep import plan
from ebt_scaling.sweep.spec import spec_from_dict

from test_execute_local import assert_no_duplicates, spec_dict


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 ** 2,
                 log_to_driver=False, configure_logging=True, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_runs_skips_done_and_records_failures(ray_cluster, tmp_path, capsys):
    ok = plan(spec_from_dict(spec_dict(depths=(1, 2), families=("transformer_pp", "ebt_s2"))))
    bad = plan(spec_from_dict(spec_dict(depths=(3,), train={"fail_at_step": 2})))
    ex = RayExecutor(trials=ok + bad)
    counts = launch(ok + bad, ex, tmp_path, max_retries=1, progress_every=60)
    assert counts == {"done": 4, "failed": 1, "pending": 0, "total": 5}
    assert ray_cluster.is_initialized()          # the session's cluster is reused, not shut down
    df = read_results(tmp_path / "depth")
    f = df[df["kind"] == "final"]
    assert len(f) == 5 and set(f["family"]) == {"transformer_pp", "ebt_s2"}
    m = read_manifest(Layout(tmp_path, "depth"))
    assert m[bad[0].id]["attempts"] == 2 and "step 2" in m[bad[0].id]["error"]
    assert_no_duplicates(tmp_path)
    launch(ok + bad, RayExecutor(), tmp_path, max_retries=1, progress_every=60)   # nothing left to do
    m2 = read_manifest(Layout(tmp_path, "depth"))
    assert {k: v["attempts"] for k, v in m.items()} == {k: v["attempts"] for k, v in m2.items()}


def test_fractional_gpus_reach_the_trials():
    spec = spec_from_dict(spec_dict(resources={"cpus": 1, "gpus": 0.5}))
    assert all(t.resources.gpus == 0.5 for t in plan(spec))


def test_ray_starts_the_longest_trials_first(ray_cluster, tmp_path):
    """Plan order puts the short trials first; on 2 CPUs the two longest (by the plan's
    estimate) must start before the others, or they run alone at the end."""
    trials = plan(spec_from_dict(spec_dict(depths=(1, 2), families=("transformer_pp", "ebt_s2"),
                                           train={"steps": 30})))
    trials = sorted(trials, key=lambda t: t.est_seconds)            # shortest first
    assert len({t.est_seconds for t in trials}) == 4
    launch(trials, RayExecutor(trials=trials), tmp_path, progress_every=60)
    df = read_results(tmp_path / "depth")
    start = (df["time_unix"] - df["wall_time"]).groupby(df["trial_id"]).min().sort_values()
    assert set(start.index[:2]) == {t.id for t in trials[-2:]}, start


def test_a_killed_ray_worker_is_replaced_and_its_trial_resumes(ray_cluster, tmp_path):
    """Workers are reused between trials (reuse_actors): one SIGKILLed mid-trial is
    replaced, its trial resumes on a second attempt, and no row is written twice."""
    import os
    import signal
    import threading
    import time
    from ebt_scaling.execute.locks import holder
    trials = plan(spec_from_dict(spec_dict(depths=(1, 2, 3), train={"steps": 300, "checkpoint_every": 50})))
    layout = Layout(tmp_path, "depth")
    killed = []

    def kill_the_first_trainer():
        deadline = time.time() + 120
        while not killed and time.time() < deadline:
            for t in trials:
                h = holder(layout.lock(t.id)) if layout.lock(t.id).exists() else None
                if h is not None and h.alive:
                    time.sleep(1.5)
                    os.kill(h.pid, signal.SIGKILL)
                    killed.append(t.id)
                    return
            time.sleep(0.1)

    threading.Thread(target=kill_the_first_trainer, daemon=True).start()
    counts = launch(trials, RayExecutor(trials=trials), tmp_path, progress_every=60)
    assert killed and counts == {"done": 3, "failed": 0, "pending": 0, "total": 3}
    m = read_manifest(layout)
    assert m[killed[0]]["attempts"] == 2 and all(m[t.id]["attempts"] == 1 for t in trials if t.id != killed[0])
    assert_no_duplicates(tmp_path)
