"""Experiment trackers as row sinks: TensorBoard, Weights & Biases, MLflow.

Every row a trial makes goes through one sink interface (store.py):

    emit(row)              take one Row
    flush()                make what was emitted durable
    truncate_after(step)   a resumed run makes the rows past `step` again
    close(status)          the trial ended ("ok" or "failed")

The parquet file stays the record (`fit` reads nothing else); trackers are views of
the same rows for people who watch runs in TensorBoard, W&B or MLflow. They are off
unless a point config says `train.track: tensorboard,wandb,mlflow` (any subset), or
`ebt-sweep train|launch --track ...` does. Each needs its package, installed with the
`track` extra (`pip install 'ebt-scaling[track]'`); a missing one is reported before
any training starts.

What a tracker receives, per row (NaN columns left out):
    train rows  train/loss, train/lr, train/grad_norm, train/tokens_per_s, train/mfu,
                and the EBT's train/ebt_steps, train/ebt_alpha, train/energy_first|last
    eval rows   eval/loss, eval/ppl, and the EBT's eval/energy_first|last
    final row   final/loss, final/ppl, and the trial's status (a tag / summary)
    think rows  think/<eval set>/ppl_steps<k>_n<N> (`ebt-sweep think --track`), at the
                checkpoint's step
x is the optimiser step; tokens and FLOPs seen are logged too (progress/tokens,
progress/flops), so a plot against either is one click away. The resolved config is
logged once as hyperparameters (flattened, e.g. model.d_model).

Where the files go: `train.track_dir` (the launcher puts it in the sweep's state
folder, `ebt-sweep train` and `think` in _tracking/ beside the rows): <track_dir>/tensorboard/<trial id>/,
<track_dir>/wandb/ (W&B's own layout; WANDB_MODE=offline to stay offline, then
`wandb sync`), <track_dir>/mlruns (an MLflow file store, `mlflow ui --backend-store-uri
<track_dir>/mlruns`; MLflow 3 wants MLFLOW_ALLOW_FILE_STORE=true for it, which is set
when unset) unless MLFLOW_TRACKING_URI is set. A tracker that fails mid-run (network, disk) is switched off with one
warning; it never fails the trial.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

from ..config import tracker_names
from .schema import Row
# tracker -> the module it needs (and the pip package that provides it)
_NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
          "mlflow": ("mlflow", "mlflow-skinny")}

TRAIN_METRICS = ("train_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "ebt_steps", "ebt_alpha",
                 "energy_first", "energy_last")
EVAL_METRICS = ("val_loss", "val_ppl", "energy_first", "energy_last")
_SHORT = {"train_loss": "loss", "val_loss": "loss", "val_ppl": "ppl"}


def missing_packages(track: str) -> list[str]:
    """The pip packages that the trackers `track` names need and that are not importable here."""
    return [_NEEDS[n][1] for n in tracker_names(track) if importlib.util.find_spec(_NEEDS[n][0]) is None]


def check_available(track: str, where: str = "train.track") -> None:
    """Raise ValueError naming the packages to install when a tracker cannot be imported."""
    missing = missing_packages(track)
    if missing:
        raise ValueError(f"{where}: {track!r} needs {', '.join(missing)}, not installed here; "
                         f"pip install 'ebt-scaling[track]' (or pip install {' '.join(missing)})")


def metrics_of(row: Row) -> dict[str, float]:
    """The {key: value} a tracker logs for one row (finite values only)."""
    if row.kind == "think":
        key = f"think/{row.eval_set or 'val'}/ppl_steps{row.think_steps}_n{row.n_candidates}"
        return {key: row.val_ppl} if _finite(row.val_ppl) else {}
    cols = TRAIN_METRICS if row.kind == "train" else EVAL_METRICS
    out = {f"{row.kind}/{_SHORT.get(c, c)}": float(getattr(row, c)) for c in cols if _finite(getattr(row, c))}
    out["progress/tokens"] = float(row.tokens)
    out["progress/flops"] = float(row.flops)
    return out


def hyperparams(row: Row) -> dict:
    """The resolved config, flattened to dotted keys (what trackers show as hparams)."""
    flat = {"trial_id": row.trial_id, "family": row.family, "sweep": row.sweep, "seed": row.seed,
            "n_params": row.n_params}
    try:
        tree = json.loads(row.config_json) if row.config_json else {}
    except json.JSONDecodeError:
        tree = {}

    def walk(prefix, node):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    walk("", tree)
    return flat


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


class Tracker:
    """One tracker. Subclasses implement _start(row), _log(metrics, step), _end(status)."""

    name = "tracker"

    def __init__(self, directory: Path, project: str):
        self.dir, self.project = Path(directory), project
        self.started = False
        self.broken = False

    def emit(self, row: Row) -> None:
        if self.broken:
            return
        try:
            if not self.started:
                self._start(row)
                self.started = True
            metrics = metrics_of(row)
            if metrics:
                self._log(metrics, row.step)   # think rows: the checkpoint's step; their keys differ
            if row.kind == "final":
                self._status(row.status)
        except Exception as e:   # a tracker is a view; the trial goes on without it
            self.broken = True
            print(f"warning: {self.name} logging switched off ({type(e).__name__}: {e})", file=sys.stderr)

    def flush(self) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass   # trackers keep what they got; a resumed run logs the same steps again

    def close(self, status: str = "ok") -> None:
        if self.started and not self.broken:
            try:
                self._end(status)
            except Exception as e:
                print(f"warning: {self.name} did not close cleanly ({type(e).__name__}: {e})", file=sys.stderr)
        self.started = False

    def _status(self, status: str) -> None:
        pass


class TensorBoardTracker(Tracker):
    """Event files under <dir>/tensorboard/<trial id>/ (torch.utils.tensorboard)."""

    name = "tensorboard"

    def _start(self, row):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(self.dir / "tensorboard" / row.trial_id))
        self.writer.add_text("config", "```\n" + json.dumps(hyperparams(row), indent=1) + "\n```", 0)

    def _log(self, metrics, step):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def _status(self, status):
        self.writer.add_text("status", status, 0)
        self.writer.flush()

    def flush(self):
        if self.started and not self.broken:
            self.writer.flush()

    def _end(self, status):
        self.writer.close()


class WandbTracker(Tracker):
    """A W&B run per trial (project: the sweep, or `ebt-scaling`; group: the sweep).
    WANDB_MODE=offline writes it under <dir>/wandb/ for a later `wandb sync`."""

    name = "wandb"

    def _start(self, row):
        import wandb
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", self.project), name=row.trial_id,
                              id=f"{row.sweep or 'point'}-{row.trial_id}", group=row.sweep or None,
                              job_type=row.family, dir=str(self.dir), config=hyperparams(row),
                              resume="allow", reinit="create_new")

    def _log(self, metrics, step):
        self.run.log(metrics, step=step)

    def _status(self, status):
        self.run.summary["status"] = status

    def _end(self, status):
        self.run.finish(exit_code=0 if status == "ok" else 1)


class MlflowTracker(Tracker):
    """An MLflow run per trial in experiment <project>; a file store under <dir>/mlruns
    unless MLFLOW_TRACKING_URI names a server."""

    name = "mlflow"

    def _start(self, row):
        from mlflow.tracking import MlflowClient
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:   # MLflow 3 keeps its file store only on request; a local folder is what we want
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (self.dir / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(self.project)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(self.project)
        self.run_id = self.client.create_run(exp_id, run_name=row.trial_id,
                                             tags={"family": row.family, "sweep": row.sweep}).info.run_id
        from mlflow.entities import Param
        params = [Param(k, str(v)[:500]) for k, v in hyperparams(row).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def _log(self, metrics, step):
        import time

        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k.replace(":", "_"), v, now, step)
                                                    for k, v in metrics.items()])

    def _status(self, status):
        self.client.set_tag(self.run_id, "status", status)

    def _end(self, status):
        self.client.set_terminated(self.run_id, "FINISHED" if status == "ok" else "FAILED")


_CLASSES = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}


def make_trackers(track: str, directory, project: str) -> list[Tracker]:
    """The trackers `track` names ("tensorboard,mlflow"), writing under `directory`."""
    return [_CLASSES[n](Path(directory), project) for n in tracker_names(track)]
