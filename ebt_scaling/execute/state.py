"""The one trial state machine, and the manifest that records attempts.

`trial_state` is what `status`, the launcher and its progress lines all show, from
three sources in this order:

    lock held                    -> running   (reason: who holds it, stalled or dead)
    rows (results/outcome.py)    -> done | failed (last final row failed or NaN) |
                                    partial (rows but no final row: killed, preempted,
                                    or an unreadable file, with the reason)
    manifest, no rows            -> failed (an attempt that ended before any row,
                                    with its reason) | pending (requeued, or never run)

The manifest (`_state/manifest.json`) keeps, per trial, the attempts made, the status
and reason of the latest and the history of all. Its status always says what
`trial_state` would: the worker records the outcome its rows show, not what train()
returned. A manifest that is garbage or of the wrong shape is reported, kept aside
(manifest.json.corrupt-<time>) and rebuilt from the rows and the logs (every attempt
starts its log with "=== ... attempt N of <id>"), so attempts are never reset.
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..results.outcome import DONE, FAILED, PARTIAL, PENDING, outcome
from .layout import Layout, Unreadable, keep_aside, read_json, write_json_atomic
from .locks import STALL_MINUTES, Holder, LockTimeout, holder, manifest_lock

RUNNING = "running"
STATES = (DONE, RUNNING, FAILED, PARTIAL, PENDING)
# manifest statuses: ok | failed | running | interrupted | requeued (never "done")
OK, INTERRUPTED, REQUEUED = "ok", "interrupted", "requeued"
ENVIRONMENT = "environment"     # a failure that is not the point's (a full disk): see retry_verdict
ATTEMPT_LINE = re.compile(r"^=== .*? attempt (\d+) of (\S+)", re.M)


# --------------------------------------------------------------------------- rows
_row_cache: dict[str, tuple[tuple, tuple[str, str]]] = {}
ROW_INDEX = "rows-index.json"    # the cache on disk: a new launcher or `status` reads one file, not 1000


def parquet_state(path: Path) -> tuple[str, str]:
    """(done | failed | partial | pending, reason) from the trial's rows; cached per file
    version, so a launcher round over 1000 trials reads only the files that changed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return PENDING, ""
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    hit = _row_cache.get(str(path))
    if hit and hit[0] == key:
        return hit[1]
    import pyarrow.parquet as pq
    try:
        result = outcome(pq.ParquetFile(path).read(columns=["kind", "status", "error", "val_loss"]).to_pydict())
    except Exception as e:   # truncated or foreign: keep the reason; the next attempt sets it aside
        result = PARTIAL, f"unreadable parquet {Path(path).name} ({type(e).__name__}: {str(e)[:160]})"
    _row_cache[str(path)] = (key, result)
    return result


def load_row_index(layout: Layout) -> None:
    """Seed the cache from `_state/rows-index.json` (entries are checked against each
    file's inode, mtime and size before use, so a stale index costs only a read)."""
    try:
        index = read_json(layout.state / ROW_INDEX, {})
    except (Unreadable, OSError):
        return
    for name, entry in index.items():
        try:
            ino, mtime, size, state, reason = entry
            _row_cache.setdefault(str(layout.dir / name), ((ino, mtime, size), (state, reason)))
        except (TypeError, ValueError):
            continue


def save_row_index(layout: Layout) -> None:
    """Write the cache's entries for this sweep's own files (best effort: it is a cache;
    never the first file of a sweep that was not launched)."""
    if not layout.state.is_dir():
        return
    prefix = str(layout.dir) + os.sep
    index = {k[len(prefix):]: [*key, *result] for k, (key, result) in _row_cache.items()
             if k.startswith(prefix) and os.sep not in k[len(prefix):]}
    try:
        old = read_json(layout.state / ROW_INDEX, {})
    except (Unreadable, OSError):
        old = {}
    if old != index:
        try:
            write_json_atomic(layout.state / ROW_INDEX, index)
        except OSError:
            pass


def unreadable(reason: str) -> bool:
    return reason.startswith("unreadable parquet")


_sibling_cache: dict[str, tuple[tuple, dict]] = {}


