"""What every backend shares: the results layout, the per-trial lock and attempt record,
`run_trial` (the worker side: claim, skip or retry, train, record) and `launch` (the
launcher side: rounds of "run what is not done" until done or out of retries).

Layout of one sweep under the results root (rows apart, all under _state/, which
parquet readers skip, so that `pd.read_parquet(root)` reads only rows; see
results/dataset.py):

    <root>/<sweep>/<trial id>.parquet            rows of one trial (ParquetSink, atomic writes)
    <root>/<sweep>/_state/logs/<trial id>.log    everything the trial printed, every attempt
    <root>/<sweep>/_state/ckpt/<trial id>/       last.pt, for resuming (and for `think`)
    <root>/<sweep>/_state/locks/<trial id>.lock  flock held while the trial trains
    <root>/<sweep>/_state/tracking/              experiment trackers' files (train.track)
    <root>/<sweep>/_state/manifest.json          attempts, status and reason per trial
    <root>/<sweep>/_state/plan.json              the sweep's trials (for `status DIR`, and
                                                 for fit: which sweeps a trial belongs to)

A trial that another sweep under the same root has finished (same id: same config)
is not trained again: its rows stay where they are, and this sweep's plan.json lists it.

A trial is complete when its parquet holds a final row with status ok. The lock is an
fcntl.flock on a per-trial file, taken by the process that trains: two launchers on
one folder never train one trial twice, and a killed trainer's lock goes with it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..results.dataset import PLAN_FILE, STATE_DIR
from ..sweep.trial import Trial

DONE, FAILED, RUNNING, PENDING, PARTIAL = "done", "failed", "running", "pending", "partial"


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Layout:
    root: Path
    sweep: str

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.sweep

    @property
    def state(self) -> Path:
        """Everything but rows: hidden from parquet readers by its leading "_"."""
        return self.dir / STATE_DIR

    def parquet(self, tid: str) -> Path:
        """Where the trial's rows are: here, or in a sibling sweep's folder that holds
        it finished (a trial two sweeps share is trained and stored once)."""
        own = self.dir / f"{tid}.parquet"
        if own.exists():
            return own
        for other in sorted(Path(self.root).glob(f"*/{tid}.parquet")):
            if other.parent.name[:1] not in "_." and parquet_state(other)[0] == DONE:
                return other
        return own

    def log(self, tid: str) -> Path:
        return self.state / "logs" / f"{tid}.log"

    def ckpt(self, tid: str) -> Path:
        return self.state / "ckpt" / tid

    def lock(self, tid: str) -> Path:
        return self.state / "locks" / f"{tid}.lock"

    @property
    def tracking(self) -> Path:
        """Experiment trackers' files (train.track), all trials together."""
        return self.state / "tracking"

    @property
    def manifest(self) -> Path:
        return self.state / "manifest.json"

    @property
    def plan_file(self) -> Path:
        return self.state / PLAN_FILE

    def make(self) -> None:
        for sub in ("logs", "ckpt", "locks"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)


def write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path, default):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except json.JSONDecodeError:    # cannot happen with atomic writes; do not crash status on it
        return default


# --------------------------------------------------------------------------- locks
class TrialLock:
    """An exclusive, non-blocking flock on the trial's lock file."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def is_locked(path: Path) -> bool:
    """True while some process trains this trial (a shared probe: never blocks a claim
    for longer than the probe itself)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def _manifest_lock(layout: Layout):
    path = layout.state / ".manifest.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_manifest(layout: Layout) -> dict:
    return read_json(layout.manifest, {"trials": {}}).get("trials", {})


def update_manifest(layout: Layout, tid: str, fn) -> dict:
    """Read-modify-write one trial's record under the manifest lock; returns the record."""
    with _manifest_lock(layout):
        data = read_json(layout.manifest, {"sweep": layout.sweep, "trials": {}})
        rec = data["trials"].setdefault(tid, {"attempts": 0, "status": PENDING, "error": "", "history": []})
        fn(rec)
        write_json_atomic(layout.manifest, data)
        return rec


# --------------------------------------------------------------------------- states
def parquet_state(path: Path) -> tuple[str, str]:
    """(state, reason) from the trial's rows: done, failed, partial (rows but no final
    row: killed or preempted) or pending (no file)."""
    if not path.exists():
        return PENDING, ""
    import pyarrow.parquet as pq
    try:
        t = pq.read_table(path, columns=["kind", "status", "error"]).to_pandas()
    except Exception as e:   # unreadable: treat as not done; the retry replaces it
        return PARTIAL, f"unreadable parquet ({type(e).__name__})"
    final = t[t["kind"] == "final"]
    if len(final) and (final["status"] == "ok").any():
        return DONE, ""
    if len(final):
        return FAILED, str(final["error"].iloc[-1])
    return PARTIAL, ""


