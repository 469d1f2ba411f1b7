"""The launcher's progress lines, and a trial's progress read from its rows.

Every `every` seconds: a counts line with the sweep's ETA, and a line per running
trial (step, latest loss, its own ETA). ETA: a running trial's remaining steps at the
pace it has kept so far (time since its attempt started over the steps it has
flushed); a trial not started yet, or failed with retries left, at its planned
estimate scaled by how long finished trials took against theirs; the sum over the
backend's parallelism. Counts come from state.trial_state, as `status` shows them.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from ..sweep.trial import Trial
from .layout import Layout
from .locks import STALL_MINUTES
from .state import DONE, FAILED, PARTIAL, PENDING, RUNNING, parquet_path, read_manifest, retry_verdict, trial_state


def read_progress(path: Path) -> dict | None:
    """A trial's progress from its rows as last flushed (a running trial flushes at each
    evaluation): {step, total, train_loss, val_loss, wall}; {} without rows, None when
    the file cannot be read (being replaced, or truncated)."""
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
    def __init__(self, layout: Layout, trials: list[Trial], parallelism: int, out, max_attempts: int = 3,
                 stall_minutes: float = STALL_MINUTES):
        self.layout, self.trials, self.parallelism, self.out = layout, trials, max(1, parallelism), out
        self.max_attempts, self.stall_minutes = max_attempts, stall_minutes
        self.t0 = time.time()

    def counts(self) -> tuple[dict, list, dict]:
        """({state: n}, [(trial, state, reason, attempts)], manifest): the manifest is read once."""
        manifest = read_manifest(self.layout)
        c = {DONE: 0, RUNNING: 0, FAILED: 0, PARTIAL: 0, PENDING: 0}
        rows = []
        for t in self.trials:
            s = trial_state(self.layout, t.id, manifest, self.stall_minutes)
            c[s.state] += 1
            rows.append((t, s.state, s.reason, s.attempts))
        return c, rows, manifest

    def _ratio(self, rows, manifest) -> float:
        measured = [(t.est_seconds, float(manifest.get(t.id, {}).get("wall_time", 0.0) or 0.0))
                    for t, s, _, _ in rows if s == DONE]
        measured = [(e, w) for e, w in measured if w > 0]
        return sum(w for _, w in measured) / max(1e-9, sum(e for e, _ in measured)) if measured else 1.0

    def to_run(self, t: Trial, state: str, manifest: dict) -> bool:
        return state != DONE and not retry_verdict(manifest.get(t.id, {}), self.max_attempts)

    def trial_eta(self, t: Trial, state: str, attempts: int, manifest: dict, ratio: float,
                  progress: dict | None) -> float:
        """Seconds this trial still needs (0 when it needs none)."""
        if state == DONE or (state in (FAILED, PARTIAL) and not self.to_run(t, state, manifest)):
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
                f"{c[FAILED]} failed, " + (f"{c[PARTIAL]} partial, " if c[PARTIAL] else "") + f"{c[PENDING]} pending")
        running = []
        if not final:
            progress = {t.id: read_progress(parquet_path(self.layout, t.id)) for t, s, _, _ in rows if s == RUNNING}
            retries = sum(s in (FAILED, PARTIAL) and self.to_run(t, s, manifest) for t, s, _, _ in rows)
            line += (f" ({retries} to retry)" if retries else "") + \
                f"; about {_hms(self.eta(rows, manifest, progress))} left"
            ratio = self._ratio(rows, manifest)
            for t, s, reason, a in rows:
                if s != RUNNING:
                    continue
                p = progress.get(t.id) or {}
                loss = p.get("val_loss") if p.get("val_loss") is not None else p.get("train_loss")
                step = f"step {p['step']}/{p['total']}" if p else "starting"
                running.append(f"  running {t.id} {t.family:14} {t.label[:28]:28} {step:>15}"
                               + (f"  loss {loss:.3f}" if loss is not None else "")
                               + f"  eta {_hms(self.trial_eta(t, s, a, manifest, ratio, p))}"
                               + (f"  ({reason})" if reason else ""))
        print("\n".join([line, *running]), file=self.out, flush=True)
        if final:
            for t, s, reason, attempts in rows:
                if s in (FAILED, PARTIAL):
                    why = retry_verdict(manifest.get(t.id, {}), self.max_attempts)
                    print(f"  {s} {t.id} {t.family} {t.label} after {attempts} attempt(s): "
                          f"{reason.splitlines()[0] if reason else '?'}  (log: {self.layout.log(t.id)})"
                          + (f"\n    not retried: {why}" if why and not why.startswith("out of attempts") else ""),
                          file=self.out)
        return {"done": c[DONE], "failed": c[FAILED] + c[PARTIAL], "pending": c[PENDING] + c[RUNNING],
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
