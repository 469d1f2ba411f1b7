"""The EBT must be the paper's EBT and must think: no leakage, right gradients, the
efficient attention equal to the naive one, energy that falls as it thinks."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ebt_scaling import flops as FL
from ebt_scaling.config import config_from_dict
from ebt_scaling.models.ebt import EBT
from ebt_scaling.models.layers import rope_tables
from ebt_scaling.results.store import MemorySink
from ebt_scaling.train import train
from ebt_scaling.train.think import system2


def ebt_cfg(preset="ebt_s2", V=24, S=10, L=2, d=32, h=2, **ebt):
    return config_from_dict({"model": {"family": "ebt", "n_layers": L, "d_model": d, "n_heads": h, "vocab_size": V},
                             "ebt": {"preset": preset, **ebt}, "data": {"seq_len": S}, "train": {"steps": 1}})


def rand_inputs(cfg, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    V, S = cfg.model.vocab_size, cfg.data.seq_len
    return torch.randint(0, V, (B, S), generator=g), torch.softmax(torch.randn(B, S, V, generator=g), -1)


@pytest.mark.parametrize("preset", ["ebt_s1", "ebt_s2"])
def test_no_leakage_from_future_tokens_or_other_candidates(preset):
    torch.manual_seed(0)
    cfg = ebt_cfg(preset)
    m = EBT(cfg).eval()
    x, p = rand_inputs(cfg)
    i = 4
    E = m.energy(m.context(x, step=0), p)
    x2 = x.clone()
    x2[:, i + 1:] = (x2[:, i + 1:] + 3) % cfg.model.vocab_size             # observed tokens j > i
    p2 = p.clone()
    p2[:, [0, 2, i + 1, i + 3]] = torch.softmax(torch.randn_like(p2[:, [0, 2, i + 1, i + 3]]), -1)  # other candidates
    E2 = m.energy(m.context(x2, step=0), p2)
    assert torch.allclose(E[:, i], E2[:, i], atol=1e-6)
    # and the energy does depend on what position i may see
    x3 = x.clone()
    x3[:, i] = (x3[:, i] + 1) % cfg.model.vocab_size
    p3 = p.clone()
    p3[:, i] = torch.softmax(torch.randn_like(p3[:, i]), -1)
    assert not torch.allclose(E[:, i], m.energy(m.context(x3, step=0), p)[:, i], atol=1e-5)
    assert not torch.allclose(E[:, i], m.energy(m.context(x, step=0), p3)[:, i], atol=1e-5)


def naive_energy(m: EBT, x, p, step: int = 0):
    """The paper's scheme as one masked attention over [step token?; observed; predicted]
    (the reference's time_embed puts the step token first)."""
    B, S = x.shape
    parts = [m.tok_embeddings(x)]
    if m.step_embeddings is not None:
        idx = min(step, m.step_embeddings.num_embeddings - 1)
        parts.insert(0, m.step_embeddings.weight[idx].expand(B, 1, -1))
    P = len(parts) - 1                                     # 1 with a step token
    h = torch.cat(parts + [m.prob_embed(p)], dim=1)        # (B, P + 2S, D)
    O = P + S                                              # observed stream, prefix included
    pos = torch.cat([torch.arange(O), torch.arange(P + 1, P + S + 1)])
    cos, sin = rope_tables(pos, m.head_dim, m.cfg.model.rope_theta)
    i = torch.arange(O)
    allow = torch.zeros(O + S, O + S, dtype=torch.bool)
    allow[:O, :O] = i[:, None] >= i[None, :]              # observed: causal
    j = torch.arange(S)
    allow[O:, :O] = (j[:, None] + P) >= i[None, :]        # prediction j: the prefix and observed 0..j
    allow[O + j, O + j] = True                            # ... and itself
    for layer in m.layers:
        q, k, v = layer.attention.heads(layer.attention_norm(h), cos, sin)
        h = h + layer.attention.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=allow))
        h = layer.mlp_residual(h)
    return m.energy_head(m.norm(h[:, O:])).squeeze(-1)


@pytest.mark.parametrize("preset,step", [("ebt_s2", 0), ("ebt_s2", 2), ("ebt_s1", 1)])
def test_efficient_attention_equals_naive_masked_attention(preset, step):
    torch.manual_seed(1)
    cfg = ebt_cfg(preset, V=30, S=12, L=3, d=48, h=3)
    m = EBT(cfg).eval()
    for seed in range(3):
        x, p = rand_inputs(cfg, B=3, seed=seed)
        assert torch.allclose(m.energy(m.context(x, step=step), p), naive_energy(m, x, p, step), atol=1e-5)


