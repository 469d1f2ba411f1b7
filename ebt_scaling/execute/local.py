"""The local backend: trials on this machine, one after another (or a few at once).

Each trial runs in its own Python process (`python -m ebt_scaling.execute.local`), so a
trial that crashes the interpreter, runs out of memory or is killed takes only itself
down; the launcher records how it ended and the next round retries it. `in_process=True`
runs trials inside the launcher instead (for debugging with pdb, or for tests).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..sweep.trial import Trial
from .base import (DONE, Executor, Layout, is_locked, parquet_state, record_death, run_trial, signal_name,
                   write_json_atomic)


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, workers: int = 1, in_process: bool = False, poll: float = 0.2):
        self.parallelism = max(1, workers)
        self.in_process = in_process
        self.poll = poll

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
                    if is_locked(layout.lock(t.id)) or parquet_state(layout.parquet(t.id))[0] == DONE:
                        continue      # another launcher has it (or just finished it): no process needed
                    running.append((t, self._spawn(t, root, max_attempts)))
                still = []
                for t, p in running:
                    code = p.poll()
                    if code is None:
                        still.append((t, p))
                    elif code != 0:
                        why = (f"trial process killed by {signal_name(-code)}" if code < 0
                               else f"trial process exited with code {code}")
                        record_death(Layout(root, t.sweep), t.id, why)
                running = still
                if running:
                    time.sleep(self.poll)
        finally:
            for _, p in running:   # the launcher is going down (Ctrl-C): take its trials along
                p.terminate()
                p.wait(timeout=30)

    def _spawn(self, t: Trial, root: Path, max_attempts: int) -> subprocess.Popen:
        layout = Layout(root, t.sweep)
        layout.make()
        spec = layout.state / "trials" / f"{t.id}.json"
        write_json_atomic(spec, t.to_json())
        log = open(layout.log(t.id), "a")
        try:
            return subprocess.Popen([sys.executable, "-m", "ebt_scaling.execute.local", str(spec), str(root),
                                     str(max_attempts)], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()


def main(argv: list[str]) -> int:
    spec, root, max_attempts = argv
    trial = Trial.from_json(json.loads(Path(spec).read_text()))
    out = run_trial(trial, root, int(max_attempts), redirect=False)
    print(f"=== result: {out['status']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
