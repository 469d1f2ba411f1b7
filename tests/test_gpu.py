"""On a CUDA device: bf16 training steps match the memory model and micro-batches the
whole batch (run by scripts/gpu-check.sh; deselected without a GPU: -m "not gpu")."""
import pytest
import torch

from ebt_scaling.memory import plan_memory
from ebt_scaling.models.registry import build_model
from ebt_scaling.train.distributed import Dist
from ebt_scaling.train.loop import accumulate
from ebt_scaling.train.optim import build_optimizer
from conftest import tiny

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("family,ebt", [("transformer_pp", {}), ("ebt", {"preset": "ebt_s2"})])
def test_cuda_peak_memory_within_25_percent_of_the_model(family, ebt):
    cfg = tiny(family, ebt=ebt, model={"vocab_size": 8192, "d_model": 128, "n_layers": 2, "n_heads": 2},
               data={"seq_len": 128}, train={"batch_size": 16})
    dev = torch.device("cuda")
    model = build_model(cfg).to(dev)
    opt = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    for i in range(3):
        if i == 2:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        opt.zero_grad(set_to_none=True)
        accumulate(model, torch.randint(0, 8192, (16, 129), device=dev), i, cfg, Dist(), 0, True, params)
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step()
    got = torch.cuda.max_memory_allocated()
    assert plan_memory(cfg, 0, 1, True).peak == pytest.approx(got, rel=0.25)


def test_cuda_micro_batches_give_the_whole_batch_gradient():
    cfg = tiny("ebt", ebt={"preset": "ebt_s2"}, model={"vocab_size": 64}, train={"batch_size": 8})
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(cfg).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = torch.randint(0, 64, (8, 17), device=dev)
    grads = []
    for micro in (0, 3):
        model.zero_grad(set_to_none=True)
        accumulate(model, batch, 0, cfg, Dist(), micro, False, params)
        grads.append([p.grad.clone() for p in params])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
