"""Transformer++: the Llama-2 style baseline (recipe section 1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layers import Block, RMSNorm, init_weights, rope_tables


def part_share(mean_loss, logits, targets, scored: int):
    """A part's mean loss weighted by its share of the batch's scored targets; a part
    with none (all masked) contributes zero, not the NaN of an empty mean."""
    mine = int((targets >= 0).sum())
    if mine == 0:
        return logits.sum() * 0.0
    return mean_loss * (mine / scored)


class TransformerPP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.d_ffn, cfg.norm_eps) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)   # untied
        init_weights(self, cfg.init_gain, cfg.embed_init)

    def rope(self, S: int, device, offset: int = 0):
        pos = torch.arange(offset, offset + S, device=device)
        return rope_tables(pos, self.cfg.d_model // self.cfg.n_heads, self.cfg.rope_theta)

    def forward(self, tokens):
        """tokens (B, S) -> logits (B, S, V) for the next token at every position."""
        x = self.tok_embeddings(tokens)                      # (B, S, D)
        cos, sin = self.rope(tokens.shape[1], tokens.device)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.output(self.norm(x))                     # (B, S, V)

    def loss(self, inputs, targets, rows=None, **_):
        """Mean next-token cross-entropy in nats, and a dict of extra metrics.
        rows=(lo, n, scored): the inputs are part of a batch of n rows that scores
        `scored` targets (masked ones, < 0, are not); the loss is this part's share of
        the batch's mean (the parts sum to it)."""
        logits = self(inputs)                                # (B, S, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        if rows is not None:
            loss = part_share(loss, logits, targets, rows[2])
        return loss, {}

    @torch.no_grad()
    def eval_loss(self, inputs, targets):
        return self.loss(inputs, targets)
