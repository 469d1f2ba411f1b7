"""Tokenizers: bytes (V = 256, the default, needs nothing) or a fast Hugging Face
`tokenizers` tokenizer, named by its Hub repository (the paper's EleutherAI/gpt-neox-20b),
by the path of a local tokenizer.json (e.g. one trained with the `tokenizers` library), or
by the name of one shipped with the package: `shakespeare-bpe4096`, a byte-level BPE of
4096 tokens trained on the embedded corpus's training plays (`shakespeare_bpe`; rebuilt
bit-identically by scripts/build_bpe.py, checked by tests/test_tokenizers.py).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import ConfigError, brief

# special tokens that end a document, in the order they are looked for
EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")


class ByteTokenizer:
    name = "byte"
    vocab_size = 256
    eos_id = None          # documents are separated by a blank line instead
    fingerprint = "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def load_hf_tokenizer(name: str):
    """The `tokenizers.Tokenizer` for a Hub name or a local tokenizer.json path."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigError(
            f"data.tokenizer: {brief(name)} needs the `tokenizers` package (a dependency of "
            "ebt-scaling): `pip install 'tokenizers>=0.20,<1'`, or use tokenizer: byte") from None
    path = Path(name).expanduser()
    try:
        if path.suffix == ".json" or path.exists():
            if path.is_dir():
                path = path / "tokenizer.json"
            return Tokenizer.from_file(str(path))
        return Tokenizer.from_pretrained(name)
    except Exception as e:  # offline, unknown name, gated repo, missing file...
        raise ConfigError(
            f"data.tokenizer: could not load Hugging Face tokenizer {brief(name)} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}). Check the name, your network, or "
            "pass the path of a tokenizer.json; tokenizer: byte works offline") from None


class HFTokenizer:
    """A fast (Rust) tokenizer; `encode_batch` is what the token store calls."""

    def __init__(self, name: str):
        self._tok = load_hf_tokenizer(name)
        self.name = name
        # with added tokens: GPT-NeoX counts 50277, as the paper's vocabulary
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.eos_id = next((self._tok.token_to_id(t) for t in EOS_NAMES
                            if self._tok.token_to_id(t) is not None), None)
        # identity of what the tokenizer does, not what it is called: a retrained
        # tokenizer.json at the same path gets another token store and val_hash
        self.fingerprint = hashlib.sha256(self._tok.to_str().encode()).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets: the same ids, ~25% less CPU
        fast = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [e.ids for e in fast(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))


# tokenizers shipped in the package (data/corpus/<name>.json) and the vocabulary each was built with
SHIPPED = {"shakespeare-bpe4096": 4096}


def shipped_path(name: str) -> Path:
    return Path(__file__).parent / "corpus" / f"{name}.json"


def build_tokenizer(name: str):
    if name == "byte":
        return ByteTokenizer()
    return HFTokenizer(str(shipped_path(name)) if name in SHIPPED else name)


def shakespeare_bpe(vocab: int, path) -> str:
    """The shipped BPE: trained on the embedded corpus's training plays only (one document
    per play, corpus order), so that no validation play shapes the vocabulary."""
    from .sources import shakespeare_training_plays
    return train_bpe(shakespeare_training_plays(), vocab, path)


def train_bpe(docs, vocab: int, path) -> str:
    """Train a byte-level BPE tokenizer of `vocab` tokens (EOS `<|endoftext|>`) on `docs`
    with the `tokenizers` library and save it as tokenizer.json at `path`: a local
    stand-in for a Hub tokenizer (tests, benchmarks, a second vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path))
    return str(path)
