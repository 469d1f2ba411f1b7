"""The memory model (ebt_scaling/memory.py) against measured peaks, and the micro-batch
it picks. Measured configs differ from the ones its coefficients were fitted at."""
import pytest
import torch

from ebt_scaling.memory import auto_micro_batch, measure_peak, plan_memory
from ebt_scaling.models.registry import build_model
from ebt_scaling.train.distributed import Dist
from ebt_scaling.train.loop import accumulate
from ebt_scaling.train.optim import build_optimizer
from conftest import tiny

FAMILIES = [("transformer_pp", {}), ("ebt", {"preset": "ebt_s1"}), ("ebt", {"preset": "ebt_s2", "replay_buffer": 16})]


def measured_peak(cfg, autocast, micro):
    """Peak bytes of a steady-state training step: what exists before it (parameters,
    AdamW moments, the replay buffer) plus the peak of what the step allocates."""
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    V, S, B = cfg.model.vocab_size, cfg.data.seq_len, cfg.train.batch_size

    def step(i):
        opt.zero_grad(set_to_none=True)
        accumulate(model, torch.randint(0, V, (B, S + 1)), i, cfg, Dist(), micro, autocast, params)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step()

    step(0), step(1)                     # moments exist, the buffer holds rows
    opt.zero_grad(set_to_none=True)
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts if torch.is_tensor(t))
    before = nbytes(model.parameters()) + nbytes(v for s in opt.state.values() for v in s.values())
    before += nbytes((getattr(model, "_replay", None) or {}).values())
    return before + measure_peak(step, 2)[1]


@pytest.mark.parametrize("family,ebt", FAMILIES)
@pytest.mark.parametrize("shape,autocast,micro", [((1536, 16, 48, 2, 8), False, 3), ((768, 32, 64, 1, 6), True, 0)])
def test_memory_model_within_20_percent_of_the_measured_peak(family, ebt, shape, autocast, micro):
    V, S, d, L, B = shape
    cfg = tiny(family, ebt=ebt, model={"vocab_size": V, "d_model": d, "n_layers": L, "n_heads": 2},
               data={"seq_len": S}, train={"batch_size": B})
    got = measured_peak(cfg, autocast, micro)
    want = plan_memory(cfg, micro, 1, autocast).peak
    assert want == pytest.approx(got, rel=0.20), (want / got)


def test_measure_peak_counts_live_storage():
    def f():
        a = torch.ones(1000, 250)           # 1 MB
        b = a * 2                           # 2 MB alive
        del a
        return (b + 1).sum()                # b and b + 1: 2 MB
    assert measure_peak(f)[1] == pytest.approx(2e6, rel=1e-3)


def test_auto_micro_batch_is_the_largest_that_fits():
    cfg = tiny("ebt", ebt={"preset": "ebt_s2"}, model={"vocab_size": 4096}, data={"seq_len": 64},
               train={"batch_size": 32})
    whole = plan_memory(cfg, 0).peak
    assert auto_micro_batch(cfg, int(whole / 0.85) + 1) == 0             # the whole batch fits
    budget = int(whole * 0.7)             # a split adds the whole batch's noise (transient)
    mb = auto_micro_batch(cfg, int(budget / 0.85))
    assert 1 <= mb < 32
    assert plan_memory(cfg, mb).peak <= budget < plan_memory(cfg, mb + 1).peak
    # two ranks: each plans its half of the batch
    assert plan_memory(cfg, 0, world=2).rows == 16 + 8
    with pytest.raises(MemoryError, match="one row needs"):
        auto_micro_batch(cfg, 1 << 20)


@pytest.mark.parametrize("sweep", ["depth", "width", "data", "batch", "params", "flops", "thinking"])
def test_plan_gives_every_paper_point_a_micro_batch_that_fits_80_gib(sweep, capsys):
    import argparse
    from pathlib import Path
    from ebt_scaling.execute.cli import cmd_plan
    spec = Path(__file__).parent.parent / "sweeps" / f"{sweep}.yaml"
    cmd_plan(argparse.Namespace(spec=str(spec), scale="paper", device_memory=80.0))
    lines = [l for l in capsys.readouterr().out.splitlines() if "GPU" in l and l[:12].strip().isalnum()]
    assert lines
    for line in lines:
        cols = line.split()
        i = cols.index("CPU,") - 1                   # ... mem/B micro peak  <cpus> CPU, 1 GPU
        whole, micro, peak = float(cols[i - 3]), cols[i - 2], float(cols[i - 1])
        assert peak <= 80 * 0.85 and (micro == "all" or int(micro) >= 1), line
        assert (micro == "all") == (whole <= 80 * 0.85), line