def trial_state(layout: Layout, tid: str, manifest: dict | None = None) -> tuple[str, str, int]:
    """(state, reason, attempts) as status shows it: running wins (the lock is held)."""
    rec = (manifest if manifest is not None else read_manifest(layout)).get(tid, {})
    attempts = int(rec.get("attempts", 0))
    if is_locked(layout.lock(tid)):
        return RUNNING, "", attempts
    state, reason = parquet_state(layout.parquet(tid))
    if state == DONE:
        return DONE, "", attempts
    if state == FAILED:
        return FAILED, reason, attempts
    if rec.get("status") in (FAILED, "interrupted") and attempts:
        return FAILED, rec.get("error", ""), attempts
    if rec.get("status") == RUNNING and attempts:    # lock free, no final row: the trainer died
        return FAILED, "the trial's process ended without a final row (killed, preempted or out of memory)", attempts
    return PENDING, "", attempts


# --------------------------------------------------------------------------- worker side
def runtime_config(trial: Trial, layout: Layout):
    """The config as it trains: the checkpoint dir is placed per trial. (The trial id
    was fixed by the planner before this, so placement never changes an id.)"""
    c = trial.config
    return replace(c, train=replace(c.train, checkpoint_dir=str(layout.ckpt(trial.id)),
                                    track_dir=c.train.track_dir or str(layout.tracking)))


def run_trial(trial: Trial, root: str | os.PathLike, max_attempts: int = 3, count_attempt: bool = True,
              redirect: bool = True) -> dict:
    """Train one trial unless it is done, busy elsewhere or out of attempts.

    Returns {"trial_id", "status": done|ok|failed|busy|gave_up, "error", ...}. Never raises
    for a failed point (train() turns it into a failed final row); the attempt, its
    outcome and its reason go to the manifest.
    """
    from ..results.store import ParquetSink
    from ..train.loop import train

    layout = Layout(Path(root), trial.sweep)
    layout.make()
    lock = TrialLock(layout.lock(trial.id))
    if not lock.acquire():
        return {"trial_id": trial.id, "status": "busy", "error": "trained by another process"}
    try:
        pq_path = layout.parquet(trial.id)
        state, reason = parquet_state(pq_path)
        if state == DONE:
            return {"trial_id": trial.id, "status": DONE, "error": ""}
        rec = read_manifest(layout).get(trial.id, {})
        if count_attempt and int(rec.get("attempts", 0)) >= max_attempts:
            return {"trial_id": trial.id, "status": "gave_up",
                    "error": reason or rec.get("error", "") or "out of attempts"}
        stale = rec.get("status") == RUNNING      # we hold the lock, so that attempt is dead
        ckpt = layout.ckpt(trial.id)
        if state == FAILED or state == PARTIAL and reason:
            # a failed point starts again from scratch: its file is replaced, never appended to
            pq_path.unlink(missing_ok=True)
            shutil.rmtree(ckpt, ignore_errors=True)
        elif state == PARTIAL and not (ckpt / "last.pt").exists():
            pq_path.unlink(missing_ok=True)       # nothing to resume from: rows would repeat

        log = layout.log(trial.id)
        started = time.time()

        def start(r):
            if stale:
                r["history"].append({"attempt": r["attempts"], "status": "interrupted",
                                     "error": r.get("error") or "process ended without a final row"})
            if count_attempt:
                r["attempts"] += 1
            r.update(status=RUNNING, error="", log=str(log), host=socket.gethostname(), pid=os.getpid(),
                     started=started, family=trial.family, point=trial.point)
        rec = update_manifest(layout, trial.id, start)

        cfg = runtime_config(trial, layout)
        _set_threads(trial)
        with _log_to(log, redirect) as out:
            print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {rec['attempts']} of {trial.id} "
                  f"({trial.family} {trial.label}) on {socket.gethostname()} pid {os.getpid()}", file=out, flush=True)
            summary = train(cfg, ParquetSink(pq_path), trial_id=trial.id, sweep=trial.sweep)
            print(f"=== {summary.status} in {summary.wall_time:.1f} s: val_loss {summary.val_loss:.4f}"
                  + (f"\n{summary.error}" if summary.error else ""), file=out, flush=True)

        def finish(r):
            r.update(status="ok" if summary.status == "ok" else FAILED, error=summary.error.split("\n")[0],
                     finished=time.time(), wall_time=summary.wall_time)
            r["history"].append({"attempt": r["attempts"], "status": r["status"], "error": r["error"],
                                 "wall_time": summary.wall_time})
        update_manifest(layout, trial.id, finish)
        return {"trial_id": trial.id, "status": summary.status, "error": summary.error,
                "val_loss": summary.val_loss, "wall_time": summary.wall_time, "steps": summary.steps}
    finally:
        lock.release()


