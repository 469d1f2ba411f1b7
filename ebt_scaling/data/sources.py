"""Token sources: where training and held-out sequences come from.

Every source gives, for a step number, a batch of (B, S+1) token ids: inputs are
[:, :-1], targets [:, 1:], so a batch of B sequences trains on exactly B*S tokens.
Batches are a pure function of (seed, step): a resumed run sees the very batches the
uninterrupted one would have, and no iterator state needs checkpointing.

Sources:
  shakespeare  the embedded corpus (38 plays, 5.0 MB of bytes); 4 whole plays held out
  markov       a random sparse Markov chain of chosen order with a known entropy rate
  file         .txt / .jsonl / .parquet, tokenized once into a memory-mapped cache
  hf           a Hugging Face dataset, streamed (optional extra, online)
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, DataConfig
from .tokenizers import build_tokenizer

VAL_PLAY_EVERY = 10     # Shakespeare: every 10th play (sorted by file name, from the 6th) is held out
VAL_PLAY_OFFSET = 5


class TokenSource:
    name: str
    vocab_size: int

    def train_batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def val_batches(self, n_tokens: int, batch_size: int, seq_len: int):
        """The fixed held-out set: yields (b, S+1) batches covering n_tokens targets."""
        raise NotImplementedError


def _rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, stream])


class ArraySource(TokenSource):
    """Random windows from a token array (in memory or memory-mapped)."""

    def __init__(self, name: str, train: np.ndarray, val: np.ndarray, vocab_size: int):
        self.name, self.train, self.val, self.vocab_size = name, train, val, vocab_size

    def _windows(self, arr: np.ndarray, starts: np.ndarray, seq_len: int) -> torch.Tensor:
        idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
        return torch.from_numpy(np.asarray(arr[idx]).astype(np.int64))

    def train_batch(self, step, batch_size, seq_len, seed):
        hi = len(self.train) - seq_len - 1
        if hi <= 0:
            raise ConfigError(f"data: the {self.name} training split ({len(self.train)} tokens) "
                              f"is shorter than data.seq_len + 1 = {seq_len + 1}")
        starts = _rng(seed, step).integers(0, hi, size=batch_size)
        return self._windows(self.train, starts, seq_len)

    def val_batches(self, n_tokens, batch_size, seq_len):
        n_seq = max(1, n_tokens // seq_len)
        hi = len(self.val) - seq_len - 1
        if hi <= 0:
            raise ConfigError(f"data: the {self.name} validation split ({len(self.val)} tokens) "
                              f"is shorter than data.seq_len + 1 = {seq_len + 1}")
        # evenly spaced windows over the whole held-out split, the same at every eval
        starts = np.linspace(0, hi, n_seq).astype(np.int64)
        for i in range(0, n_seq, batch_size):
            yield self._windows(self.val, starts[i:i + batch_size], seq_len)


# ------------------------------------------------------------------ shakespeare
def shakespeare_plays() -> list[tuple[str, str]]:
    """[(play file name, text)] in corpus order, from the package data."""
    blob = resources.files("ebt_scaling.data").joinpath("corpus/shakespeare.txt.gz").read_bytes()
    text = gzip.decompress(blob).decode("utf-8")
    plays = []
    for chunk in text.split("=== ")[1:]:
        title, _, body = chunk.partition(" ===\n")
        plays.append((title, body))
    return plays


def shakespeare_split() -> tuple[str, str]:
    plays = shakespeare_plays()
    val = [b for i, (_, b) in enumerate(plays) if i % VAL_PLAY_EVERY == VAL_PLAY_OFFSET]
    train = [b for i, (_, b) in enumerate(plays) if i % VAL_PLAY_EVERY != VAL_PLAY_OFFSET]
    return "\n".join(train), "\n".join(val)


def _encode_array(tok, text: str) -> np.ndarray:
    dtype = np.uint8 if tok.vocab_size <= 256 else (np.uint16 if tok.vocab_size < 65536 else np.uint32)
    if tok.name == "byte":
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()
    return np.asarray(tok.encode(text), dtype=dtype)


def unigram_entropy(arr: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the token frequencies: the loss of the best context-free model."""
    counts = np.bincount(np.asarray(arr, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


# ------------------------------------------------------------------ markov
class MarkovSource(TokenSource):
    """A random order-k Markov chain over V symbols, each context allowing `branching`
    next symbols with Dirichlet(1) weights. Its entropy rate is known exactly, so a
    test can check that a model approaches the floor."""

    def __init__(self, vocab: int, order: int, branching: int, seed: int):
        self.name = f"markov-v{vocab}-o{order}-b{branching}-s{seed}"
        self.vocab_size, self.order = vocab, order
        n_states = vocab ** order
        if n_states > 2 ** 22:
            raise ConfigError(f"data.markov_vocab: {vocab}^{order} contexts is too many; lower order or vocab")
        rng = np.random.default_rng(seed)
        probs = np.zeros((n_states, vocab))
        nxt = rng.random((n_states, vocab)).argsort(axis=1)[:, :branching]   # distinct symbols
        np.put_along_axis(probs, nxt, rng.dirichlet(np.ones(branching), size=n_states), axis=1)
        self.probs = probs
        self._edges = (np.repeat(np.arange(n_states), branching), nxt.reshape(-1),
                       np.take_along_axis(probs, nxt, axis=1).reshape(-1))
        self.cum = np.cumsum(probs, axis=1)
        self.cum[:, -1] = 1.0
        self.stationary = self._stationary()
        ent = -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(1)
        self.entropy_rate = float(self.stationary @ ent)

    def _next_state(self, s, x):
        return (s * self.vocab_size + x) % (self.vocab_size ** self.order)

    def _stationary(self, iters: int = 2000) -> np.ndarray:
        n = len(self.probs)
        pi = np.full(n, 1.0 / n)
        states, xs, w = self._edges          # only the allowed transitions
        dest = self._next_state(states, xs)
        for _ in range(iters):
            new = np.bincount(dest, weights=pi[states] * w, minlength=n)
            # average with the old vector: converges for periodic chains too
            new = 0.5 * (new + pi)
            if np.abs(new - pi).sum() < 1e-12:
                pi = new
                break
            pi = new
        return pi / pi.sum()

    def sample(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        state = rng.choice(len(self.stationary), size=batch, p=self.stationary)
        out = np.empty((batch, length), dtype=np.int64)
        for t in range(length):
            u = rng.random(batch)[:, None]
            x = (u > self.cum[state]).sum(1)
            out[:, t] = x
            state = self._next_state(state, x)
        return out

    def train_batch(self, step, batch_size, seq_len, seed):
        return torch.from_numpy(self.sample(_rng(seed, step, 1), batch_size, seq_len + 1))

    def val_batches(self, n_tokens, batch_size, seq_len):
        n_seq = max(1, n_tokens // seq_len)
        rng = np.random.default_rng([self.vocab_size, self.order, 777])  # fixed, not the train seed
        data = self.sample(rng, n_seq, seq_len + 1)
        for i in range(0, n_seq, batch_size):
            yield torch.from_numpy(data[i:i + batch_size])


# ------------------------------------------------------------------ local files
def _iter_texts(path: Path, column: str):
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix in (".txt", ".md", ".txt.gz"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            doc = []
            for line in f:          # documents = blank-line separated paragraphs
                doc.append(line)
                if len(doc) >= 2000:
                    yield "".join(doc)
                    doc = []
            if doc:
                yield "".join(doc)
    elif suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    rec = json.loads(line)
                    if column not in rec:
                        raise ConfigError(f"{path}: line {i + 1} has no key {column!r}; set data.text_column")
                    yield rec[column]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        if column not in pf.schema_arrow.names:
            raise ConfigError(f"{path}: no column {column!r} (has {pf.schema_arrow.names}); set data.text_column")
        for batch in pf.iter_batches(columns=[column], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t)
    else:
        raise ConfigError(f"data.path: {path} has an unsupported suffix; use .txt, .jsonl or .parquet")


def _cache_dir(cfg: DataConfig) -> Path:
    d = Path(cfg.cache_dir or os.environ.get("EBT_SCALING_CACHE", Path.home() / ".cache/ebt_scaling"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def file_source(cfg: DataConfig, tok) -> ArraySource:
    """Tokenize the file once, streaming, into a flat token cache; read it memory-mapped
    so memory does not grow with corpus size. The last val_fraction is held out."""
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise ConfigError(f"data.path: {path} does not exist")
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{tok.name}|{cfg.text_column}".encode()).hexdigest()[:16]
    dtype = np.uint8 if tok.vocab_size <= 256 else (np.uint16 if tok.vocab_size < 65536 else np.uint32)
    cache = _cache_dir(cfg) / f"{path.stem}-{key}.{np.dtype(dtype).name}"
    if not cache.exists():
        tmp = cache.with_suffix(cache.suffix + f".tmp{os.getpid()}")
        sep = [tok.eos_id] if tok.eos_id is not None else list(b"\n\n")
        with open(tmp, "wb") as f:
            for text in _iter_texts(path, cfg.text_column):
                f.write(np.asarray(tok.encode(text) + sep, dtype=dtype).tobytes())
        os.replace(tmp, cache)
    arr = np.memmap(cache, dtype=dtype, mode="r")
    cut = int(len(arr) * (1 - cfg.val_fraction))
    return ArraySource(f"file:{path.name}", arr[:cut], arr[cut:], tok.vocab_size)


# ------------------------------------------------------------------ hugging face
def hf_source(cfg: DataConfig, tok, need_tokens: int = 0) -> ArraySource:
    """Stream a Hugging Face dataset into a token cache, then use it like a file. The
    cache holds enough for the point's budget (plus the held-out share), so a point never
    repeats data; a cache made for a larger budget is reused."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("data.source: hf needs `pip install 'ebt-scaling[hf]'`") from None
    limit = max(int(need_tokens / (1 - cfg.val_fraction) * 1.01) + 1, 1_000_000)
    stem = hashlib.sha256(f"{cfg.hf_dataset}|{cfg.hf_config}|{cfg.hf_split}|{tok.name}|{cfg.text_column}".encode()).hexdigest()[:16]
    for old in sorted(_cache_dir(cfg).glob(f"hf-{stem}-*")):
        n = int(old.name.split("-")[2].split(".")[0])
        if n >= limit and not old.name.count(".tmp"):
            limit = n
            break
    key = f"{stem}-{limit}"
    dtype = np.uint8 if tok.vocab_size <= 256 else (np.uint16 if tok.vocab_size < 65536 else np.uint32)
    cache = _cache_dir(cfg) / f"hf-{key}.{np.dtype(dtype).name}"
    if not cache.exists():
        try:
            ds = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config or None, split=cfg.hf_split, streaming=True)
        except Exception as e:
            raise ConfigError(f"data.hf_dataset: could not open {cfg.hf_dataset!r} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); are you online?") from None
        tmp = cache.with_suffix(cache.suffix + f".tmp{os.getpid()}")
        n = 0
        sep = [tok.eos_id] if tok.eos_id is not None else list(b"\n\n")
        with open(tmp, "wb") as f:
            for rec in ds:
                ids = tok.encode(rec[cfg.text_column]) + sep
                f.write(np.asarray(ids, dtype=dtype).tobytes())
                n += len(ids)
                if n >= limit:
                    break
        os.replace(tmp, cache)
    arr = np.memmap(cache, dtype=dtype, mode="r")
    cut = int(len(arr) * (1 - cfg.val_fraction))
    return ArraySource(f"hf:{cfg.hf_dataset}", arr[:cut], arr[cut:], tok.vocab_size)


# ------------------------------------------------------------------ factory
def build_source(cfg: DataConfig, need_tokens: int = 0) -> TokenSource:
    """The token source of `cfg`. `need_tokens` (the training budget) sizes streamed
    caches; a warning goes to stderr when the budget is more than one pass over the data."""
    src = _build_source(cfg, need_tokens)
    if isinstance(src, ArraySource) and need_tokens > len(src.train):
        print(f"warning: the token budget ({need_tokens:,}) exceeds the {src.name} training split "
              f"({len(src.train):,} tokens): data will repeat", file=sys.stderr)
    return src


def _build_source(cfg: DataConfig, need_tokens: int) -> TokenSource:
    if cfg.source == "markov":
        return MarkovSource(cfg.markov_vocab, cfg.markov_order, cfg.markov_branching, cfg.markov_seed)
    tok = build_tokenizer(cfg.tokenizer)
    if cfg.source == "shakespeare":
        train, val = shakespeare_split()
        return ArraySource("shakespeare", _encode_array(tok, train), _encode_array(tok, val), tok.vocab_size)
    if cfg.source == "file":
        return file_source(cfg, tok)
    return hf_source(cfg, tok, need_tokens)
