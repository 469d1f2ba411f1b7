"""`launch`: the launcher side of every backend. Rounds of "run what is not done and
may still run" through an Executor until nothing is left; trials another launcher is
training are waited for with a message naming the holder; the progress lines run
beside it (progress.py). Retries happen inside a round, in the slot that just failed
(worker.run_trial); a later round only picks up trials whose process died.

A SIGTERM to the launcher (what `timeout` and schedulers send) unwinds like Ctrl-C:
the backend stops its trials before the launcher exits (local.py, ray_tune.py).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..sweep.trial import Trial
from .layout import Layout, Unreadable, keep_aside, read_json, write_json_atomic
from .locks import STALL_MINUTES, holder, manifest_lock, steal
from .progress import Progress
from .state import (DONE, failed_here_since, load_row_index, parquet_path, parquet_state, read_manifest,
                    retry_verdict, save_row_index)


class Executor:
    """A backend: run each given trial once (run_trial decides skip/retry), block until
    all have ended. `parallelism` feeds the progress estimate."""
    name = "base"
    parallelism = 1

    def run(self, trials: list[Trial], root: Path, max_attempts: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def needs_run(layout: Layout, t: Trial, manifest: dict, max_attempts: int, since: float | None = None) -> bool:
    """Not done, may still run, and (with `since`, the launch's start) did not fail for
    the environment during this launch."""
    if parquet_state(parquet_path(layout, t.id))[0] == DONE:
        return False
    rec = manifest.get(t.id, {})
    return not retry_verdict(rec, max_attempts) and not (since is not None and failed_here_since(rec, since))


# --------------------------------------------------------------------------- plan.json
def read_plan(layout: Layout) -> dict:
    """{trial id: {family, point, seed, ...}} of plan.json; a garbage or wrong-shaped file
    is reported, kept aside and rebuilt from the manifest and the rows."""
    try:
        data = read_json(layout.plan_file, None)
        if data is None:
            return {}
        if isinstance(data.get("trials"), dict) and all(isinstance(v, dict) for v in data["trials"].values()):
            return data["trials"]
        why = "not a plan (no mapping of trial ids to trials)"
    except Unreadable as e:
        why = str(e)
    with manifest_lock(layout.state):
        try:                     # another process may have repaired it meanwhile
            data = read_json(layout.plan_file, None)
            if data and isinstance(data.get("trials"), dict):
                return data["trials"]
        except Unreadable:
            pass
        keep_aside(layout.plan_file, why, "its trials are rebuilt")
        trials = rebuild_plan(layout)
        try:
            write_json_atomic(layout.plan_file, {"sweep": layout.sweep, "trials": trials, "rebuilt": time.time()})
        except OSError:
            pass
        return trials


def rebuild_plan(layout: Layout) -> dict:
    import pyarrow.parquet as pq
    trials = {}
    for tid, rec in read_manifest(layout).items():
        trials[tid] = {"family": rec.get("family", ""), "point": rec.get("point", {}), "seed": ""}
    for f in sorted(layout.dir.glob("*.parquet")):
        entry = trials.setdefault(f.stem, {"family": "", "point": {}, "seed": ""})
        try:
            row = pq.read_table(f, columns=["family", "seed"]).slice(0, 1).to_pylist()
        except Exception:
            continue
        if row:
            entry.update(family=entry["family"] or row[0]["family"], seed=row[0]["seed"])
    return trials


def write_plan(layout: Layout, trials: list[Trial], spec_path: str, scale: str) -> None:
    """plan.json: who belongs to this sweep (merged with earlier launches: a grid that
    grew keeps its old points listed)."""
    old = read_plan(layout)
    with manifest_lock(layout.state):
        try:
            old = {**old, **read_json(layout.plan_file, {"trials": {}}).get("trials", {})}
        except Unreadable:
            pass
        for t in trials:
            old[t.id] = {"family": t.family, "point": t.point, "seed": t.seed, "est_seconds": t.est_seconds,
                         "flops": t.flops}
        write_json_atomic(layout.plan_file, {"sweep": layout.sweep, "spec": spec_path, "scale": scale,
                                             "trials": old})


# --------------------------------------------------------------------------- launch
def scan(layout: Layout, trials: list[Trial], max_attempts: int, since: float | None = None
         ) -> tuple[list[Trial], dict]:
    """One round's look at the sweep: (trials to run, {trial id: Holder} of those held
    by another process). Rows are read only when their file changed (state.py)."""
    manifest = read_manifest(layout)
    todo = [t for t in trials if needs_run(layout, t, manifest, max_attempts, since)]
    held = {t.id: h for t in todo if (h := holder(layout.lock(t.id))) is not None}
    save_row_index(layout)
    return todo, held


def longest_first(trials: list[Trial]) -> list[Trial]:
    """The order a round hands trials to the backend: longest estimated time first
    (ties in plan order), so the long trials do not start last and run alone while the
    other slots idle (the longest-processing-time rule of list scheduling)."""
    return sorted(trials, key=lambda t: -(t.est_seconds or 0.0))


class Terminated(KeyboardInterrupt):
    """The launcher got SIGTERM: unwind as for Ctrl-C, so the backend stops its trials."""


def _on_sigterm(signum, frame):
    raise Terminated()


def launch(trials: list[Trial], executor: Executor, root: str | os.PathLike, max_retries: int = 2,
           progress_every: float = 10.0, out=None, poll: float = 2.0, spec_path: str = "",
           scale: str = "", stall_minutes: float = STALL_MINUTES, take_over: bool = False) -> dict:
    """Run rounds until every trial is done or may not run again; returns the counts.
    `take_over` (--steal): trials whose lock outlived its holder are taken over."""
    out = out or sys.stdout
    if not trials:
        print("nothing to run: the plan is empty", file=out)
        return {"done": 0, "failed": 0, "pending": 0, "total": 0}
    root = Path(root).resolve()
    layout = Layout(root, trials[0].sweep)
    layout.make()
    load_row_index(layout)
    write_plan(layout, trials, spec_path, scale)
    max_attempts = 1 + max(0, max_retries)
    prog = Progress(layout, trials, executor.parallelism, out, max_attempts, stall_minutes)
    done0 = sum(parquet_state(parquet_path(layout, t.id))[0] == DONE for t in trials)
    print(f"sweep {layout.sweep}: {len(trials)} trials, {done0} already done; results in {layout.dir}",
          file=out, flush=True)
    started = time.time()
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    stop = threading.Event()
    ticker = threading.Thread(target=prog.loop, args=(stop, progress_every), daemon=True)
    ticker.start()
    try:
        rounds, told = 0, ((), 0.0)     # what the last wait message said, and when
        while True:
            todo, held = scan(layout, trials, max_attempts, since=started)
            if not todo:
                break
            if take_over:
                for tid, h in list(held.items()):
                    if not h.alive and steal(layout.lock(tid)):
                        print(f"took over trial {tid} from {h.describe(stall_minutes)}", file=out, flush=True)
                        del held[tid]
            free = [t for t in todo if t.id not in held]
            if not free:          # all left are held elsewhere: wait for them, and say for whom
                dead = {tid: h for tid, h in held.items() if not h.alive}
                if len(dead) == len(held):
                    for tid, h in dead.items():
                        print(f"trial {tid}: locked by {h.describe(stall_minutes)}; run again with --steal "
                              "to take it over", file=out, flush=True)
                    break
                key = tuple(sorted((tid, h.pid, h.stalled(stall_minutes)) for tid, h in held.items()))
                if key != told[0] or time.time() - told[1] > max(60.0, progress_every):
                    msg = "; ".join(f"{tid} held by {h.describe(stall_minutes)}" for tid, h in sorted(held.items()))
                    print(f"waiting for {len(held)} trial(s) trained by another process: {msg[:600]}",
                          file=out, flush=True)
                    told = (key, time.time())
                time.sleep(poll)
                continue
            rounds += 1
            if rounds > max_attempts + 3 and rounds > 2 * max_attempts:
                print("giving up: trials keep coming back unfinished", file=out)
                break
            executor.run(longest_first(free), root, max_attempts)
    except KeyboardInterrupt as e:       # Ctrl-C or SIGTERM: the backend stops its trials (finally)
        print(f"stopping on {'SIGTERM' if isinstance(e, Terminated) else 'Ctrl-C'}: running trials checkpoint "
              "and stop; launch again to resume them", file=out, flush=True)
        raise
    finally:
        stop.set()
        ticker.join(timeout=1)
        if main:
            signal.signal(signal.SIGTERM, old_term)
        executor.close()
    return prog.report(final=True)
