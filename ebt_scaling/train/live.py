"""Live progress of one training run, drawn from the rows it emits (a sink view).

On a terminal: a tqdm bar with step/total, the latest training loss, the latest
validation loss, tokens/s and tqdm's ETA. Elsewhere (a log file, CI, a pipe): one
plain line at most every `every` seconds, plus one per evaluation, e.g.

    step 200/500 (40%)  loss 2.314  val 2.402  12.3k tok/s  elapsed 0:00:41  eta 0:01:02

Rows arrive every train.log_every steps, so that is how often the bar moves.
"""
from __future__ import annotations

import math
import sys
import time

from ..results.schema import Row


class LiveProgress:
    def __init__(self, total_steps: int, out=None, tty: bool | None = None, every: float = 30.0):
        self.total, self.out, self.every = total_steps, out or sys.stderr, every
        self.tty = self.out.isatty() if tty is None else tty
        self.bar = None
        self.loss = self.val = self.tps = math.nan
        self.step = 0
        self.first: tuple[float, int] | None = None    # (time, step) of the first row seen
        self.t0 = time.time()
        self.last_line = -math.inf

    # ---- the sink interface (results/store.py)
    def emit(self, row: Row) -> None:
        if row.kind == "think":
            return
        if math.isfinite(row.train_loss):
            self.loss = row.train_loss
        if math.isfinite(row.tokens_per_s):
            self.tps = row.tokens_per_s
        if row.kind in ("eval", "final") and math.isfinite(row.val_loss):
            self.val = row.val_loss
        if self.first is None:
            self.first = (time.time(), row.step)
        self.step = row.step
        if self.tty:
            self._draw_bar(row)
        elif row.kind != "train" or time.time() - self.last_line >= self.every:
            self._line(row)

    def flush(self) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def close(self, status: str = "ok") -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ---- drawing
    def _postfix(self) -> str:
        parts = []
        if math.isfinite(self.loss):
            parts.append(f"loss {self.loss:.3f}")
        if math.isfinite(self.val):
            parts.append(f"val {self.val:.3f}")
        if math.isfinite(self.tps):
            parts.append(f"{_si(self.tps)} tok/s")
        return "  ".join(parts)

    def _draw_bar(self, row: Row) -> None:
        from tqdm import tqdm
        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=row.step, file=self.out, unit="step",
                            dynamic_ncols=True, desc=row.family, leave=True)
        self.bar.set_postfix_str(self._postfix(), refresh=False)
        self.bar.update(max(0, row.step - self.bar.n))

    def eta(self) -> float:
        """Seconds left at the rate measured since the first row (NaN before two rows)."""
        if self.first is None or self.step <= self.first[1]:
            return math.nan
        rate = (self.step - self.first[1]) / max(1e-9, time.time() - self.first[0])
        return (self.total - self.step) / rate

    def _line(self, row: Row) -> None:
        self.last_line = time.time()
        pct = 100.0 * self.step / max(1, self.total)
        what = {"eval": "  (eval)", "final": "  (final)"}.get(row.kind, "")
        eta = self.eta()
        print(f"step {self.step}/{self.total} ({pct:.0f}%)  {self._postfix()}  elapsed "
              f"{_hms(time.time() - self.t0)}" + (f"  eta {_hms(eta)}" if math.isfinite(eta) else "") + what,
              file=self.out, flush=True)


def _si(x: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
