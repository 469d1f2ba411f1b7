"""The Llama-2 block shared by both families: RMSNorm, RoPE, attention, SwiGLU.

No biases anywhere; Xavier-normal init for every Linear (recipe section 1).
Shapes: B batch, S sequence, D width, H heads, K head width (D = H * K).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # compute the norm in (at least) fp32 even under autocast, as Llama does
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float):
    """The rotation tables for integer `positions` (S,), each (S, K), built once per
    forward: cos' repeats each pair's cos twice, sin' is (-sin, +sin) per pair."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().float(), ang.sin().float()
    return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)


def apply_rope(x, cos, sin):
    """Rotate (B, H, S, K) by position; pairs are (x[2i], x[2i+1]) as in Llama:
    out[2i] = x[2i] cos - x[2i+1] sin, out[2i+1] = x[2i+1] cos + x[2i] sin.

    Written as x * cos' + swap(x) * sin' over the whole width (the tables of
    `rope_tables`; swap exchanges the two members of each pair). Every output, and every
    gradient, is the same sum of two products as with strided halves, so the results are
    bit-identical; but the backward (and the EBT's double backward) avoids the
    zero-filled scatters of slicing x[..., 0::2]."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x * cos.to(x.dtype) + swapped * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.wq = nn.Linear(d_model, d_model, bias=False)
        self.wk = nn.Linear(d_model, d_model, bias=False)
        self.wv = nn.Linear(d_model, d_model, bias=False)
        self.wo = nn.Linear(d_model, d_model, bias=False)

    def heads(self, x, cos, sin):
        """(B, S, D) -> q, k, v each (B, H, S, K), q and k rotated."""
        B, S, _ = x.shape
        split = lambda t: t.view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.wq(x)), split(self.wk(x)), split(self.wv(x))
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def merge(self, y):
        """(B, H, S, K) -> (B, S, D) through the output projection."""
        B, H, S, K = y.shape
        return self.wo(y.transpose(1, 2).reshape(B, S, H * K))

    def forward(self, x, cos, sin):
        q, k, v = self.heads(x, cos, sin)
        return self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ffn: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ffn, bias=False)   # gate
        self.w3 = nn.Linear(d_model, d_ffn, bias=False)   # up
        self.w2 = nn.Linear(d_ffn, d_model, bias=False)   # down

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm residual block. `forward` is the plain causal path; the EBT reuses
    `attention_norm`, `attention`, `ffn_norm` and `ffn` with its own attention scheme."""

    def __init__(self, d_model: int, n_heads: int, d_ffn: int, eps: float):
        super().__init__()
        self.attention_norm = RMSNorm(d_model, eps)
        self.attention = Attention(d_model, n_heads)
        self.ffn_norm = RMSNorm(d_model, eps)
        self.ffn = SwiGLU(d_model, d_ffn)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))

    def mlp_residual(self, x):
        return x + self.ffn(self.ffn_norm(x))


def init_weights(module: nn.Module, gain: float = 1.0, embed_init: str = "normal") -> None:
    """Xavier-normal for every Linear, as the reference code initialises its models
    (weight_initialization_method = xavier). Its initialiser touches Linear layers only,
    so its token embeddings (and S1 step embeddings) keep nn.Embedding's N(0, 1):
    embed_init="normal" does the same; "xavier" treats them as the Linears."""
    for m in module.modules():
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Embedding) and embed_init == "xavier"):
            nn.init.xavier_normal_(m.weight, gain=gain)
