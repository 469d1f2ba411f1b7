"""Token sources: where training and held-out sequences come from.

Every source gives, for a step number, a batch of (B, S+1) token ids: inputs are
[:, :-1], targets [:, 1:], so a batch of B sequences trains on exactly B*S tokens.
Batches are a pure function of (seed, step): a resumed run sees the very batches the
uninterrupted one would have, and no iterator state needs checkpointing. Token arrays
are read without replacement: the split is cut into windows whose targets do not
overlap, and step t takes windows t*B .. t*B+B-1 of a seeded permutation, so a point
sees every training token at most once before any repeats (a new permutation per pass).

`val_id` names a source's held-out set; the rows' `val_hash` (see `val_hash`) adds the
windows scored, so two points with equal val_hash were scored on the same tokens.

Sources:
  shakespeare  the embedded corpus (38 plays, 5.0 MB of bytes); 4 whole plays held out
  markov       a random sparse Markov chain of chosen order with a known entropy rate
  file         .txt / .jsonl / .parquet, tokenized once into a memory-mapped cache
  hf           a Hugging Face dataset, through the shared token store (data/store.py)
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

from ..config import ConfigError, DataConfig, brief, file_suffix
from .parallel import token_dtype
from .store import cache_root, ensure
from .tokenizers import build_tokenizer

VAL_PLAY_EVERY = 10     # Shakespeare: every 10th play (sorted by file name, from the 6th) is held out
VAL_PLAY_OFFSET = 5


class TokenSource:
    name: str
    vocab_size: int
    val_id: str              # identity of the held-out set (content hash or generator parameters)

    def train_batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def val_batches(self, n_tokens: int, batch_size: int, seq_len: int):
        """The fixed held-out set: yields (b, S+1) batches covering n_tokens targets."""
        raise NotImplementedError


PAD = -100   # a masked target (data.targets: pad): F.cross_entropy's default ignore_index


def inputs_of(batch: torch.Tensor) -> torch.Tensor:
    """The model's inputs of a (B, S+1) batch: [:, :-1], masked positions as token 0. A
    masked position only ever follows the document (causal attention: nothing real sees
    it), and its target is masked too."""
    x = batch[:, :-1]
    return x.clamp(min=0) if x.min() < 0 else x


def _rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, stream])


def val_hash(source: TokenSource, seq_len: int, eval_tokens: int) -> str:
    """What a row's validation loss was computed on: the held-out set and its windows."""
    return hashlib.sha256(f"{source.val_id}|{seq_len}|{eval_tokens}".encode()).hexdigest()[:16]


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def permute(i: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of [0, n) applied to `i` (one key row of 4 round keys per element):
    a 4-round Feistel network on the next even power of two, cycle-walked into [0, n).
    O(1) memory, so a permutation of 1e8 windows costs nothing to hold."""
    bits = max(2, int(np.ceil(np.log2(max(n, 2)))))
    bits += bits % 2
    half, mask = np.uint64(bits // 2), np.uint64((1 << (bits // 2)) - 1)
    x = i.astype(np.uint64)
    todo = np.ones(len(x), dtype=bool)
    while todo.any():
        y, k = x[todo], keys[todo]
        left, right = y >> half, y & mask
        for r in range(4):
            left, right = right, left ^ (_mix(right + k[:, r]) & mask)
        x[todo] = (left << half) | right
        todo = x >= np.uint64(n)
    return x.astype(np.int64)


class ArraySource(TokenSource):
    """Windows of a token array (in memory or memory-mapped), read without replacement."""

    def __init__(self, name: str, train: np.ndarray, val: np.ndarray, vocab_size: int, val_id: str = ""):
        self.name, self.train, self.val, self.vocab_size = name, train, val, vocab_size
        self.val_id = val_id or hashlib.sha256(np.dtype(val.dtype).name.encode() + np.ascontiguousarray(val).tobytes()).hexdigest()[:16]

    def _windows(self, arr: np.ndarray, starts: np.ndarray, seq_len: int) -> torch.Tensor:
        idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
        return torch.from_numpy(np.asarray(arr[idx]).astype(np.int64))

    def n_windows(self, seq_len: int) -> int:
        """Windows of S+1 tokens starting at multiples of S: their targets never overlap."""
        return (len(self.train) - 1) // seq_len

    def passes(self, tokens: int, seq_len: int) -> float:
        """How many passes over the training split a budget of `tokens` makes."""
        return tokens / max(1, self.n_windows(seq_len) * seq_len)

    def _order(self, step, batch_size, seq_len, seed) -> np.ndarray:
        """Window numbers of step `step`: sequences step*B .. step*B+B-1 of the run, each
        pass over the n windows in its own seeded permutation."""
        n = self.n_windows(seq_len)
        if n < 1:
            raise ConfigError(f"data: the {self.name} training split ({len(self.train)} tokens) "
                              f"is shorter than data.seq_len + 1 = {seq_len + 1}")
        g = step * batch_size + np.arange(batch_size, dtype=np.int64)   # global sequence numbers
        pass_no, pos = np.divmod(g, n)
        keys = np.empty((batch_size, 4), dtype=np.uint64)
        for p in np.unique(pass_no):   # one permutation per (seed, pass)
            keys[pass_no == p] = _rng(seed, int(p), 2).integers(0, 2 ** 63, size=4, dtype=np.uint64)
        return permute(pos, n, keys)

    def train_batch(self, step, batch_size, seq_len, seed):
        return self._windows(self.train, self._order(step, batch_size, seq_len, seed) * seq_len, seq_len)

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


class PaddedSource(ArraySource):
    """The paper's targets: one document per sequence, cut to S+1 tokens (its EOS
    included when it fits), the rest PAD: masked out of the loss. Documents are found
    by the EOS that ends each one in the store; each is used at most once per pass."""

    def __init__(self, name, train, val, vocab_size, eos_id: int, val_id: str):
        super().__init__(name, train, val, vocab_size, val_id=f"{val_id}|pad")
        self.eos = eos_id
        self.train_docs, self.val_docs = self._docs(train), self._docs(val)

    def _docs(self, arr, chunk: int = 1 << 26) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the documents of `arr`, read in chunks (memory stays flat)."""
        ends = [np.flatnonzero(np.asarray(arr[i:i + chunk]) == self.eos) + i + 1 for i in range(0, len(arr), chunk)]
        ends = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
        return np.concatenate([[0], ends[:-1]]).astype(np.int64), ends.astype(np.int64)

    def _padded(self, arr, starts, ends, seq_len) -> torch.Tensor:
        out = np.full((len(starts), seq_len + 1), PAD, dtype=np.int64)
        for i, (a, b) in enumerate(zip(starts, np.minimum(ends, starts + seq_len + 1))):
            out[i, :b - a] = arr[a:b]
        return torch.from_numpy(out)

    def n_windows(self, seq_len: int) -> int:
        return len(self.train_docs[0])

    def train_batch(self, step, batch_size, seq_len, seed):
        idx = self._order(step, batch_size, seq_len, seed)
        return self._padded(self.train, self.train_docs[0][idx], self.train_docs[1][idx], seq_len)

    def val_batches(self, n_tokens, batch_size, seq_len):
        starts, ends = self.val_docs
        n_seq = min(len(starts), max(1, n_tokens // seq_len))    # the first documents, in order
        for i in range(0, n_seq, batch_size):
            j = min(i + batch_size, n_seq)
            yield self._padded(self.val, starts[i:j], ends[i:j], seq_len)


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


def shakespeare_training_plays() -> list[str]:
    return [b for i, (_, b) in enumerate(shakespeare_plays()) if i % VAL_PLAY_EVERY != VAL_PLAY_OFFSET]


def shakespeare_split() -> tuple[str, str]:
    val = [b for i, (_, b) in enumerate(shakespeare_plays()) if i % VAL_PLAY_EVERY == VAL_PLAY_OFFSET]
    return "\n".join(shakespeare_training_plays()), "\n".join(val)


def shakespeare_tokens(cfg: DataConfig, tok) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) token arrays of the embedded corpus. Bytes are read directly; any
    other tokenizer's arrays are cached under <cache>/shakespeare/, keyed by the corpus,
    the split and the tokenizer's fingerprint, since encoding the 4.4 MB of plays takes
    seconds (a BPE trial spent 7 of its first 8 s on it) and every trial needs them."""
    if tok.name == "byte":
        train, val = shakespeare_split()
        return _encode_array(tok, train), _encode_array(tok, val)
    blob = resources.files("ebt_scaling.data").joinpath("corpus/shakespeare.txt.gz").read_bytes()
    key = hashlib.sha256(blob + f"|{VAL_PLAY_EVERY}|{VAL_PLAY_OFFSET}|{tok.fingerprint}".encode()).hexdigest()[:16]
    files = [cache_root(cfg) / "shakespeare" / f"{part}-{key}.npy" for part in ("train", "val")]
    if all(f.exists() for f in files):
        return np.load(files[0]), np.load(files[1])
    arrays = [_encode_array(tok, text) for text in shakespeare_split()]
    try:
        files[0].parent.mkdir(parents=True, exist_ok=True)
        for f, a in zip(files, arrays):     # atomic: a concurrent trial reads a whole file or none
            tmp = f.with_name(f"{f.stem}.tmp{os.getpid()}.npy")
            np.save(tmp, a)
            os.replace(tmp, f)
    except OSError as e:                    # an unwritable cache only costs the next trial the encoding
        print(f"warning: could not cache the tokenized corpus in {files[0].parent}: {e}", file=sys.stderr)
    return arrays[0], arrays[1]


def _encode_array(tok, text: str) -> np.ndarray:
    dtype = token_dtype(tok.vocab_size)
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
        self.val_id = self.name     # the held-out sequences are a function of the chain alone
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
    suffix = file_suffix(str(path))
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
                        raise ConfigError(f"{path}: line {i + 1} has no key {brief(column)}; set data.text_column")
                    yield rec[column]
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        if column not in pf.schema_arrow.names:
            raise ConfigError(f"{path}: no column {brief(column)} (has {pf.schema_arrow.names}); set data.text_column")
        for batch in pf.iter_batches(columns=[column], batch_size=1024):
            yield from (t for t in batch.column(0).to_pylist() if t)
    else:
        raise ConfigError(f"data.path: {path} has an unsupported suffix; use .txt, .jsonl or .parquet")


def _cache_dir(cfg: DataConfig) -> Path:
    d = cache_root(cfg) / "files"
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
    dtype = token_dtype(tok.vocab_size)
    cache = _cache_dir(cfg) / f"{path.stem}-{key}.{np.dtype(dtype).name}"
    if not cache.exists():
        tmp = cache.with_suffix(cache.suffix + f".tmp{os.getpid()}")
        sep = [tok.eos_id] if tok.eos_id is not None else list(b"\n\n")
        try:
            with open(tmp, "wb") as f:
                for text in _iter_texts(path, cfg.text_column):
                    f.write(np.asarray(tok.encode(text) + sep, dtype=dtype).tobytes())
            os.replace(tmp, cache)
        except (ValueError, UnicodeError) as e:     # a corrupt parquet (ArrowInvalid), a bad JSON line
            raise ConfigError(f"data.path: {path} could not be read as {file_suffix(str(path))} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                              "fix or replace the file") from None
        finally:
            tmp.unlink(missing_ok=True)
    arr = np.memmap(cache, dtype=dtype, mode="r") if cache.stat().st_size else np.zeros(0, dtype)
    cut = int(len(arr) * (1 - cfg.val_fraction))
    if min(cut, len(arr) - cut) < cfg.seq_len + 1:
        raise ConfigError(f"data.path: {path} holds {len(arr):,} tokens, too few for one training and one "
                          f"validation window of data.seq_len + 1 = {cfg.seq_len + 1} tokens; use a longer file "
                          "or a shorter seq_len")
    return ArraySource(f"file:{path.name}", arr[:cut], arr[cut:], tok.vocab_size)


# ------------------------------------------------------------------ hugging face
def hf_source(cfg: DataConfig, tok, need_tokens: int = 0) -> ArraySource:
    """The shared token store of the dataset (data/store.py), built or extended to hold
    `need_tokens` training tokens when it holds fewer (under its lock)."""
    store = ensure(cfg, need_tokens + cfg.seq_len + 1, tok)
    if cfg.targets == "pad":
        if tok.eos_id is None:
            raise ConfigError(f"data.targets: pad needs a tokenizer with an EOS token; {tok.name} has none")
        return PaddedSource(f"hf:{cfg.hf_dataset}", store.train, store.val, tok.vocab_size, tok.eos_id,
                            val_id=store.val_hash)
    return ArraySource(f"hf:{cfg.hf_dataset}", store.train, store.val, tok.vocab_size, val_id=store.val_hash)


# ------------------------------------------------------------------ factory
def build_source(cfg: DataConfig, need_tokens: int = 0) -> TokenSource:
    """The token source of `cfg`. `need_tokens` (the training budget) sizes streamed
    caches; a warning goes to stderr when the budget is more than one pass over the data."""
    src = _build_source(cfg, need_tokens)
    if isinstance(src, ArraySource) and src.passes(need_tokens, cfg.seq_len) > 1:
        print(f"warning: the token budget ({need_tokens:,}) is {src.passes(need_tokens, cfg.seq_len):.2f} passes "
              f"over the {src.name} training split ({src.n_windows(cfg.seq_len) * cfg.seq_len:,} tokens): "
              "windows repeat after the first pass, in a new order each pass", file=sys.stderr)
    return src


def _build_source(cfg: DataConfig, need_tokens: int) -> TokenSource:
    if cfg.source == "markov":
        return MarkovSource(cfg.markov_vocab, cfg.markov_order, cfg.markov_branching, cfg.markov_seed)
    tok = build_tokenizer(cfg.tokenizer)
    if cfg.source == "shakespeare":
        return ArraySource("shakespeare", *shakespeare_tokens(cfg, tok), tok.vocab_size)
    if cfg.source == "file":
        return file_source(cfg, tok)
    return hf_source(cfg, tok, need_tokens)
