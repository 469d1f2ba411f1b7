"""Locks: one per trial while it trains, one for the manifest while it is rewritten.

A trial's lock is an fcntl.flock on `_state/locks/<trial id>.lock`, taken by the
process that trains: two launchers on one folder never train one trial twice, and a
trainer's lock goes with its process. The file says who holds it (host, pid, since
when) and its mtime is the holder's heartbeat: the trainer touches it at every row
it makes, so a holder that is alive but makes no progress shows as stalled
(`Holder.stalled`), and `status`/`launch` name the real holder.

A lock can outlive its holder when a child process inherited the descriptor; then
the holder is dead (its pid is gone on this host) but the flock is still held, and
`launch --steal` takes the trial over (`steal`): the old file is unlinked, so the
next claim locks a new one.

The manifest lock is held for milliseconds; `manifest_lock` waits for it at most
`timeout` seconds, says what it waits for after a few, then gives up with a message.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError

STALL_MINUTES = 30.0      # default: a holder silent this long is reported as stalled
MANIFEST_TIMEOUT_S = 120.0    # the longest anyone waits for the manifest lock


class LockTimeout(ConfigError):
    """A lock stayed held past its timeout (shown by the CLI as one message, exit 2)."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: float          # when it took the lock
    beat: float           # its last heartbeat (the lock file's mtime)

    @property
    def here(self) -> bool:
        return self.host == socket.gethostname()

    @property
    def alive(self) -> bool:
        """False only when the pid is known to be gone on this host (elsewhere: assumed alive)."""
        if not self.here or self.pid <= 0:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def silent_for(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.beat)

    def stalled(self, stall_minutes: float = STALL_MINUTES) -> bool:
        return self.silent_for() > 60.0 * stall_minutes

    def describe(self, stall_minutes: float = STALL_MINUTES) -> str:
        who = f"pid {self.pid} on {self.host}"
        if not self.alive:
            return f"{who}, which is dead (its lock is still held, e.g. by a child that inherited it)"
        silent = self.silent_for()
        if silent > 60.0 * stall_minutes:
            return f"{who}, alive but with no progress for {_mins(silent)} (stalled?)"
        return f"{who}, last progress {_mins(silent)} ago"


def _mins(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


class TrialLock:
    """An exclusive, non-blocking flock on the trial's lock file, with holder and heartbeat."""

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
        now = time.time()
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": now}).encode())
        except OSError:
            pass            # a full disk: the lock holds all the same; only the holder's name is lost
        self.fd = fd
        self.beat()
        return True

    def beat(self) -> None:
        """Progress: the holder is alive and moving."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.utime(self.fd)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Heartbeat:
    """A sink view (results/store.py interface) that beats the lock at every row."""

    def __init__(self, lock: TrialLock):
        self.lock = lock

    def emit(self, row) -> None:
        self.lock.beat()

    def flush(self) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def close(self, status: str = "ok") -> None:
        pass


def is_locked(path: Path) -> bool:
    """True while some process holds this lock (a shared probe: never blocks a claim
    for longer than the probe itself)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def holder(path: Path) -> Holder | None:
    """Who holds the lock (None when nobody does)."""
    if not is_locked(path):
        return None
    try:
        info = json.loads(Path(path).read_text() or "{}")
        beat = Path(path).stat().st_mtime
    except (OSError, ValueError):
        info, beat = {}, 0.0
    if not isinstance(info, dict):
        info = {}
    return Holder(host=str(info.get("host", "?")), pid=int(info.get("pid", 0) or 0),
                  since=float(info.get("since", 0.0) or 0.0), beat=beat)


def steal(path: Path) -> bool:
    """Take over a lock whose holder is dead: unlink its file (the next claim locks a
    new one). Refuses (False) while the holder is alive or unknown."""
    h = holder(path)
    if h is None:
        return True
    if h.alive or not h.here:
        return False
    path.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def manifest_lock(state_dir: Path, timeout: float | None = None, notice: float = 3.0, out=None):
    """The sweep's state lock (manifest.json and plan.json are rewritten under it)."""
    timeout = MANIFEST_TIMEOUT_S if timeout is None else timeout
    path = Path(state_dir) / ".manifest.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    t0 = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - t0
                if waited > timeout:
                    raise LockTimeout(f"{path}: held for more than {timeout:.0f} s by {_lock_owner(path)}; "
                                      "if that process is hung, stop it and run the command again") from None
                if waited > notice and not told:
                    print(f"waiting for {path} (held by {_lock_owner(path)}; giving up after {timeout:.0f} s)",
                          file=out or sys.stderr, flush=True)
                    told = True
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_owner(path: Path) -> str:
    try:
        host, pid = Path(path).read_text().split()
        return f"pid {pid} on {host}"
    except (OSError, ValueError):
        pid = _flock_pid(path)      # a process that did not write its name (`flock FILE cmd`, say)
        return f"pid {pid} on {socket.gethostname()}" if pid else "an unknown process"


def _flock_pid(path: Path) -> int:
    """The pid /proc/locks gives for a flock on this file (Linux), 0 when unknown."""
    try:
        ino = os.stat(path).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
                return int(parts[4])
    except (OSError, ValueError):
        pass
    return 0
