"""Peak training memory of one point, as a pure function of the config; the micro-batch
that fits a device; and a tensor-storage meter that measures it on any device.

What is counted (bytes; R = rows in one forward = micro-batch rows, plus their
replayed rows for S2; S context, V vocabulary, D width, F SwiGLU width, L layers):
  * state: fp32 parameters, gradients and AdamW's two moments: 16 bytes per parameter;
    under bf16 autocast, the bf16 copies of the matmul weights (2 bytes);
  * the (R, S, V) tensors, which dominate at the paper's V = 50277 (VOCAB_TENSORS: how
    many fp32-sized ones are alive at the backward's peak);
  * the blocks' saved activations per token, layer and unit of width (BLOCK_BYTES):
    the context's and the thinking steps' double-backward graphs;
  * the optimiser step's temporaries, when they exceed the backward's;
  * EBT S2: the replay buffer (bf16 logits + int64 tokens) and the step's fresh final
    logits waiting to join it; with micro-batches or ranks, the whole batch's noise
    drawn once per draw (models/ebt.py draws it for the whole batch, keeps the part's).
The coefficients are fitted to measured peaks (`measure_peak`) and checked against
others (tests/test_memory.py: within 20% on CPU at other sizes, families, precisions
and micro-batches; fitted at the presets' thinking settings). Allocator slack (CUDA's
caching allocator rounds and fragments) is left to `headroom` in `auto_micro_batch`.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

from .config import Config
from .flops import total_params

GiB = 1024 ** 3

# fp32-sized (R, S, V) tensors alive at the peak, and saved block activations in bytes per
# token, layer and unit of width (D + F) / 2, by (family, autocast). Least-squares fits to
# `measure_peak` at four CPU configs (V 256-2048, S 32-64, D 32-128, L 1-3; the presets'
# thinking settings), checked at others in tests/test_memory.py. For scale: T++ keeps the
# logits, their log-softmax and its gradient (3); an S2 row keeps y0, each step's noise,
# softmax, dE/dp and update, and the graph-keeping step's double-backward buffers (~8).
VOCAB_TENSORS = {
    ("transformer_pp", False): 3.02, ("transformer_pp", True): 2.82,
    ("ebt_s1", False): 9.98, ("ebt_s1", True): 10.98,
    ("ebt_s2", False): 7.68, ("ebt_s2", True): 8.16,
}
BLOCK_BYTES = {
    ("transformer_pp", False): 62.4, ("transformer_pp", True): 43.4,
    ("ebt_s1", False): 437.6, ("ebt_s1", True): 312.8,
    ("ebt_s2", False): 224.0, ("ebt_s2", True): 158.2,
}
# AdamW's foreach step holds about 3.9 parameter-sized fp32 temporaries (measured) on top
# of parameters, gradients and moments: the peak is the larger of backward and this.
OPTIM_TEMPORARIES = 4.0


@dataclass(frozen=True)
class MemoryPlan:
    state: int          # parameters, gradients, optimiser, autocast weight copies
    per_row: int        # bytes per row in one forward (fresh or replayed)
    rows: int           # rows in one forward (micro-batch + replayed share)
    replay: int         # the replay buffer and the step's pending rows
    transient: int      # whole-batch noise drawn per part (micro-batches or ranks only)

    optim: int = 0      # the optimiser step's temporaries

    @property
    def peak(self) -> int:
        backward = self.per_row * self.rows + self.transient
        return self.state + self.replay + max(backward, self.optim)


def _family_key(cfg: Config) -> str:
    if not cfg.is_ebt:
        return "transformer_pp"
    return "ebt_s1" if cfg.ebt.second_order == "full" else "ebt_s2"   # S1 keeps every step's graph


def per_row_bytes(cfg: Config, autocast: bool) -> int:
    """Bytes one row (fresh or replayed) adds to the backward's peak."""
    m, S, V = cfg.model, cfg.data.seq_len, cfg.model.vocab_size
    key = (_family_key(cfg), autocast)
    width = (m.d_model + m.d_ffn) / 2
    return int(VOCAB_TENSORS[key] * S * V * 4 + BLOCK_BYTES[key] * S * m.n_layers * width)


def plan_memory(cfg: Config, micro: int = 0, world: int = 1, autocast: bool = True) -> MemoryPlan:
    """The peak of one training step at `micro` fresh rows per forward (0: a rank's whole
    share of the batch) on one of `world` ranks."""
    m, S, V = cfg.model, cfg.data.seq_len, cfg.model.vocab_size
    P = total_params(cfg)
    matmul = P - m.n_layers * 2 * m.d_model - m.d_model - m.vocab_size * m.d_model   # all but norms, tok emb
    state = 16 * P + (2 * matmul if autocast else 0)
    n = cfg.train.batch_size
    share = math.ceil(n / world)
    rows = share if micro <= 0 or micro >= share else micro
    replay = transient = 0
    e = cfg.ebt
    frac = e.replay_fraction if cfg.is_ebt and e.replay_buffer else 0.0
    if frac:
        replay = e.replay_buffer * S * (V * 2 + 16) + share * S * V * 2
        rows = rows + math.ceil(rows * frac)
    if cfg.is_ebt and (world > 1 or rows < share + math.ceil(share * frac)):
        transient = (n + int(n * frac)) * S * V * 4
    return MemoryPlan(state, per_row_bytes(cfg, autocast), rows, replay, transient, int(OPTIM_TEMPORARIES * 4 * P))


def auto_micro_batch(cfg: Config, free_bytes: int, world: int = 1, autocast: bool = True,
                     headroom: float = 0.85) -> int:
    """The largest micro-batch (fresh rows) whose planned peak fits headroom x free_bytes;
    0 when a rank's whole share fits. Raises when not even one row fits."""
    share = math.ceil(cfg.train.batch_size / world)
    budget = free_bytes * headroom
    if plan_memory(cfg, 0, world, autocast).peak <= budget:
        return 0
    lo, hi = 0, share
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if plan_memory(cfg, mid, world, autocast).peak <= budget else (lo, mid)
    if lo == 0:
        need = plan_memory(cfg, 1, world, autocast).peak
        raise MemoryError(f"one row needs {need / GiB:.1f} GiB by the memory model, more than "
                          f"{headroom:.0%} of the {free_bytes / GiB:.1f} GiB free; use a smaller model, "
                          "a shorter context or more GPUs (data-parallel ranks)")
    return lo


def free_memory(device) -> int:
    """Free bytes on `device`: CUDA's free memory, or the host's available memory."""
    import torch
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import os
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


# ------------------------------------------------------------------ measuring
def measure_peak(fn, *args, **kwargs):
    """(fn's result, peak bytes of tensor storage alive while it ran, counted over the
    storages it created), on any device. Tensor-storage accounting: every op's output
    storage is counted from creation until freed (a weakref finalizer), views once."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    live: dict[int, int] = {}
    peak = [0, 0]             # current, peak

    def free(key):
        peak[0] -= live.pop(key, 0)

    class Meter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.device.type != "meta":
                    st = t.untyped_storage()
                    key = st.data_ptr()
                    if key and key not in live:
                        live[key] = st.nbytes()
                        peak[0] += st.nbytes()
                        peak[1] = max(peak[1], peak[0])
                        weakref.finalize(st, free, key) if _finalizable(st) else None
            return out

    with Meter():
        result = fn(*args, **kwargs)
    return result, peak[1]


def _finalizable(storage) -> bool:
    try:
        weakref.ref(storage)
        return True
    except TypeError:
        return False
