"""Checkpoints: model, optimiser, step and any model-side state (the EBT replay
buffer). Written atomically; batches are a pure function of (seed, step), so nothing
about the data stream needs saving."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save(path: Path, model, opt, step: int, extra: dict | None = None, config: dict | None = None) -> None:
    """`config` (Config.to_dict()) lets `ebt-sweep think` rebuild the model later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                "extra": extra or {}, "config": config}, tmp)
    os.replace(tmp, path)


def load(path: Path, model, opt, device) -> tuple[int, dict]:
    state = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    if opt is not None:
        opt.load_state_dict(state["optim"])
    return state["step"], state["extra"]
