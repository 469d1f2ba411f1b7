"""Parameters and FLOPs, as pure functions of the config; peak FLOP/s; MFU.

What is counted (one place, so every row and fit agrees):
  * every matrix multiply, 2 FLOPs per multiply-add: the block projections, the
    SwiGLU, the LM head (Transformer++) or the probability embedding and energy head
    (EBT);
  * attention's two S x S products (QK^T and AV) over the *full* square, as a dense
    kernel computes them and as torch's FlopCounterMode counts scaled_dot_product
    attention; causal masking is not discounted;
  * not counted: norms, RoPE, softmax, SiLU, residual adds, the embedding lookup and
    the optimiser (all O(d) per token, <1% at the sizes we train).
Training = forward + backward = 3x the forward FLOPs (backward computes input and
weight gradients, 2x forward).

N (the scaling-law parameter count) is the non-embedding count: everything but the
token embedding, the LM head and, for the EBT, the probability embedding Linear(V->D)
and the step embeddings. It is ~7 L d^2 at the paper's d_ffn = d.
"""
from __future__ import annotations

import functools
import time

from .config import Config, ModelConfig


# ------------------------------------------------------------------ parameters
def block_matmul_params(m: ModelConfig) -> int:
    """Weights that take part in matmuls inside the blocks: 4 d^2 attention + 3 d f SwiGLU."""
    return m.n_layers * (4 * m.d_model ** 2 + 3 * m.d_model * m.d_ffn)


def non_embedding_params(cfg: Config) -> int:
    m = cfg.model
    n = block_matmul_params(m) + m.n_layers * 2 * m.d_model + m.d_model   # + 2 norms/layer + final norm
    if cfg.is_ebt:
        n += m.d_model                       # energy head Linear(D -> 1)
        n += 1                               # alpha (a scalar parameter, learnable or not)
    return n


def embedding_params(cfg: Config) -> int:
    m = cfg.model
    n = m.vocab_size * m.d_model             # token embedding
    if cfg.is_ebt:
        n += m.vocab_size * m.d_model        # probability embedding Linear(V -> D)
        n += cfg.ebt.step_tokens * m.d_model   # learned step tokens
    else:
        n += m.d_model * m.vocab_size        # untied LM head
    return n


def total_params(cfg: Config) -> int:
    return non_embedding_params(cfg) + embedding_params(cfg)


def ebt_mean_train_steps(cfg: Config) -> float:
    e = cfg.ebt
    return e.steps + e.random_extra_steps / 2


# ------------------------------------------------------------------ FLOPs
def attention_fwd_flops_per_token(m: ModelConfig, keys: int) -> int:
    """QK^T and AV for one query against `keys` keys, all layers."""
    return m.n_layers * 4 * keys * m.d_model


def tpp_forward_flops_per_token(cfg: Config) -> int:
    m, S = cfg.model, cfg.data.seq_len
    return 2 * block_matmul_params(m) + 2 * m.d_model * m.vocab_size + attention_fwd_flops_per_token(m, S)


def tpp_train_flops_per_token(cfg: Config) -> int:
    return 3 * tpp_forward_flops_per_token(cfg)


def ebt_step_flops_per_token(cfg: Config, create_graph: bool) -> int:
    """One thinking step of the predicted stream, per token, forward + backward to p.

    Forward: the probability embedding (2VD), the blocks (2 * matmul params), attention
    of each prediction against the S observed keys (+ its own key, O(D), not counted), the
    energy head (2D). The gradient with respect to p needs only input gradients: about
    the forward again. With create_graph=True the outer loss.backward() later runs
    through this step twice more: through its gradient graph (2 products per weight:
    the weight's and the upstream gradient's) and through its forward graph (input and
    weight gradients), i.e. 2x + 2x the forward.
    """
    m, S = cfg.model, cfg.data.seq_len
    prefix = 1 if cfg.ebt.step_embeddings else 0
    fwd = 2 * m.vocab_size * m.d_model + 2 * block_matmul_params(m) \
        + attention_fwd_flops_per_token(m, S + prefix) + 2 * m.d_model
    return fwd * (6 if create_graph else 2)


