"""Tokenizers and token sources (embedded corpus, synthetic Markov, local files, HF)."""
from .sources import TokenSource, build_source  # noqa: F401
