import math

import pytest

from ebt_scaling.config import SIZE_LADDER, config_from_dict
from ebt_scaling.flops import non_embedding_params
from ebt_scaling.sweep.rules import (RULES, batch_sqrt_params, constant, ladder_params, lr_from_ladder,
                                     tokens_chinchilla)


def test_lr_from_ladder_hits_every_rung_and_clamps():
    for name, (L, _, D, lr) in SIZE_LADDER.items():
        assert lr_from_ladder(ladder_params(L, D)) == pytest.approx(lr, rel=1e-9), name
    assert lr_from_ladder(1000) == SIZE_LADDER["4xs"][3]          # below the ladder: held
    assert lr_from_ladder(10 ** 12) == SIZE_LADDER["xl"][3]      # above: held
    ns = [10 ** k for k in range(5, 10)]
    lrs = [lr_from_ladder(n) for n in ns]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))             # larger models, smaller lr


def test_batch_sqrt_params_gives_the_papers_batches():
    paper = {"xxs": 32, "xs": 46, "small": 90, "medium": 170, "large": 256}
    for size, want in paper.items():
        cfg = config_from_dict({"model": {"size": size}, "train": {"steps": 1}})
        assert batch_sqrt_params(non_embedding_params(cfg)) == want, size
    assert batch_sqrt_params(4 * 6.18e6) == 64                   # sqrt: 4x N -> 2x batch
    assert batch_sqrt_params(10, minimum=4) == 4


def test_tokens_chinchilla_and_constant():
    assert tokens_chinchilla(1_000_000) == 20_000_000
    assert tokens_chinchilla(1_000_000, ratio=5) == 5_000_000
    assert constant(123) is None
    with pytest.raises(ValueError):
        tokens_chinchilla(0)
    assert set(RULES) == {"lr", "batch", "tokens"} and all("constant" in r for r in RULES.values())
    assert math.isfinite(lr_from_ladder(3e6))