def _siblings(root: Path) -> dict[str, list[Path]]:
    """{trial id: parquet files of it in any sweep folder under root}, rescanned only
    when a sweep folder changed."""
    try:
        dirs = sorted(e.path for e in os.scandir(root) if e.is_dir() and e.name[:1] not in "_.")
        key = tuple((d, os.stat(d).st_mtime_ns) for d in dirs)
    except OSError:
        return {}
    hit = _sibling_cache.get(str(root))
    if hit and hit[0] == key:
        return hit[1]
    index: dict[str, list[Path]] = {}
    for d in dirs:
        with os.scandir(d) as it:
            for e in it:
                if e.name.endswith(".parquet") and not e.name.startswith("."):
                    index.setdefault(e.name[:-len(".parquet")], []).append(Path(e.path))
    _sibling_cache[str(root)] = (key, index)
    return index


def parquet_path(layout: Layout, tid: str) -> Path:
    """Where the trial's rows are: here, or in a sibling sweep's folder that holds it
    finished (a trial two sweeps share is trained and stored once)."""
    own = layout.parquet(tid)
    if own.exists():
        return own
    for other in _siblings(Path(layout.root)).get(tid, []):
        if other != own and parquet_state(other)[0] == DONE:
            return other
    return own


# --------------------------------------------------------------------------- manifest
def _valid(data: dict) -> bool:
    trials = data.get("trials")
    return isinstance(trials, dict) and all(isinstance(r, dict) for r in trials.values())


def read_manifest(layout: Layout) -> dict:
    """{trial id: record}. A corrupt file is repaired on the way (see the module doc)."""
    try:
        data = read_json(layout.manifest, {"trials": {}})
        if _valid(data):
            return data["trials"]
    except Unreadable:
        pass
    try:
        with manifest_lock(layout.state):
            return _load_locked(layout)["trials"]
    except PermissionError:       # a read-only folder: repair in memory, for this command only
        return rebuild_records(layout)


def _load_locked(layout: Layout) -> dict:
    """The manifest, read under the manifest lock; rebuilt (and the bad file kept aside)
    when it is unreadable or of the wrong shape."""
    try:
        data = read_json(layout.manifest, None)
        if data is None:
            return {"sweep": layout.sweep, "trials": {}}
        if _valid(data):
            return data
        why = "not a manifest (no mapping of trials to records)"
    except Unreadable as e:
        why = str(e)
    keep_aside(layout.manifest, why, "its attempts are rebuilt")
    data = {"sweep": layout.sweep, "trials": rebuild_records(layout), "rebuilt": time.time()}
    try:
        write_json_atomic(layout.manifest, data)
    except OSError:
        pass        # a read-only folder: the rebuilt records serve this command
    return data


def update_manifest(layout: Layout, tid: str, fn) -> dict:
    """Read-modify-write one trial's record under the manifest lock; returns the record."""
    with manifest_lock(layout.state):
        data = _load_locked(layout)
        rec = data["trials"].setdefault(tid, new_record())
        fn(rec)
        write_json_atomic(layout.manifest, data)
        return rec


def new_record() -> dict:
    return {"attempts": 0, "status": PENDING, "error": "", "history": []}


def rebuild_records(layout: Layout) -> dict:
    """Records from what is on disk: attempts from the logs' attempt lines, status and
    reason from the rows."""
    recs: dict[str, dict] = {}
    logs = layout.state / "logs"
    for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        attempts = [int(n) for n, tid in ATTEMPT_LINE.findall(text) if tid == log.stem]
        if attempts:
            recs[log.stem] = {**new_record(), "attempts": max(attempts), "log": str(log)}
    for pq_file in sorted(layout.dir.glob("*.parquet")):
        recs.setdefault(pq_file.stem, {**new_record(), "attempts": 1})
    for tid, rec in recs.items():
        state, reason = parquet_state(layout.parquet(tid))
        rec["status"] = {DONE: OK, FAILED: FAILED, PARTIAL: INTERRUPTED}.get(state, FAILED if rec["attempts"]
                                                                             else PENDING)
        rec["error"] = reason or ("" if state == DONE else "rebuilt from the logs: the attempt ended "
                                                            "without a final row")
        rec["history"] = [{"attempt": n, "status": "unknown (manifest rebuilt)", "error": ""}
                          for n in range(1, rec["attempts"])] + (
            [{"attempt": rec["attempts"], "status": rec["status"], "error": rec["error"]}] if rec["attempts"] else [])
    return recs


