"""The launcher's progress: a line per running trial, and a sweep ETA from measured pace
that counts the retries still to come."""
import io
import time

import pytest

from ebt_scaling.execute.layout import Layout
from ebt_scaling.execute.locks import TrialLock
from ebt_scaling.execute.progress import Progress
from ebt_scaling.execute.state import update_manifest
from ebt_scaling.results.schema import Row
from ebt_scaling.results.store import write_rows_atomic
from ebt_scaling.sweep import plan
from ebt_scaling.sweep.spec import spec_from_dict


def trials():
    return plan(spec_from_dict({"name": "depth", "x": "depth", "families": ["transformer_pp"],
                                "base": {"model": {"d_model": 32, "n_heads": 2},
                                         "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16},
                                         "train": {"batch_size": 8, "steps": 100, "eval_every": 10,
                                                   "eval_tokens": 256}},
                                "axes": {"depth": [1, 2, 3, 4]}}, "<t>"))


def rows(t, upto, final=None):
    out = [Row(trial_id=t.id, family=t.family, kind="eval", step=s, total_steps=100, train_loss=3.0,
               val_loss=2.5, status="running", wall_time=float(s)) for s in range(10, upto + 1, 10)]
    if final:
        out.append(Row(trial_id=t.id, family=t.family, kind="final", step=100, total_steps=100, val_loss=2.0,
                       status=final, error="boom" if final == "failed" else "", wall_time=100.0))
    return out


@pytest.fixture
def sweep(tmp_path):
    done, running, failed, pending = trials()
    layout = Layout(tmp_path, "depth")
    layout.make()
    write_rows_atomic(rows(done, 100, "ok"), layout.parquet(done.id))
    update_manifest(layout, done.id, lambda r: r.update(attempts=1, status="ok", wall_time=2 * done.est_seconds))
    write_rows_atomic(rows(running, 40), layout.parquet(running.id))      # 40 of 100 steps
    update_manifest(layout, running.id, lambda r: r.update(attempts=1, status="running",
                                                           started=time.time() - 80.0))
    write_rows_atomic(rows(failed, 30, "failed"), layout.parquet(failed.id))
    update_manifest(layout, failed.id, lambda r: r.update(attempts=1, status="failed", error="boom"))
    lock = TrialLock(layout.lock(running.id))
    assert lock.acquire()
    yield layout, (done, running, failed, pending)
    lock.release()


def test_eta_counts_pace_of_running_trials_and_retries(sweep):
    layout, (done, running, failed, pending) = sweep
    out = io.StringIO()
    prog = Progress(layout, [done, running, failed, pending], parallelism=1, out=out, max_attempts=3)
    c, rows_, manifest = prog.counts()
    assert c == {"done": 1, "running": 1, "failed": 1, "partial": 0, "pending": 1}
    from ebt_scaling.execute.progress import read_progress
    progress = {running.id: read_progress(layout.parquet(running.id))}
    # running: 80 s for 40 steps -> 120 s for the 60 left; failed (a retry to come) and
    # pending: their estimate x 2 (the finished trial took twice its estimate)
    want = 120.0 + 2 * failed.est_seconds + 2 * pending.est_seconds
    assert prog.eta(rows_, manifest, progress) == pytest.approx(want, rel=0.02)
    no_retries = Progress(layout, [done, running, failed, pending], 1, out, max_attempts=1)
    assert no_retries.eta(rows_, manifest, progress) == pytest.approx(want - 2 * failed.est_seconds, rel=0.02)
    assert Progress(layout, [done, running, failed, pending], 2, out).eta(rows_, manifest, progress) \
        == pytest.approx(want / 2, rel=0.02)


def test_report_shows_each_running_trial(sweep):
    layout, ts = sweep
    out = io.StringIO()
    Progress(layout, list(ts), 1, out).report()
    head, *trial_lines = out.getvalue().splitlines()
    assert "1/4 done, 1 running, 1 failed, 1 pending (1 to retry); about 0:0" in head
    assert len(trial_lines) == 1
    line = trial_lines[0]
    assert line.split()[:2] == ["running", ts[1].id] and "step 40/100" in line and "loss 2.500" in line
    assert line.rstrip().endswith(("eta 0:02:00", "eta 0:02:01", "eta 0:01:59"))
