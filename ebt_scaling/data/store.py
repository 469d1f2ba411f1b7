"""The token store: one per (dataset, config, split, data files, text column, tokenizer).

    <cache>/stores/<dataset>-<key>/
        index.json    sizes, hashes, source and revision, stream position (atomic writes)
        val.bin       the validation set: the stream's first documents, >= data.val_tokens
        train.bin     training tokens: every document after them, appended as budgets grow
        .lock         flock held while the store is built or extended

The cache folder is data.cache_dir, else $EBT_CACHE, else ~/.cache/ebt-scaling. The
validation set is taken first and depends on nothing but the key (never on a budget or
on which trial came first); a larger budget only appends training tokens. Everything is
built under the lock, so concurrent launchers and trials tokenize once; the index is
rewritten atomically after each appended chunk (train.bin is fsynced first), so an
interrupted prepare resumes from the last chunk it committed. Flat arrays are read
memory-mapped: memory does not grow with the store.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np

from ..config import ConfigError, DataConfig
from . import hf
from .parallel import Progress, token_dtype, tokenize_batches
from .tokenizers import build_tokenizer

STORE_VERSION = 1
DOCS_PER_BATCH = 1000          # documents per tokenizer call
COMMIT_TOKENS = 1 << 24        # train tokens between index commits (resume granularity)


def cache_root(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("EBT_CACHE") or Path.home() / ".cache" / "ebt-scaling").expanduser()


def store_key(cfg: DataConfig, tok) -> dict:
    """What makes a store: change any of it and another store (and val_hash) results."""
    local = hf.local_revision(cfg)
    dataset = str(Path(cfg.hf_dataset).expanduser().resolve()) if local and Path(cfg.hf_dataset).expanduser().exists() \
        else cfg.hf_dataset
    return {"dataset": dataset, "config": cfg.hf_config, "split": cfg.hf_split,
            "data_files": cfg.hf_data_files, "revision": local or cfg.hf_revision,
            "text_column": cfg.text_column, "tokenizer": tok.name, "tokenizer_fingerprint": tok.fingerprint,
            "val_tokens": cfg.val_tokens, "store_version": STORE_VERSION}


def store_dir(cfg: DataConfig, tok) -> Path:
    key = store_key(cfg, tok)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.hf_dataset).name or "data")[:40]
    return cache_root(cfg) / "stores" / f"{slug}-{digest}"


class TokenStore:
    """A built store, opened read-only: `val` and the committed prefix of `train`."""

    def __init__(self, path: Path):
        self.path = path
        self.index = read_index(path)
        if not self.index or not self.index.get("val_hash"):
            raise ConfigError(f"{path}: no token store here yet; run `ebt-sweep prepare` first")
        dtype = np.dtype(self.index["dtype"])
        self.val = np.memmap(path / "val.bin", dtype=dtype, mode="r", shape=(self.index["val_tokens"],))
        n = self.index["train_tokens"]
        self.train = np.memmap(path / "train.bin", dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
        self.val_hash = self.index["val_hash"]
        self.vocab_size = self.index["vocab_size"]


def read_index(path: Path) -> dict:
    try:
        return json.loads((path / "index.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_index(path: Path, index: dict) -> None:
    tmp = path / f".index.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
    os.replace(tmp, path / "index.json")


def _ready(index: dict, need: int) -> bool:
    return bool(index.get("val_hash")) and (index["train_tokens"] >= need or index.get("exhausted", False))


@contextlib.contextmanager
def _locked(path: Path):
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"prepare: waiting for another process building {path}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def ensure(cfg: DataConfig, need_train: int, tok=None, out=None) -> TokenStore:
    """The store of `cfg` with at least `need_train` training tokens (or all the dataset
    has), building or extending it under the lock when it falls short."""
    tok = tok or build_tokenizer(cfg.tokenizer)
    path = store_dir(cfg, tok)
    if _ready(read_index(path), need_train):          # the index is written atomically
        return TokenStore(path)
    with _locked(path):
        index = read_index(path)                      # someone may have built it meanwhile
        if not _ready(index, need_train):
            _build(path, index, cfg, tok, need_train, out or sys.stderr)
    return TokenStore(path)


# --------------------------------------------------------------------------- building
def _build(path: Path, index: dict, cfg: DataConfig, tok, need: int, out) -> None:
    label = hf.dataset_label(cfg)
    if not index.get("val_hash"):
        index = _build_val(path, cfg, tok, label, out)
    have = index["train_tokens"]
    print(f"prepare {label}: {have:,} training tokens in {path}, extending to {need:,}",
          file=out, flush=True)
    ds = hf.open_stream(cfg).skip(index["val_docs"]).batch(DOCS_PER_BATCH)
    if index.get("stream_state"):
        ds.load_state_dict(index["stream_state"])
    dtype = np.dtype(index["dtype"])
    train_path = path / "train.bin"
    with open(train_path, "ab"):
        pass
    os.truncate(train_path, have * dtype.itemsize)   # drop what an interrupted run wrote after its commit
    progress = Progress(label, need, have, out=out)
    session = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "from": have}
    index.setdefault("sessions", []).append(session)
    since_commit = 0

    def batches():
        it = iter(ds)
        try:
            for b in it:
                yield b[cfg.text_column], (ds.state_dict(), len(b[cfg.text_column]))
        finally:
            del it
    exhausted = True
    with open(train_path, "ab") as f, _reading(label, index):
        for tokens, (state, n_docs) in tokenize_batches(batches(), tok, cfg.num_proc or os.cpu_count() or 1):
            f.write(tokens.astype(dtype, copy=False).tobytes())
            n = len(tokens)
            index["train_tokens"] += n
            index["train_docs"] += n_docs
            index["train_hash"] = _chain(index.get("train_hash", ""), tokens, dtype)
            index["stream_state"] = state
            since_commit += n
            progress.update(n)
            done = index["train_tokens"] >= need
            if since_commit >= COMMIT_TOKENS or done:
                _commit(f, path, index, session)
                since_commit = 0
            if done:
                exhausted = False
                break
        index["exhausted"] = exhausted
        _commit(f, path, index, session)
    progress.update(0, force=True)
    if exhausted:
        print(f"prepare {label}: the dataset ended at {index['train_tokens']:,} training tokens "
              f"(asked for {need:,})", file=out, flush=True)


@contextlib.contextmanager
def _reading(label: str, index: dict | None):
    """A stream that breaks off (network, a bad shard) stops with what to do, not a
    traceback. `index` None: while the validation set is read."""
    try:
        yield
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as e:
        where = "the validation set" if index is None else f"{index['train_tokens']:,} training tokens"
        raise ConfigError(f"prepare {label}: reading or tokenizing the dataset failed at {where} "
                          f"({hf._reason(e)}); what was committed is kept: run the same command again "
                          "to resume") from e


def _commit(f, path: Path, index: dict, session: dict) -> None:
    f.flush()
    os.fsync(f.fileno())
    session["to"], session["finished"] = index["train_tokens"], time.time()
    _write_index(path, index)


def _chain(prev: str, tokens: np.ndarray, dtype) -> str:
    return hashlib.sha256(prev.encode() + hashlib.sha256(tokens.astype(dtype, copy=False).tobytes()).digest()
                          ).hexdigest()


def _build_val(path: Path, cfg: DataConfig, tok, label: str, out) -> dict:
    """The validation set: the first whole documents of the stream, >= val_tokens."""
    dtype = np.dtype(token_dtype(tok.vocab_size))
    print(f"prepare {label}: validation set (first {cfg.val_tokens:,} tokens) -> {path}", file=out, flush=True)
    parts, total, docs = [], 0, 0
    ds = hf.open_stream(cfg).batch(256)
    it = iter(ds)

    def batches():
        for b in it:
            yield [t or "" for t in b[cfg.text_column]], None
    try:       # in parallel like the training tokens; the set ends at the first document that fills it
        with _reading(label, None):
            for (flat, lengths), _ in tokenize_batches(batches(), tok, cfg.num_proc or os.cpu_count() or 1,
                                                       with_lengths=True):
                ends = total + np.cumsum(lengths)
                full = np.flatnonzero(ends >= cfg.val_tokens)
                take = int(full[0]) + 1 if len(full) else len(lengths)
                used = int(lengths[:take].sum())
                parts.append(flat[:used])
                total, docs = total + used, docs + take
                if total >= cfg.val_tokens:
                    break
    finally:
        del it
    if total < cfg.val_tokens:
        raise ConfigError(f"data.val_tokens: {label} holds only {total:,} tokens, fewer than the "
                          f"validation set's {cfg.val_tokens:,}; lower data.val_tokens or use a larger dataset")
    val = np.concatenate(parts)
    tmp = path / f".val.bin.tmp{os.getpid()}"
    val.tofile(tmp)
    os.replace(tmp, path / "val.bin")
    key = store_key(cfg, tok)
    index = {"key": key, "dtype": dtype.name, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
             "hub_revision": hf.hub_revision(cfg), "val_tokens": int(len(val)), "val_docs": docs,
             "val_hash": _val_hash(tok, val), "train_tokens": 0, "train_docs": 0, "train_hash": "",
             "stream_state": None, "exhausted": False, "created": time.time()}
    _write_index(path, index)
    return index


def _val_hash(tok, val: np.ndarray) -> str:
    """The held-out tokens and the tokenizer that made them (not the path they came from)."""
    h = hashlib.sha256(f"{tok.fingerprint}|{val.dtype.name}|".encode())
    h.update(val.tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- prepare
STORE_FIELDS = ("hf_dataset", "hf_config", "hf_split", "hf_data_files", "hf_revision", "text_column",
                "tokenizer", "val_tokens", "cache_dir")


def needs(configs) -> list[tuple[DataConfig, int]]:
    """(data config, training tokens to hold) per store that point Configs read: the
    largest budget among them, plus one window."""
    groups: dict[tuple, tuple[DataConfig, int]] = {}
    for c in configs:
        d = c.data
        if d.source == "hf":
            key = tuple(getattr(d, f) for f in STORE_FIELDS)
            first, need = groups.get(key, (d, 0))
            groups[key] = (first, max(need, c.total_tokens + d.seq_len + 1))
    return list(groups.values())


def prepare(configs, out=None) -> list[tuple[str, int, Path]]:
    """Build or extend every token store `configs` (point Configs) read, once each, with
    enough training tokens for the largest budget among them. Returns, per store, its
    dataset label, its training tokens and its folder. File sources get their cache."""
    out = out or sys.stderr
    done = []
    for d, need in needs(configs):
        store = ensure(d, need, out=out)
        label = hf.dataset_label(d)
        print(f"prepare {label}: ready, {store.index['val_tokens']:,} validation tokens (val set "
              f"{store.val_hash}), {len(store.train):,} training tokens, in {store.path}", file=out, flush=True)
        done.append((label, len(store.train), store.path))
    from .sources import build_source
    for d in dict.fromkeys(c.data for c in configs if c.data.source == "file"):
        src = build_source(d)
        done.append((f"file:{d.path}", len(src.train), Path(d.path)))
    return done
