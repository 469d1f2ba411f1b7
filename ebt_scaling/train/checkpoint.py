"""Checkpoints: model, optimiser, step and any model-side state (the EBT replay
buffer). Written atomically; batches are a pure function of (seed, step), so nothing
about the data stream needs saving."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import ConfigError


def save(path: Path, model, opt, step: int, extra: dict | None = None, config: dict | None = None,
         trial_id: str = "", config_hash: str = "") -> None:
    """`config` (Config.to_dict()) and `trial_id` let `ebt-sweep think` rebuild the model
    and label its rows; `config_hash` stops a resume into another configuration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                "extra": extra or {}, "config": config,
                "trial_id": trial_id, "config_hash": config_hash}, tmp)
    os.replace(tmp, path)


def load(path: Path, model, opt, device, expect_hash: str | None = None) -> tuple[int, dict]:
    state = torch.load(path, map_location=device, weights_only=False)
    if expect_hash and state.get("config_hash") not in (None, "", expect_hash):
        raise ConfigError(f"{path}: this checkpoint belongs to another configuration (hash "
                          f"{state['config_hash']}, this point is {expect_hash}); use another "
                          "train.checkpoint_dir or delete it")
    model.load_state_dict(state["model"])
    if opt is not None:
        opt.load_state_dict(state["optim"])
    return state["step"], state["extra"]

