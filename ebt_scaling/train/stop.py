"""Stopping a run cleanly from outside: a signal handler asks (`StopRequest.ask`), the
training loop checkpoints at the end of the step it is in and raises `Interrupted`,
which is not an Exception: train() lets it through without writing a failed row, so
the trial resumes from that checkpoint (a Slurm requeue, a killed launcher's trainer)."""
from __future__ import annotations

import signal
import threading


class Interrupted(BaseException):
    """The run stopped on request after checkpointing at `step`."""

    def __init__(self, step: int, reason: str, requeue: bool = False):
        super().__init__(f"stopped at step {step}: {reason}")
        self.step, self.reason, self.requeue = step, reason, requeue


class StopRequest:
    def __init__(self):
        self.reason = ""
        self.requeue = False

    def ask(self, reason: str, requeue: bool = False) -> None:
        if not self.reason:
            self.reason, self.requeue = reason, requeue

    def __bool__(self) -> bool:
        return bool(self.reason)


def stop_on(stop: StopRequest, signals: dict) -> None:
    """Install handlers: {signal: (reason, requeue)}. Only the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, (reason, requeue) in signals.items():
        signal.signal(sig, lambda *_, r=reason, q=requeue: stop.ask(r, q))
