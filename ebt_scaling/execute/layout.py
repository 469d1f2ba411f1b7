"""Where a sweep keeps its files, and the two ways they are written and read.

Layout of one sweep under the results root (rows apart, all under _state/, which
parquet readers skip, so that `pd.read_parquet(root)` reads only rows; see
results/dataset.py):

    <root>/<sweep>/<trial id>.parquet            rows of one trial (ParquetSink, atomic writes)
    <root>/<sweep>/_state/logs/<trial id>.log    everything the trial printed, every attempt
    <root>/<sweep>/_state/ckpt/<trial id>/       last.pt, for resuming (and for `think`)
    <root>/<sweep>/_state/locks/<trial id>.lock  flock held while the trial trains (locks.py)
    <root>/<sweep>/_state/tracking/              experiment trackers' files (train.track)
    <root>/<sweep>/_state/manifest.json          attempts, status and reason per trial (state.py)
    <root>/<sweep>/_state/plan.json              the sweep's trials (for `status DIR`, and
                                                 for fit: which sweeps a trial belongs to)

A trial that another sweep under the same root has finished (same id: same config)
is not trained again: its rows stay where they are, and this sweep's plan.json lists it.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..results.dataset import PLAN_FILE, STATE_DIR


@dataclass(frozen=True)
class Layout:
    root: Path
    sweep: str

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.sweep

    @property
    def state(self) -> Path:
        """Everything but rows: hidden from parquet readers by its leading "_"."""
        return self.dir / STATE_DIR

    def parquet(self, tid: str) -> Path:
        return self.dir / f"{tid}.parquet"

    def log(self, tid: str) -> Path:
        return self.state / "logs" / f"{tid}.log"

    def ckpt(self, tid: str) -> Path:
        return self.state / "ckpt" / tid

    def lock(self, tid: str) -> Path:
        return self.state / "locks" / f"{tid}.lock"

    @property
    def tracking(self) -> Path:
        """Experiment trackers' files (train.track), all trials together."""
        return self.state / "tracking"

    @property
    def manifest(self) -> Path:
        return self.state / "manifest.json"

    @property
    def plan_file(self) -> Path:
        return self.state / PLAN_FILE

    def make(self) -> None:
        for sub in ("logs", "ckpt", "locks"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)


def write_json_atomic(path: Path, data) -> None:
    """Write whole to a temporary name, then rename: readers see the old or the new file.
    The temporary file never outlives a failed write (a full disk, say)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Unreadable(Exception):
    """A state file that exists but is not JSON of the expected shape."""


def read_json(path: Path, default, shape: type = dict):
    """The file's JSON; `default` when there is no file; Unreadable when it is garbage
    or not a `shape` (a list, a null...)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return default
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Unreadable(f"not JSON ({e})") from None
    if not isinstance(data, shape):
        raise Unreadable(f"JSON of the wrong shape: a {type(data).__name__}, expected a {shape.__name__}")
    return data


def keep_aside(path: Path, why: str, what: str) -> Path | None:
    """Rename a corrupt state file out of the way (kept for a post-mortem) and say so on
    stderr; returns the new name (None when even the rename failed: a read-only folder)."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, aside)
    except OSError as e:
        print(f"warning: {path}: {why}; could not keep it aside ({e.strerror}); {what} from the parquet "
              "rows and logs for now", file=sys.stderr)
        return None
    print(f"warning: {path}: {why}; kept aside as {aside.name}; {what} from the parquet rows and logs",
          file=sys.stderr)
    return aside