def record_death(layout: Layout, tid: str, reason: str) -> None:
    """The launcher saw the trainer die (signal, lost job): say so in the manifest."""
    def fn(r):
        if r.get("status") == RUNNING:
            r.update(status="interrupted", error=reason, finished=time.time())
            r["history"].append({"attempt": r["attempts"], "status": "interrupted", "error": reason})
    if parquet_state(layout.parquet(tid))[0] not in (DONE, FAILED):
        update_manifest(layout, tid, fn)


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


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


# --------------------------------------------------------------------------- launcher side
class Executor:
    """A backend: run each given trial once (run_trial decides skip/retry), block until
    all have ended. `parallelism` feeds the progress estimate."""
    name = "base"
    parallelism = 1

    def run(self, trials: list[Trial], root: Path, max_attempts: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def needs_run(layout: Layout, t: Trial, manifest: dict, max_attempts: int) -> bool:
    state, _ = parquet_state(layout.parquet(t.id))
    if state == DONE:
        return False
    return int(manifest.get(t.id, {}).get("attempts", 0)) < max_attempts


def write_plan(layout: Layout, trials: list[Trial], spec_path: str, scale: str) -> None:
    """plan.json: who belongs to this sweep (merged with earlier launches: a grid that
    grew keeps its old points listed)."""
    with _manifest_lock(layout):
        old = read_json(layout.plan_file, {"trials": {}}).get("trials", {})
        for t in trials:
            old[t.id] = {"family": t.family, "point": t.point, "seed": t.seed, "est_seconds": t.est_seconds,
                         "flops": t.flops}
        write_json_atomic(layout.plan_file, {"sweep": layout.sweep, "spec": spec_path, "scale": scale,
                                             "trials": old})


def launch(trials: list[Trial], executor: Executor, root: str | os.PathLike, max_retries: int = 2,
           progress_every: float = 10.0, out=None, poll: float = 2.0, spec_path: str = "",
           scale: str = "") -> dict:
    """Run rounds until every trial is done or out of attempts; returns the counts."""
    out = out or sys.stdout
    if not trials:
        print("nothing to run: the plan is empty", file=out)
        return {"done": 0, "failed": 0, "pending": 0, "total": 0}
    root = Path(root).resolve()
    layout = Layout(root, trials[0].sweep)
    layout.make()
    write_plan(layout, trials, spec_path, scale)
    max_attempts = 1 + max(0, max_retries)
    prog = Progress(layout, trials, executor.parallelism, out, max_attempts)
    done0 = sum(parquet_state(layout.parquet(t.id))[0] == DONE for t in trials)
    print(f"sweep {layout.sweep}: {len(trials)} trials, {done0} already done; results in {layout.dir}",
          file=out, flush=True)
    stop = threading.Event()
    ticker = threading.Thread(target=prog.loop, args=(stop, progress_every), daemon=True)
    ticker.start()
    try:
        rounds = 0
        while True:
            manifest = read_manifest(layout)
            todo = [t for t in trials if needs_run(layout, t, manifest, max_attempts)]
            if not todo:
                break
            free = [t for t in todo if not is_locked(layout.lock(t.id))]
            if not free:          # all left are being trained by another launcher: wait for it
                time.sleep(poll)
                continue
            rounds += 1
            if rounds > max_attempts + 3 and rounds > 2 * max_attempts:
                print("giving up: trials keep coming back unfinished", file=out)
                break
            executor.run(free, root, max_attempts)
    finally:
        stop.set()
        ticker.join(timeout=1)
        executor.close()
    counts = prog.report(final=True)
    return counts


def read_progress(path: Path) -> dict | None:
    """A trial's progress from its rows as last flushed (a running trial flushes at each
    evaluation): {step, total, train_loss, val_loss, wall}; {} without rows, None when
    the file cannot be read (being replaced)."""
    if not path.exists():
        return {}
    import pyarrow.parquet as pq
    try:
        t = pq.read_table(path, columns=["kind", "step", "total_steps", "train_loss", "val_loss",
                                         "wall_time"]).to_pandas()
    except Exception:
        return None
    if t.empty:
        return {}
    last = t.iloc[-1]
    evals = t[t["kind"].isin(["eval", "final"]) & t["val_loss"].notna()]
    losses = t["train_loss"].dropna()

    def num(v):
        return float(v) if v == v else None
    return {"step": int(last["step"]), "total": int(last["total_steps"]),
            "train_loss": float(losses.iloc[-1]) if len(losses) else None,
            "val_loss": float(evals["val_loss"].iloc[-1]) if len(evals) else None,
            "wall": num(last["wall_time"])}


class Progress:
    """The launcher's progress: every `every` seconds a counts line with the sweep's ETA,
    and a line per running trial (step, latest loss, its own ETA).

    ETA: a running trial's remaining steps at the pace it has kept so far (time since its
    attempt started over the steps it has flushed); a trial not started yet, or failed
    with retries left, at its planned estimate scaled by how long finished trials took
    against theirs; the sum over the backend's parallelism."""

    def __init__(self, layout: Layout, trials: list[Trial], parallelism: int, out, max_attempts: int = 3):
        self.layout, self.trials, self.parallelism, self.out = layout, trials, max(1, parallelism), out
        self.max_attempts = max_attempts
        self.t0 = time.time()

    def counts(self) -> tuple[dict, list, dict]:
        manifest = read_manifest(self.layout)
        c = {DONE: 0, RUNNING: 0, FAILED: 0, PENDING: 0}
        rows = []
        for t in self.trials:
            state, reason, attempts = trial_state(self.layout, t.id, manifest)
            c[state] += 1
            rows.append((t, state, reason, attempts))
        return c, rows, manifest

    def _ratio(self, rows, manifest) -> float:
        measured = [(t.est_seconds, float(manifest.get(t.id, {}).get("wall_time", 0.0) or 0.0))
                    for t, s, _, _ in rows if s == DONE]
        measured = [(e, w) for e, w in measured if w > 0]
        return sum(w for _, w in measured) / max(1e-9, sum(e for e, _ in measured)) if measured else 1.0

    def trial_eta(self, t: Trial, state: str, attempts: int, manifest: dict, ratio: float,
                  progress: dict | None) -> float:
        """Seconds this trial still needs (0 when it needs none)."""
        if state == DONE or (state == FAILED and attempts >= self.max_attempts):
            return 0.0
        if state == RUNNING and progress and progress.get("step"):
            started = float(manifest.get(t.id, {}).get("started", 0.0) or 0.0)
            done_steps, total = progress["step"], max(1, progress["total"])
            if started and done_steps < total:
                pace = (time.time() - started) / done_steps
                return pace * (total - done_steps)
        return t.est_seconds * ratio

    def eta(self, rows, manifest, progress: dict | None = None) -> float:
        progress = progress or {}
        ratio = self._ratio(rows, manifest)
        left = sum(self.trial_eta(t, s, a, manifest, ratio, progress.get(t.id)) for t, s, _, a in rows)
        return left / self.parallelism

    def report(self, final: bool = False) -> dict:
        c, rows, manifest = self.counts()
        el = time.time() - self.t0
        line = (f"[{_hms(el)}] {self.layout.sweep}: {c[DONE]}/{len(self.trials)} done, {c[RUNNING]} running, "
                f"{c[FAILED]} failed, {c[PENDING]} pending")
        running = []
        if not final:
            progress = {t.id: read_progress(self.layout.parquet(t.id)) for t, s, _, _ in rows if s == RUNNING}
            retries = sum(s == FAILED and a < self.max_attempts for _, s, _, a in rows)
            line += (f" ({retries} to retry)" if retries else "") + \
                f"; about {_hms(self.eta(rows, manifest, progress))} left"
            ratio = self._ratio(rows, manifest)
            for t, s, _, a in rows:
                if s != RUNNING:
                    continue
                p = progress.get(t.id) or {}
                loss = p.get("val_loss") if p.get("val_loss") is not None else p.get("train_loss")
                step = f"step {p['step']}/{p['total']}" if p else "starting"
                running.append(f"  running {t.id} {t.family:14} {t.label[:28]:28} {step:>15}"
                               + (f"  loss {loss:.3f}" if loss is not None else "")
                               + f"  eta {_hms(self.trial_eta(t, s, a, manifest, ratio, p))}")
        print("\n".join([line, *running]), file=self.out, flush=True)
        if final:
            for t, s, reason, attempts in rows:
                if s == FAILED:
                    print(f"  failed {t.id} {t.family} {t.label} after {attempts} attempt(s): "
                          f"{reason.splitlines()[0] if reason else '?'}  (log: {self.layout.log(t.id)})",
                          file=self.out)
        return {"done": c[DONE], "failed": c[FAILED], "pending": c[PENDING] + c[RUNNING],
                "total": len(self.trials)}

    def loop(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            try:
                self.report()
            except Exception as e:   # progress must never take the launcher down
                print(f"(progress: {type(e).__name__}: {e})", file=self.out)


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