# --------------------------------------------------------------------------- states
@dataclass(frozen=True)
class TrialState:
    state: str
    reason: str
    attempts: int
    holder: Holder | None = None


def trial_state(layout: Layout, tid: str, manifest: dict | None = None,
                stall_minutes: float = STALL_MINUTES) -> TrialState:
    rec = (manifest if manifest is not None else read_manifest(layout)).get(tid, {})
    attempts = int(rec.get("attempts", 0) or 0)
    h = holder(layout.lock(tid))
    if h is not None:
        busy = h.describe(stall_minutes)
        return TrialState(RUNNING, "" if (h.alive and not h.stalled(stall_minutes)) else f"held by {busy}",
                          attempts, h)
    state, reason = parquet_state(parquet_path(layout, tid))
    status = rec.get("status")
    if state in (DONE, FAILED):
        return TrialState(state, reason, attempts)
    if status == REQUEUED:
        return TrialState(PENDING, rec.get("error", "") or "requeued", attempts)
    if state == PARTIAL:      # the reason: the file's, else what the last attempt recorded
        recorded = rec.get("error", "") if status != RUNNING else ""
        return TrialState(PARTIAL, reason or recorded or "the trial's process ended without a final row "
                          "(killed, preempted or out of memory)", attempts)
    if attempts and status in (FAILED, INTERRUPTED):
        return TrialState(FAILED, rec.get("error", "") or "failed before writing any row", attempts)
    if attempts and status == RUNNING:
        return TrialState(FAILED, "the trial's process ended before writing any row (killed or out of memory)",
                          attempts)
    return TrialState(PENDING, "", attempts)


def retry_verdict(rec: dict, max_attempts: int) -> str:
    """Why a trial that is not done may not run again ("" when it may). Never: after a
    configuration error, or twice the same failure at the same step. Attempts that
    failed for the environment (a full disk, out of memory) are not counted."""
    if rec.get("no_retry"):
        return rec["no_retry"]
    attempts = int(rec.get("attempts", 0) or 0) - int(rec.get("uncounted", 0) or 0)
    if attempts >= max_attempts:
        return f"out of attempts ({attempts} of {max_attempts}; raise --max-retries for more)"
    fails = [h for h in rec.get("history", []) if h.get("status") == FAILED and h.get("failure") != ENVIRONMENT]
    if len(fails) >= 2 and _same_failure(fails[-1], fails[-2]):
        return (f"failed twice the same way at step {fails[-1].get('step')}: {fails[-1].get('error', '')[:200]} "
                "(not retried again: a third attempt would fail the same way)")
    return ""


def failed_here_since(rec: dict, since: float) -> bool:
    """The trial's last attempt failed for the environment after `since` (this launch
    does not run it again: a full disk stays full; a later launch will)."""
    last = (rec.get("history") or [{}])[-1]
    return last.get("failure") == ENVIRONMENT and float(last.get("finished", 0.0) or 0.0) >= since


def _same_failure(a: dict, b: dict) -> bool:
    if a.get("step") is None or a.get("step") != b.get("step"):
        return False
    return _first_line(a.get("error", "")) == _first_line(b.get("error", ""))


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def record_death(layout: Layout, tid: str, reason: str) -> None:
    """The launcher saw the trainer die (signal, lost job): say so in the manifest.
    Never raises (a full disk or a read-only folder leaves the record as it was; the
    rows still say the trial is unfinished, so it stays retryable)."""
    def fn(r):
        if r.get("status") in (RUNNING, REQUEUED):
            r.update(status=INTERRUPTED, error=reason, finished=time.time())
            r["history"].append({"attempt": r["attempts"], "status": INTERRUPTED, "error": reason})
    try:
        if parquet_state(parquet_path(layout, tid))[0] not in (DONE, FAILED):
            update_manifest(layout, tid, fn)
    except (OSError, LockTimeout) as e:
        print(f"warning: could not record that trial {tid} ended ({reason}): {e}", file=sys.stderr)