def ebt_observed_flops_per_token(cfg: Config, training: bool) -> int:
    """The observed (context) stream: causal blocks over the real tokens. Its keys and
    values are computed once per forward and shared by every thinking step, unless the
    S1's step tokens change the context at each step. Only the last layer's keys and
    values are read, so that layer stops after wq, wk, wv (3 D^2)."""
    m, S = cfg.model, cfg.data.seq_len
    prefix = 1 if cfg.ebt.step_embeddings else 0
    full_layers = m.n_layers - 1
    matmul = full_layers * (4 * m.d_model ** 2 + 3 * m.d_model * m.d_ffn) + 3 * m.d_model ** 2
    fwd = 2 * matmul + 4 * (S + prefix) * m.d_model * full_layers
    return fwd * (3 if training else 1)


def ebt_train_flops_per_token(cfg: Config, steps: float | None = None) -> float:
    """Training FLOPs per fresh token for the EBT at `steps` optimisation steps (default:
    the mean of the randomised count). Which steps keep a graph depends on the variant.
    With a replay buffer every batch also carries replay_fraction x B replayed rows, so
    each fresh token pays for (1 + replay_fraction) tokens of compute (from the second
    step on; the first step's empty buffer is ignored)."""
    e = cfg.ebt
    k = ebt_mean_train_steps(cfg) if steps is None else steps
    graph_steps = k if e.second_order == "full" else 1.0
    plain_steps = k - graph_steps
    contexts = k if e.per_step_context else 1.0
    per_row_token = (contexts * ebt_observed_flops_per_token(cfg, training=True)
                     + graph_steps * ebt_step_flops_per_token(cfg, create_graph=True)
                     + plain_steps * ebt_step_flops_per_token(cfg, create_graph=False))
    return per_row_token * (1 + (e.replay_fraction if e.replay_buffer else 0.0))


def train_flops_per_token(cfg: Config) -> float:
    return ebt_train_flops_per_token(cfg) if cfg.is_ebt else tpp_train_flops_per_token(cfg)


# ------------------------------------------------------------------ peak and MFU
# Dense peak FLOP/s by (device name substring, dtype), from the vendors' data sheets
# (SXM parts, no sparsity). Matched in order; first hit wins.
PEAK_FLOPS: list[tuple[str, str, float]] = [
    ("H200", "bf16", 989e12), ("H200", "fp32", 67e12), ("H200", "tf32", 494e12),
    ("H100", "bf16", 989e12), ("H100", "fp32", 67e12), ("H100", "tf32", 494e12),
    ("A100", "bf16", 312e12), ("A100", "fp32", 19.5e12), ("A100", "tf32", 156e12),
    ("L40S", "bf16", 362e12), ("L40S", "fp32", 91.6e12),
    ("A10", "bf16", 125e12), ("A10", "fp32", 31.2e12),
    ("V100", "fp16", 125e12), ("V100", "fp32", 15.7e12),
]


def peak_flops(device_name: str, dtype: str) -> float | None:
    """Peak FLOP/s for a named device; for CPUs, the measured fp32 matmul peak."""
    for name, dt, value in PEAK_FLOPS:
        if name.lower() in device_name.lower() and dt == dtype:
            return value
    if device_name.lower().startswith("cpu"):
        return measured_cpu_matmul_peak()
    return None


def measured_cpu_matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 matmul FLOP/s on this CPU with torch's current thread count."""
    import torch
    return _cpu_peak(n, repeats, torch.get_num_threads())


@functools.lru_cache(maxsize=8)
def _cpu_peak(n: int, repeats: int, threads: int) -> float:
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def mfu(flops_per_s: float, peak: float | None) -> float:
    return flops_per_s / peak if peak else float("nan")