def test_s2_has_one_step_token_seen_at_every_step_and_s1_one_per_step():
    """S2 as the reference's job script runs it (time_embed, one landscape): one learned
    token in front of the context, the same at every step; S1: one per step."""
    s2 = EBT(ebt_cfg("ebt_s2"))
    s1 = EBT(ebt_cfg("ebt_s1"))
    assert s2.step_embeddings.num_embeddings == 1 and not s2.per_step_context
    assert s1.step_embeddings.num_embeddings == s1.e.max_steps == 2 and s1.per_step_context
    x, _ = rand_inputs(ebt_cfg("ebt_s2"))
    for a, b in zip(s2.context(x, step=0)[0], s2.context(x, step=2)[0]):
        assert torch.equal(a, b)
    with torch.no_grad():
        s2.step_embeddings.weight.add_(1.0)                # the token does reach the energy
    p = torch.softmax(torch.randn(x.shape[0], x.shape[1], s2.vocab_size), -1)
    e_new = s2.energy(s2.context(x), p)
    with torch.no_grad():
        s2.step_embeddings.weight.sub_(1.0)
    assert not torch.allclose(e_new, s2.energy(s2.context(x), p), atol=1e-5)


def test_thinking_gradients_pass_gradcheck_in_float64():
    torch.manual_seed(2)
    cfg = ebt_cfg("ebt_s2", V=7, S=4, L=1, d=8, h=2, alpha=0.7)
    m = EBT(cfg).double().eval()
    x = torch.randint(0, 7, (1, 4))
    kvs = m.context(x)
    y = torch.randn(1, 4, 7, dtype=torch.float64, requires_grad=True)

    def energy_of_logits(y):                      # first order: dE/dp through softmax
        return m.energy(kvs, torch.softmax(y, -1)).sum()

    def step(y):                                  # one thinking step, graph kept (second order)
        p = torch.softmax(y, -1)
        (g,) = torch.autograd.grad(m.energy(kvs, p).sum(), p, create_graph=True)
        return p - m.alpha * g

    assert torch.autograd.gradcheck(energy_of_logits, (y,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(step, (y,), eps=1e-6, atol=1e-5)
    # the parameter gradient of the step's output needs d2E/dp dtheta: check one weight too
    from torch.func import functional_call

    class Step(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.m = model

        def forward(self, y):
            p = torch.softmax(y.clone().requires_grad_(), -1)
            (g,) = torch.autograd.grad(self.m.energy(self.m.context(x), p).sum(), p, create_graph=True)
            return p - self.m.alpha * g

    wrapper, name = Step(m), "m.layers.0.ffn.w2.weight"
    W = m.layers[0].ffn.w2.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda w: functional_call(wrapper, {name: w}, (y.detach(),)), (W,),
                                    eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("preset", ["ebt_s1", "ebt_s2"])
def test_ebt_flops_match_flop_counter(preset):
    """Analytic EBT training FLOPs (matmuls) against FlopCounterMode, attention on the
    math kernel so that the observed stream's attention is counted too. Tolerance 2%:
    flops.py charges every graph-keeping step 6x its forward, while autograd skips or adds
    a few small products (measured: within 1.2% at L2 d32 and L3 d48, both presets)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    cfg = ebt_cfg(preset, V=40, S=12, L=2, d=32, h=2, random_extra_steps=0, replay_buffer=0)
    m = EBT(cfg)
    x = torch.randint(0, 40, (3, 13))

    def step():
        loss, _ = m.loss(x[:, :-1], x[:, 1:])
        loss.backward()

    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as fc:
        step()
    expected = FL.ebt_train_flops_per_token(cfg, steps=cfg.ebt.steps) * 3 * 12
    assert fc.get_total_flops() == pytest.approx(expected, rel=0.02)


def test_nan_in_thinking_gradient_fails_the_point_with_reason():
    cfg = config_from_dict({"model": {"family": "ebt", "n_layers": 1, "d_model": 16, "n_heads": 2},
                            "ebt": {"preset": "ebt_s2"},
                            "data": {"source": "markov", "markov_vocab": 16, "seq_len": 8},
                            "train": {"batch_size": 4, "steps": 5, "eval_every": 5, "eval_tokens": 64}})
    # a NaN that validation would refuse in YAML (init_std: .nan), set past it to reach the gradient
    cfg = dataclasses.replace(cfg, ebt=dataclasses.replace(cfg.ebt, init_std=float("nan")))
    s = train(cfg, MemorySink())
    assert s.status == "failed" and "NaN/Inf in dE/dp at thinking step 1" in s.error


# ----------------------------------------------------------------- it learns and thinks
@pytest.fixture(scope="module")
def trained_s2(tmp_path_factory):
    cfg = config_from_dict({"model": {"family": "ebt", "n_layers": 2, "d_model": 32, "n_heads": 2},
                            "ebt": {"preset": "ebt_s2"},
                            "data": {"source": "markov", "markov_vocab": 32, "seq_len": 32},
                            "train": {"batch_size": 16, "steps": 200, "eval_every": 200, "eval_tokens": 1024,
                                      "log_every": 50},
                            "optim": {"lr": 3e-3}})
    from ebt_scaling.data import build_source
    from ebt_scaling.train.loop import with_vocab
    cfg = with_vocab(cfg, 32)
    sink = MemorySink()
    # train, then read the model back from its checkpoint as `ebt-sweep think` does
    ck = str(tmp_path_factory.mktemp("ck"))
    from dataclasses import replace
    cfg = replace(cfg, train=replace(cfg.train, checkpoint_dir=ck))
    summary = train(cfg, sink)
    assert summary.status == "ok", summary.error
    from ebt_scaling.train.think import load_point
    cfg2, model, _ = load_point(f"{ck}/last.pt")
    return cfg2, model, summary, build_source(cfg.data)


def test_trained_ebt_learns_below_unigram(trained_s2):
    cfg, model, summary, src = trained_s2
    assert summary.val_loss < math.log(32) - 0.5


def test_energy_falls_and_loss_improves_with_thinking(trained_s2):
    cfg, model, _, src = trained_s2
    torch.manual_seed(0)
    batch = next(iter(src.val_batches(512, 16, 32)))
    x, t = batch[:, :-1], batch[:, 1:]
    logits, energies = model.think(x, 3, learning=False, randomize=False, noise=False, final_energy=True)
    e = [float(v) for v in energies]
    # energy at the start (random logits) > after one step > after the last step
    assert e[0] > e[1] and e[0] > e[-1] and min(e[1:]) == pytest.approx(min(e), abs=1e-6), e
    ce = [float(F.cross_entropy(y.detach().flatten(0, 1), t.flatten())) for y in logits]
    assert ce[2] < ce[0], ce


def test_best_of_n_never_worse_in_energy(trained_s2):
    cfg, model, _, _ = trained_s2
    rows, tokens, seqs = system2(cfg, model, sets=("val",), steps=(1, 3), candidates=(1, 2, 5), n_tokens=512)
    # per-sequence losses add up to each row's loss
    for r in rows:
        g = seqs[(seqs.think_steps == r.think_steps) & (seqs.n_candidates == r.n_candidates)]
        assert g.loss_sum.sum() / g.n_tokens.sum() == pytest.approx(r.val_loss, rel=1e-9)
    by_n = {r.n_candidates: r for r in rows if r.think_steps == 3}
    assert set(by_n) == {1, 2, 5} and all(r.forward_passes == 3 * n for n, r in by_n.items())
    # the first candidate is the think-longer chain, so N = 1 and the chain agree
    assert by_n[5].energy_last <= by_n[2].energy_last <= by_n[1].energy_last
    assert by_n[5].energy_last < by_n[1].energy_last         # fresh candidates do win somewhere
    assert all(r.energy_first == by_n[1].energy_first for r in rows)
    assert tokens is not None and {"token", "energy", "loss"} <= set(tokens.columns)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ebt_s1", "ebt_s2"])
def test_s1_s2_stay_finite_for_hundreds_of_steps(preset):
    cfg = config_from_dict({"model": {"family": "ebt", "n_layers": 2, "d_model": 32, "n_heads": 2},
                            "ebt": {"preset": preset}, "data": {"seq_len": 32},
                            "train": {"batch_size": 8, "steps": 300, "eval_every": 100, "eval_tokens": 512,
                                      "log_every": 25}})
    sink = MemorySink()
    s = train(cfg, sink)
    assert s.status == "ok", s.error
    assert all(math.isfinite(r.train_loss) for r in sink.rows if r.kind == "train")
    assert s.val_loss < math.log(256)


def test_replay_ring_holds_and_picks_what_a_plain_fifo_would():
    """The full buffer is a ring written in place (_replay_push): over pushes of uneven
    sizes, its FIFO view and the rows a step replays equal those of cat-and-truncate."""
    cap = 7
    m = EBT(ebt_cfg("ebt_s2", V=5, S=3, replay_buffer=cap, replay_fraction=0.5))
    fifo = None
    g = torch.Generator().manual_seed(0)
    for push, b in enumerate([3, 2, 4, 1, 5, 9, 2, 6, 3]):
        new = (torch.randint(0, 5, (b, 3), generator=g), torch.randint(0, 5, (b, 3), generator=g),
               torch.randn(b, 3, 5, generator=g).to(m.replay_dtype))
        m._replay_push(*new)
        fifo = new if fifo is None else tuple(torch.cat([f, v])[-cap:] for f, v in zip(fifo, new))
        held = m._replay["inputs"].shape[0]
        order = (torch.arange(held) + m._replay_start) % held          # FIFO position -> ring row
        for f, k in zip(fifo, ("inputs", "targets", "logits")):
            assert torch.equal(m._replay[k][order], f), (push, k)
        x = torch.randint(0, 5, (4, 3), generator=g)
        torch.manual_seed(push)
        inp, tgt, y0, _ = m._with_replay(x, x)
        torch.manual_seed(push)
        torch.randn(4, 3, 5)                                            # the y0 draw
        pick = torch.randperm(held)[:min(2, held)]
        assert torch.equal(inp[4:], fifo[0][pick]) and torch.equal(tgt[4:], fifo[1][pick])
        assert torch.equal(y0[4:], fifo[2][pick].to(y0.dtype))
    state = m.extra_state()
    m2 = EBT(ebt_cfg("ebt_s2", V=5, S=3, replay_buffer=cap, replay_fraction=0.5))
    m2.load_extra_state(state)
    assert m2._replay_start == m._replay_start and m2._replay_start != 0     # it wrapped
