"""Tokenizers and token sources (embedded corpus, synthetic Markov, local files, HF token stores)."""
from .sources import TokenSource, build_source, val_hash  # noqa: F401
