"""Checkpoints: model, optimiser, step, and any model-side state (the EBT replay
buffer) in a file of its own beside it (`last.extra-<step>.pt`), so that `think` and anything
else reading the checkpoint never loads the buffer (4.9 GB at the paper's S2 settings)
and a finished point keeps none. Written atomically; batches are a pure function of
(seed, step), so nothing about the data stream needs saving."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

from ..config import ConfigError


def save(path: Path, model, opt, step: int, extra: dict | None = None, config: dict | None = None,
         trial_id: str = "", config_hash: str = "") -> None:
    """`config` (Config.to_dict()) and `trial_id` let `ebt-sweep think` rebuild the model
    and label its rows; `config_hash` stops a resume into another configuration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    side = None
    if extra and any(v is not None for v in extra.values()):
        side = extra_path(path, step)
        _save_atomic(extra, side)          # first: last.pt never names a file not yet written
    _save_atomic({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                  "extra_file": side.name if side else "", "config": config,
                  "trial_id": trial_id, "config_hash": config_hash}, path)
    for old in path.parent.glob(f"{path.stem}.extra-*.pt"):   # only the one last.pt names is kept
        if side is None or old.name != side.name:
            old.unlink(missing_ok=True)


def extra_path(path: Path, step: int) -> Path:
    return path.with_name(f"{path.stem}.extra-{step}.pt")


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except RuntimeError as e:   # torch reports a full disk as "unexpected pos": say what it is
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        if "unexpected pos" in str(e) or free < 16 * 2 ** 20:
            raise OSError(errno.ENOSPC, f"No space left on device writing {path} ({free} bytes free)") from e
        raise
    finally:          # a failed write (a full disk) leaves no temporary file behind
        tmp.unlink(missing_ok=True)


def load(path: Path, model, opt, device, expect_hash: str | None = None) -> tuple[int, dict]:
    state = torch.load(path, map_location=device, weights_only=False)
    if expect_hash and state.get("config_hash") not in (None, "", expect_hash):
        raise ConfigError(f"{path}: this checkpoint belongs to another configuration (hash "
                          f"{state['config_hash']}, this point is {expect_hash}); use another "
                          "train.checkpoint_dir or delete it")
    model.load_state_dict(state["model"])
    if opt is not None:
        opt.load_state_dict(state["optim"])
    extra = state.get("extra") or {}          # checkpoints before the side file kept it inside
    if state.get("extra_file"):
        side = path.with_name(state["extra_file"])
        if not side.exists():
            raise ConfigError(f"{path}: its model-side state {side.name} is missing, so the point cannot "
                              "resume exactly; delete the checkpoint to restart the point")
        extra = torch.load(side, map_location=device, weights_only=False)
    return state["step"], extra

