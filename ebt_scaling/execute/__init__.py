"""Executors: run a sweep's trials through train() on Ray (default), Slurm or locally,
resumable (done trials skipped), fault-tolerant (failures recorded and retried) and
safe to run twice at once (a per-trial lock). See base.py for the results layout."""
from .base import Executor, Layout, launch, run_trial, trial_state

__all__ = ["Executor", "Layout", "launch", "run_trial", "trial_state"]
