"""Build a model from a resolved Config."""
from __future__ import annotations

from ..config import Config


def build_model(cfg: Config):
    if cfg.is_ebt:
        from .ebt import EBT
        return EBT(cfg)
    from .transformer_pp import TransformerPP
    return TransformerPP(cfg.model)
