"""Executors: run a sweep's trials through train() on Ray (default), Slurm or locally,
resumable (done trials skipped), fault-tolerant (failures recorded and retried) and
safe to run twice at once (a per-trial lock).

    layout.py    where a sweep's files are; atomic JSON writes
    locks.py     the per-trial lock (holder, heartbeat, steal) and the manifest lock
    state.py     the one trial state machine; the manifest (attempts, repair)
    worker.py    run_trial: claim, skip or retry, train, record
    launcher.py  Executor, launch: rounds until done; plan.json
    progress.py  the launcher's progress lines
    local.py, ray_tune.py, slurm.py   the backends
"""
from .launcher import Executor, launch
from .layout import Layout
from .state import trial_state
from .worker import run_trial

__all__ = ["Executor", "Layout", "launch", "run_trial", "trial_state"]
