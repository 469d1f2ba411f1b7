"""Tokenizers and token sources (embedded corpus, synthetic Markov, local files, HF token stores)."""
from .sources import PAD, TokenSource, build_source, inputs_of, val_hash  # noqa: F401
