"""Before any work: what a valid config asks of this machine.

config.py checks what a config says (pure, no I/O); this checks that the machine can do
it: the device exists and the local files the data names are there and readable. `train`,
`prepare` and `launch` call it before they touch anything, so that a missing file or a
`device: cuda` without a GPU is one clean error, not a trial that fails after start-up.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..config import DEVICES, Config, ConfigError, brief


def check_runnable(cfg: Config, where: str, devices: bool = True) -> None:
    """Raise ConfigError (naming `where`, the key and the fix) when `cfg` cannot run here.
    `devices=False` skips the device check: Slurm trials run on other machines."""
    if devices:
        check_device(cfg.train.device, f"{where}: train.device")
    d = cfg.data
    if d.source == "file":
        _check_file(d.path, where, "data.path")
    if d.tokenizer != "byte" and Path(d.tokenizer).suffix == ".json":
        _check_file(d.tokenizer, where, "data.tokenizer")
    if d.source == "hf":
        for item in (f.strip() for f in d.hf_data_files.split(",") if f.strip()):
            if "://" not in item and not any(c in item for c in "*?["):     # a local file, not a URL or glob
                _check_file(item, where, "data.hf_data_files")
        local = d.hf_dataset.startswith(("/", "./", "../", "~"))
        if local and not Path(d.hf_dataset).expanduser().exists():
            raise ConfigError(f"{where}: data.hf_dataset: {brief(d.hf_dataset)} does not exist; fix the path "
                              f"(relative paths are read from {os.getcwd()}) or name a Hub dataset")


def check_resources(cpus: float, gpus: float, where: str) -> None:
    """A trial's resources fit this machine (for a Ray cluster started here: a trial that
    asks for more would wait forever for a node that never comes)."""
    import torch
    have_cpus = os.cpu_count() or 1
    have_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cpus > have_cpus:
        raise ConfigError(f"{where}: resources.cpus: {cpus:g} per trial, but this machine has {have_cpus}; "
                          f"lower it, or pass --address of a cluster that has them")
    if gpus > have_gpus:
        raise ConfigError(f"{where}: resources.gpus: {gpus:g} per trial, but torch sees {have_gpus} GPU(s) here; "
                          "set it to 0 (or pick --scale cpu), or pass --address of a cluster with GPUs")


def check_device(name: str, where: str) -> None:
    """`name` (auto, cpu, cuda, cuda:N) is a device this machine has; `where` names the key or flag."""
    if not re.fullmatch(DEVICES, name):
        raise ConfigError(f"{where}: {brief(name)} is not a device; use auto, cpu, cuda or cuda:N")
    if not name.startswith("cuda"):
        return                  # auto and cpu always run
    import torch
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        seen = f"{count} CUDA GPU(s)" if count else "no CUDA GPU"
        raise ConfigError(f"{where}: {name} asked for, but torch {torch.__version__} sees {seen} on this "
                          "machine; use auto (a GPU when there is one) or cpu")


def _check_file(path: str, where: str, key: str) -> None:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{where}: {key}: {brief(path)} does not exist; fix the path (relative paths are "
                          f"read from {os.getcwd()})")
    if not os.access(p, os.R_OK) or (p.is_dir() and key != "data.tokenizer"):
        raise ConfigError(f"{where}: {key}: {brief(path)} is not a readable file; check its permissions")
