"""Tokenizers: bytes (V = 256, the default, needs nothing) or any Hugging Face tokenizer."""
from __future__ import annotations

from ..config import ConfigError


class ByteTokenizer:
    name = "byte"
    vocab_size = 256
    eos_id = None          # documents are separated by a blank line instead

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer, e.g. the paper's EleutherAI/gpt-neox-20b (V = 50277)."""

    def __init__(self, name: str):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ConfigError(
                f"data.tokenizer: {name!r} needs the Hugging Face extra; install it with "
                "`pip install 'ebt-scaling[hf]'`, or use tokenizer: byte") from None
        try:
            self._tok = AutoTokenizer.from_pretrained(name)
        except Exception as e:  # offline, unknown name, gated repo...
            raise ConfigError(
                f"data.tokenizer: could not load Hugging Face tokenizer {name!r} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200]}). Check the name, your network, or pre-download it "
                "into the HF cache; tokenizer: byte works offline") from None
        self.name = name
        self.vocab_size = len(self._tok)   # len(), not .vocab_size: counts added tokens (50277 for NeoX)
        self.eos_id = self._tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text)

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))


def build_tokenizer(name: str):
    return ByteTokenizer() if name == "byte" else HFTokenizer(name)
