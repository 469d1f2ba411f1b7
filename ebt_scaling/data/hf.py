"""Opening a document stream with Hugging Face `datasets` (no loading scripts).

`data.hf_dataset` is a Hub repository of data files (HuggingFaceFW/fineweb-edu with
config sample-10BT: parquet), a packaged format with `data.hf_data_files` (json, parquet:
e.g. RedPajama-V2's own .json.gz documents), or a local folder of parquet/jsonl shards.
Every failure becomes one ConfigError naming the dataset, the reason and the fix.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import ConfigError, DataConfig, brief

FINEWEB_FIX = ("use hf_dataset: HuggingFaceFW/fineweb-edu with hf_config: sample-100BT and "
               "text_column: text (the paper presets' choice)")
REDPAJAMA_FIX = ("read RedPajama-V2's documents directly: hf_dataset: json, text_column: raw_content, "
                 "hf_data_files: https://data.together.xyz/redpajama-data-v2/v1.0.0/documents/"
                 "2023-06/0000/en_head.json.gz (comma-separated, globs allowed)")


def data_files(cfg: DataConfig) -> list[str]:
    return [f.strip() for f in cfg.hf_data_files.split(",") if f.strip()]


def local_revision(cfg: DataConfig) -> str:
    """For a local folder or local data files: a hash of file names, sizes and mtimes,
    so edited shards give another store. "" for a Hub dataset."""
    paths: list[Path] = []
    root = Path(cfg.hf_dataset).expanduser()
    if root.is_dir():
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for f in data_files(cfg):
        if "://" not in f:
            paths += sorted(Path().glob(f) if not Path(f).is_absolute() else Path("/").glob(f.lstrip("/")))
    if not paths:
        return ""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return "local:" + h.hexdigest()[:16]


def dataset_label(cfg: DataConfig) -> str:
    name = cfg.hf_dataset
    return name + (f" ({cfg.hf_config})" if cfg.hf_config else "") + (f" files {cfg.hf_data_files}" if cfg.hf_data_files else "")


def open_stream(cfg: DataConfig):
    """The streaming IterableDataset of `cfg`, holding only the text column."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("data.source: hf needs `pip install 'ebt-scaling[hf]'` (datasets, tokenizers)") from None
    label = dataset_label(cfg)
    kwargs = dict(split=cfg.hf_split, streaming=True)
    if cfg.hf_revision:
        kwargs["revision"] = cfg.hf_revision
    if cfg.hf_data_files:
        kwargs["data_files"] = data_files(cfg)
    try:
        ds = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config or None, **kwargs)
    except Exception as e:
        raise ConfigError(f"data.hf_dataset: could not open {label} with datasets {datasets.__version__}: "
                          f"{_reason(e)}; fix: {_fix(cfg, e)}") from None
    names = getattr(ds, "column_names", None)
    if names is not None and cfg.text_column not in names:
        raise ConfigError(f"data.text_column: {label} has no column {brief(cfg.text_column)} "
                          f"(it has {names}); set data.text_column")
    return ds.select_columns([cfg.text_column]) if names is not None else ds


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:240] if text else ''}"


def _fix(cfg: DataConfig, e: Exception) -> str:
    msg = f"{type(e).__name__} {e}".lower()
    if "script" in msg or "redpajama" in cfg.hf_dataset.lower():
        return (f"{cfg.hf_dataset} is read through a loading script, which datasets no longer runs; "
                f"{REDPAJAMA_FIX}; or {FINEWEB_FIX}")
    if any(w in msg for w in ("offline", "connection", "resolve", "network", "timed out", "couldn't reach",
                              "could not reach", "max retries", "name or service")):
        return ("go online (or unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), or have the dataset in the "
                "Hugging Face cache, or point hf_dataset at a local folder of parquet/jsonl shards")
    if "config" in msg or "builderconfig" in msg:
        return "check data.hf_config (the dataset's configs are listed on its Hub page)"
    if "doesn't exist" in msg or "not found" in msg or "no such" in msg:
        return "check the name of data.hf_dataset (a Hub repository or a local folder)"
    return "check data.hf_dataset, hf_config, hf_split and hf_data_files"


def hub_revision(cfg: DataConfig) -> str:
    """The Hub commit the dataset resolves to, when it can be asked (best effort)."""
    if Path(cfg.hf_dataset).expanduser().exists() or "/" not in cfg.hf_dataset:
        return ""
    try:
        from huggingface_hub import HfApi
        return HfApi().dataset_info(cfg.hf_dataset, revision=cfg.hf_revision or None, timeout=10).sha or ""
    except Exception:
        return ""
