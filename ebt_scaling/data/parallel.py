"""Parallel tokenization: batches of documents -> flat token arrays, over worker processes.

Each worker loads the tokenizer once and calls its batched (Rust) `encode_batch` on a
list of documents; the parent keeps a bounded number of batches in flight and takes the
results back in submission order, so the output is the same token stream whatever the
number of processes. `Progress` prints tokens done, rate and ETA.
"""
from __future__ import annotations

import collections
import multiprocessing as mp
import os
import sys
import time

import numpy as np

from .tokenizers import build_tokenizer


def token_dtype(vocab_size: int):
    return np.uint8 if vocab_size <= 256 else (np.uint16 if vocab_size <= 65536 else np.uint32)


def separator(tok) -> list[int]:
    """What follows every document: the EOS token, or a blank line for the byte tokenizer."""
    return [tok.eos_id] if tok.eos_id is not None else list(b"\n\n")


def encode_docs(tok, texts: list[str], with_lengths: bool = False):
    """The documents' tokens, each followed by the separator, as one flat array; with
    `with_lengths`, also each text's share of it (0 for an empty text, which is skipped)."""
    sep = separator(tok)
    dtype = token_dtype(tok.vocab_size)
    parts = []
    kept = [t for t in texts if t]
    for ids in tok.encode_batch(kept):
        parts.append(np.asarray(ids, dtype=dtype))
        parts.append(np.asarray(sep, dtype=dtype))
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    if not with_lengths:
        return flat
    lengths = np.zeros(len(texts), dtype=np.int64)
    lengths[[i for i, t in enumerate(texts) if t]] = [len(p) + len(sep) for p in parts[::2]]
    return flat, lengths


_WORKER_TOK = None


def _init_worker(name: str) -> None:
    global _WORKER_TOK
    os.environ["TOKENIZERS_PARALLELISM"] = "false"    # one process per core instead
    _WORKER_TOK = build_tokenizer(name)


def _encode_in_worker(texts: list[str], with_lengths: bool = False):
    return encode_docs(_WORKER_TOK, texts, with_lengths)


def tokenize_batches(batches, tok, num_proc: int, with_lengths: bool = False):
    """Yield (tokens, extra) for each (texts, extra) of `batches`, in order; with
    `with_lengths`, ((tokens, each text's length), extra) (encode_docs).

    `extra` rides along unchanged (the stream's position after that batch). With
    num_proc <= 1 everything runs in this process."""
    if num_proc <= 1:
        for texts, extra in batches:
            yield encode_docs(tok, texts, with_lengths), extra
        return
    # fork: workers start at once and never re-import the caller's __main__ (spawn would
    # re-run an unguarded script); they only run the tokenizer, built afresh in each
    ctx = mp.get_context("fork")
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(tok.name,)) as pool:
        pending: collections.deque = collections.deque()
        for texts, extra in batches:
            pending.append((pool.apply_async(_encode_in_worker, (texts, with_lengths)), extra))
            if len(pending) >= 2 * num_proc:          # bounded: never reads the stream ahead
                res, ex = pending.popleft()
                yield res.get(), ex
        while pending:
            res, ex = pending.popleft()
            yield res.get(), ex


class Progress:
    """`prepare NAME: 12.3M / 40.0M tokens (31%), 1.21M tokens/s, ETA 23s` every `every` s."""

    def __init__(self, label: str, target: int, done: int = 0, every: float = 5.0, out=None):
        self.label, self.target, self.start_done, self.done = label, target, done, done
        self.every, self.out = every, out or sys.stderr
        self.t0 = self.last = time.monotonic()

    @property
    def rate(self) -> float:
        dt = time.monotonic() - self.t0
        return (self.done - self.start_done) / dt if dt > 0 else 0.0

    def update(self, n: int, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            left = max(0, self.target - self.done)
            eta = f"{left / self.rate:.0f}s" if self.rate > 0 else "?"
            pct = 100.0 * self.done / self.target if self.target else 100.0
            print(f"prepare {self.label}: {_si(self.done)} / {_si(self.target)} tokens ({pct:.0f}%), "
                  f"{_si(self.rate)} tokens/s, ETA {eta}", file=self.out, flush=True)


def _si(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"
