"""The local backend: trials on this machine, one after another (or a few at once).

Each trial runs in its own Python process (`python -m ebt_scaling.execute.local`), so a
trial that crashes the interpreter, runs out of memory or is killed takes only itself
down; the launcher records how it ended and starts it again as soon as a slot is free
(while it may still run: state.retry_verdict). `in_process=True` runs trials inside
the launcher instead (for debugging with pdb, or for tests).

No orphans: each trainer is the leader of its own process group, asks the kernel for
SIGTERM when the launcher dies (prctl PR_SET_PDEATHSIG, Linux; a SIGKILLed launcher
included), and takes SIGTERM/SIGINT as "checkpoint now and stop" (train/stop.py). A
launcher that unwinds (Ctrl-C, SIGTERM, an error) stops its trainers' groups itself,
SIGKILL after a grace period.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..sweep.trial import Trial
from .launcher import Executor, needs_run
from .layout import Layout, write_json_atomic
from .locks import is_locked
from .state import DONE, parquet_path, parquet_state, read_manifest, record_death
from .worker import run_trial

PR_SET_PDEATHSIG = 1
GRACE_S = 30.0          # a stopped trainer's time to checkpoint before SIGKILL


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _die_with_parent():
    """A preexec_fn for the child: SIGTERM when the parent (the launcher) dies. libc is
    looked up here, in the parent: the child, forked from a threaded process, only calls."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None   # not Linux: the process group and the launcher's own clean-up remain
    parent = os.getpid()

    def arm():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:     # the launcher died before the request took hold
            os._exit(1)
    return arm


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int = 1, in_process: bool = False, poll: float = 0.2, grace: float = GRACE_S):
        self.parallelism = max(1, workers)
        self.in_process = in_process
        self.poll = poll
        self.grace = grace

    def run(self, trials: list[Trial], root: Path, max_attempts: int) -> None:
        if self.in_process:
            for t in trials:
                run_trial(t, root, max_attempts)
            return
        queue = list(trials)
        running: list[tuple[Trial, subprocess.Popen]] = []
        try:
            while queue or running:
                while queue and len(running) < self.parallelism:
                    t = queue.pop(0)
                    layout = Layout(root, t.sweep)
                    if is_locked(layout.lock(t.id)) or parquet_state(parquet_path(layout, t.id))[0] == DONE:
                        continue      # another launcher has it (or just finished it): no process needed
                    try:
                        running.append((t, self._spawn(t, root, max_attempts)))
                    except OSError as e:    # a full disk: the trial stays as it is, for a later round
                        print(f"warning: could not start trial {t.id}: {e}", file=sys.stderr, flush=True)
                still = []
                for t, p in running:
                    code = p.poll()
                    if code is None:
                        still.append((t, p))
                    elif code != 0:
                        why = (f"trial process killed by {signal_name(-code)}" if code < 0
                               else f"trial process exited with code {code}")
                        layout = Layout(root, t.sweep)
                        record_death(layout, t.id, why)
                        if needs_run(layout, t, read_manifest(layout), max_attempts):
                            queue.insert(0, t)       # its slot is free now: start it again at once
                running = still
                if running:
                    time.sleep(self.poll)
        finally:
            stop_all([p for _, p in running], self.grace)

    def _spawn(self, t: Trial, root: Path, max_attempts: int) -> subprocess.Popen:
        layout = Layout(root, t.sweep)
        layout.make()
        spec = layout.state / "trials" / f"{t.id}.json"
        write_json_atomic(spec, t.to_json())
        with open(layout.log(t.id), "a") as log:
            return subprocess.Popen([sys.executable, "-m", "ebt_scaling.execute.local", str(spec), str(root),
                                     str(max_attempts)], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, process_group=0,
                                    preexec_fn=_die_with_parent())


def stop_all(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM each trainer's process group (it checkpoints and stops), SIGKILL what is
    left after `grace` seconds."""
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(p, signal.SIGKILL)
        p.wait()


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str]) -> int:
    from ..train.stop import Interrupted, StopRequest, stop_on
    spec, root, max_attempts = argv
    stop = StopRequest()
    stop_on(stop, {signal.SIGTERM: ("SIGTERM (the launcher stopped or died)", False),
                   signal.SIGINT: ("SIGINT", False)})
    trial = Trial.from_json(json.loads(Path(spec).read_text()))
    try:
        out = run_trial(trial, root, int(max_attempts), redirect=False, stop=stop)
    except Interrupted as e:
        print(f"=== result: interrupted at step {e.step}", flush=True)
        return 128 + signal.SIGTERM
    print(f"=== result: {out['status']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
