"""Named scaling rules: a hyperparameter as a pure function of the model size N.

N is the non-embedding parameter count (flops.non_embedding_params). A sweep spec
names a rule per hyperparameter instead of writing numbers by hand:

    rules:
      lr: lr_from_ladder                       # peak lr interpolated along the paper's ladder
      batch: {name: batch_sqrt_params, ref_batch: 32}
      tokens: {name: tokens_chinchilla, ratio: 20}

Every rule takes N first and keyword options after it; `constant` leaves the base
config's value alone. Rules return raw numbers; the planner rounds tokens to whole
sequences and checks the result like any other config.
"""
from __future__ import annotations

import math

from ..config import SIZE_LADDER


def ladder_params(layers: int, width: int) -> int:
    """The paper's N for a ladder rung: 7 L d^2 (attention 4 d^2 + SwiGLU 3 d^2, d_ffn = d)."""
    return 7 * layers * width ** 2


# (N, peak lr) along the ladder, smallest first: the anchor points of lr_from_ladder.
_LADDER_LR = sorted((ladder_params(L, D), lr) for L, _, D, lr in SIZE_LADDER.values())


def constant(n_params: int, **_) -> None:
    """Keep the base config's value (the rule that changes nothing)."""
    return None


def lr_from_ladder(n_params: int) -> float:
    """Peak lr for N: the paper's per-size lr (recipe section 1), interpolated linearly in
    log N / log lr between rungs and held at the end values outside the ladder (a model
    smaller than 4xs trains at 4xs's 2.4e-3, not at an extrapolated larger lr)."""
    if n_params <= 0:
        raise ValueError(f"lr_from_ladder: N must be > 0, got {n_params}")
    pts = _LADDER_LR
    if n_params <= pts[0][0]:
        return pts[0][1]
    if n_params >= pts[-1][0]:
        return pts[-1][1]
    for (n0, lr0), (n1, lr1) in zip(pts, pts[1:]):
        if n0 <= n_params <= n1:
            t = (math.log(n_params) - math.log(n0)) / (math.log(n1) - math.log(n0))
            return math.exp(math.log(lr0) + t * (math.log(lr1) - math.log(lr0)))
    raise AssertionError("unreachable")


def batch_sqrt_params(n_params: int, ref_params: float = 6.18e6, ref_batch: int = 32,
                      multiple: int = 2, minimum: int = 1) -> int:
    """Batch (sequences) growing with sqrt(N), anchored at the paper's xxs (6.18M -> 32).
    Rounded to the nearest `multiple`; with multiple=2 this gives the paper's
    32/46/90/170/256 for xxs/xs/small/medium/large."""
    if n_params <= 0:
        raise ValueError(f"batch_sqrt_params: N must be > 0, got {n_params}")
    raw = ref_batch * math.sqrt(n_params / ref_params)
    return max(minimum, multiple * round(raw / multiple))


def tokens_chinchilla(n_params: int, ratio: float = 20.0) -> int:
    """Token budget D = ratio * N (Chinchilla's compute-optimal 20 tokens per parameter)."""
    if n_params <= 0 or ratio <= 0:
        raise ValueError(f"tokens_chinchilla: N and ratio must be > 0, got {n_params}, {ratio}")
    return int(round(ratio * n_params))


# kind -> rule name -> function. The planner looks rules up here; specs name them.
RULES: dict[str, dict] = {
    "lr": {"constant": constant, "lr_from_ladder": lr_from_ladder},
    "batch": {"constant": constant, "batch_sqrt_params": batch_sqrt_params},
    "tokens": {"constant": constant, "tokens_chinchilla": tokens_chinchilla},
}
