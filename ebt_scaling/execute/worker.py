"""`run_trial`: the worker side of every backend. Claim the trial's lock, skip it when
done, busy elsewhere or not to be retried (state.retry_verdict), train it (resuming from
its checkpoint when it has one), record the attempt and its outcome, and retry at once,
in this same slot, while the failure may be worth retrying.

A failed attempt resumes from the trial's last checkpoint: the rows past it (and the
failed final row) are dropped and made again, so rows are never duplicated and a
trial never restarts from zero while its rows and checkpoint are whole. Only a trial
whose parquet is unreadable starts over (its rows are gone; the file is kept aside).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..sweep.trial import Trial
from .layout import Layout
from .locks import Heartbeat, LockTimeout, TrialLock
from .state import (DONE, ENVIRONMENT, FAILED, INTERRUPTED, OK, REQUEUED, RUNNING, parquet_path, parquet_state,
                    read_manifest, retry_verdict, unreadable, update_manifest)

NO_RETRY_CONFIG = "a configuration error is not retried (fix the config or spec; a fixed point gets a new id)"


def runtime_config(trial: Trial, layout: Layout):
    """The config as it trains: the checkpoint dir is placed per trial. (The trial id
    was fixed by the planner before this, so placement never changes an id.)"""
    c = trial.config
    return replace(c, train=replace(c.train, checkpoint_dir=str(layout.ckpt(trial.id)),
                                    track_dir=c.train.track_dir or str(layout.tracking)))


def run_trial(trial: Trial, root: str | os.PathLike, max_attempts: int = 3, count_attempt: bool = True,
              redirect: bool = True, stop=None) -> dict:
    """Train one trial unless it is done, busy elsewhere or not to be retried.

    Returns {"trial_id", "status": done|ok|failed|busy|gave_up, "error", ...}. Never
    raises for a failed point (train() turns it into a failed final row), nor for a
    full disk or a read-only folder while recording one. `stop` (train/stop.py): a
    stop asked for by a signal checkpoints, records "interrupted" and re-raises
    Interrupted. `count_attempt=False` (a Slurm requeue) continues the same attempt.
    """
    layout = Layout(Path(root), trial.sweep)
    layout.make()
    lock = TrialLock(layout.lock(trial.id))
    if not lock.acquire():
        return {"trial_id": trial.id, "status": "busy", "error": "trained by another process"}
    try:
        result: dict = {}
        while True:
            state, reason = parquet_state(parquet_path(layout, trial.id))
            if state == DONE:
                return {"trial_id": trial.id, "status": DONE, "error": ""}
            rec = read_manifest(layout).get(trial.id, {})
            verdict = retry_verdict(rec, max_attempts) if count_attempt else ""
            if verdict:
                return result or {"trial_id": trial.id, "status": "gave_up", "error": verdict}
            result = _attempt(trial, layout, lock, rec, state, reason, count_attempt, redirect, stop)
            count_attempt = True           # a retry in place is a new attempt
            if result["status"] in (OK, "unrecorded") or result.get("failure") == ENVIRONMENT:
                return result              # a full disk: retrying at once would fail the same way
    finally:
        lock.release()


def _attempt(trial: Trial, layout: Layout, lock: TrialLock, rec: dict, state: str, reason: str,
             count_attempt: bool, redirect: bool, stop) -> dict:
    from ..results.store import ParquetSink, TeeSink
    from ..train.loop import train
    from ..train.stop import Interrupted

    pq_path = layout.parquet(trial.id)
    ckpt = layout.ckpt(trial.id)
    if unreadable(reason):    # its rows are lost: keep the file aside, start over
        with contextlib.suppress(OSError):
            os.replace(pq_path, layout.state / f"{pq_path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.rmtree(ckpt, ignore_errors=True)
    elif not (ckpt / "last.pt").exists():
        pq_path.unlink(missing_ok=True)       # nothing to resume from: rows would repeat
    stale = rec.get("status") == RUNNING      # we hold the lock, so that attempt is dead
    log = layout.log(trial.id)
    started = time.time()

    def start(r):
        if stale:
            r["history"].append({"attempt": r["attempts"], "status": INTERRUPTED,
                                 "error": r.get("error") or "process ended without a final row"})
        if count_attempt or not r["attempts"]:
            r["attempts"] += 1
        r.update(status=RUNNING, error="", log=str(log), host=socket.gethostname(), pid=os.getpid(),
                 started=started, family=trial.family, point=trial.point)
    try:
        rec = update_manifest(layout, trial.id, start)
    except (OSError, LockTimeout) as e:
        return _unrecorded(trial, f"could not record the attempt's start in {layout.manifest}: {e}")

    cfg = runtime_config(trial, layout)
    _set_threads(trial)
    try:
        with _log_to(log, redirect) as out:
            print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {rec['attempts']} of {trial.id} "
                  f"({trial.family} {trial.label}) on {socket.gethostname()} pid {os.getpid()}", file=out, flush=True)
            try:
                summary = train(cfg, TeeSink(ParquetSink(pq_path), Heartbeat(lock)), trial_id=trial.id,
                                sweep=trial.sweep, stop=stop)
            except Interrupted as stopped:
                print(f"=== stopped at step {stopped.step}: {stopped.reason}", file=out, flush=True)
                _record_stop(layout, trial.id, stopped)
                raise
            print(f"=== {summary.status} in {summary.wall_time:.1f} s: val_loss {summary.val_loss:.4f}"
                  + (f"\n{summary.error}" if summary.error else ""), file=out, flush=True)
    except OSError as e:        # the log itself cannot be written (full disk, read-only folder)
        return _unrecorded(trial, f"could not write {log}: {e}")

    # the record says what the rows say (state.trial_state reads the rows first)
    outcome, why = parquet_state(pq_path)
    status = OK if outcome == DONE else FAILED
    error = "" if status == OK else (why or summary.error).split("\n")[0]

    failure = summary.failure if status == FAILED else ""

    def finish(r):
        r.update(status=status, error=error, finished=time.time(), wall_time=summary.wall_time)
        r["history"].append({"attempt": r["attempts"], "status": status, "error": error, "failure": failure,
                             "step": summary.steps, "wall_time": summary.wall_time, "finished": time.time()})
        if failure == "config":
            r["no_retry"] = f"{NO_RETRY_CONFIG}: {error[:300]}"
        elif failure == ENVIRONMENT:     # not the point's fault: not counted against --max-retries
            r["uncounted"] = int(r.get("uncounted", 0)) + 1
    try:
        update_manifest(layout, trial.id, finish)
    except (OSError, LockTimeout) as e:
        return _unrecorded(trial, f"{error or 'finished'}; could not record it in {layout.manifest}: {e}")
    return {"trial_id": trial.id, "status": status, "error": summary.error, "val_loss": summary.val_loss,
            "wall_time": summary.wall_time, "steps": summary.steps, "failure": failure}


def _record_stop(layout: Layout, tid: str, stopped) -> None:
    status = REQUEUED if stopped.requeue else INTERRUPTED
    why = f"{stopped.reason}; stopped at step {stopped.step} after a checkpoint"

    def fn(r):
        r.update(status=status, error=why, finished=time.time(), stopped_at=stopped.step)
        r["history"].append({"attempt": r["attempts"], "status": status, "error": why, "step": stopped.step})
    try:
        update_manifest(layout, tid, fn)
    except (OSError, LockTimeout) as e:
        print(f"warning: could not record that trial {tid} stopped: {e}", file=sys.stderr)


def _unrecorded(trial: Trial, why: str) -> dict:
    """The state files could not be written: say so and leave the trial retryable (its
    rows, if any, still say it is unfinished)."""
    print(f"warning: trial {trial.id}: {why}", file=sys.stderr, flush=True)
    return {"trial_id": trial.id, "status": "unrecorded", "error": why}


def _set_threads(trial: Trial) -> None:
    if trial.config.train.threads:
        return
    import torch
    torch.set_num_threads(max(1, int(trial.resources.cpus)))


@contextlib.contextmanager
def _log_to(path: Path, redirect: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as f:
        if redirect:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield f
        else:
            yield f
