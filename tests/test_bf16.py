"""bf16 autocast trains like fp32: a tiny Transformer++ and EBT S2, 100 steps on CPU
under bf16 autocast, end within a stated tolerance of their fp32 runs."""
import pytest

from ebt_scaling.results.store import MemorySink
from ebt_scaling.train import train
from conftest import tiny


@pytest.mark.slow
@pytest.mark.parametrize("family,ebt,tol", [("transformer_pp", {}, 0.005), ("ebt", {"preset": "ebt_s2"}, 0.01)])
def test_bf16_autocast_lands_near_fp32_after_100_steps(family, ebt, tol):
    """Tolerance on the final validation loss: 0.5% for T++, 1% for S2 (measured: 0.015%
    and 0.41%; S2's thinking
    steps move logits by alpha * dE/dp computed through bf16 matmuls)."""
    runs = {}
    for precision in ("fp32", "bf16"):
        sink = MemorySink()
        cfg = tiny(family, ebt=ebt, train={"steps": 100, "batch_size": 8, "eval_every": 100, "log_every": 10,
                                           "eval_tokens": 1024, "precision": precision, "device": "cpu"},
                   optim={"lr": 3e-3})
        assert train(cfg, sink).status == "ok"
        assert sink.rows[-1].dtype == precision
        runs[precision] = sink.rows[-1].val_loss
    start = 3.4657                                   # ln 32: where both start
    assert runs["fp32"] < start - 0.1                # it learned something (S2 at 100 steps: 3.31)
    assert runs["bf16"] == pytest.approx(runs["fp32"], rel=tol), runs
