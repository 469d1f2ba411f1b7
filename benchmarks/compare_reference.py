"""Weight-for-weight comparison with the paper's reference code (alexiglad/EBT), and a
same-run timing of both.

    python benchmarks/compare_reference.py --ref /path/to/EBT-checkout

The reference is not vendored (its code is not ours to ship) and not a dependency: point
--ref (or $EBT_REFERENCE) at a checkout. Its model files import Lightning, torchmetrics,
torchvision, diffusers, PIL and transformers at module level although the text EBT uses
none of them; whichever is not installed is replaced by an inert stand-in so that only
torch is needed. Its tokenizer is replaced by a byte vocabulary of --vocab symbols (no
network). Nothing of the reference's arithmetic is replaced.

What it checks, for Transformer++, EBT S1 (time_embed, 2 steps, full second order, mean
loss) and EBT S2 (default, truncated second order, final loss):
  1. our weights are copied into the reference model (a name map; every tensor of both
     models must be used exactly once);
  2. the same tokens and the same initial logits y0 go through both, with the same RNG
     state (so Langevin noise draws are the same): the logits after every thinking step,
     the energies, the loss, and the gradient of every parameter are compared;
  3. a training step (loss + backward + clip + AdamW) of each is timed in the same run.
Latest figures: benchmarks/RESULTS-reference.md.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ebt_scaling.config import config_from_dict
from ebt_scaling.models.registry import build_model
from ebt_scaling.train.loop import flush_denormals


# ----------------------------------------------------------------------- loading the reference
class _HParams(dict):
    """Attribute access over a dict, as Lightning's AttributeDict."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


class _LightningModule(nn.Module):
    @property
    def hparams(self):
        if "_hp" not in self.__dict__:
            self.__dict__["_hp"] = _HParams()
        return self.__dict__["_hp"]

    @property
    def device(self):
        return torch.device("cpu")


class _Inert:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        raise RuntimeError("inert stand-in for a package the text EBT does not use")


def _stub(name: str, **attrs):
    try:
        importlib.import_module(name)
        return
    except Exception:
        pass
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)


def load_reference(ref: Path):
    if not (ref / "model" / "nlp" / "ebt.py").exists():
        raise SystemExit(f"--ref {ref}: no model/nlp/ebt.py there; point it at a checkout of alexiglad/EBT")
    _stub("pytorch_lightning", LightningModule=_LightningModule)
    _stub("torchmetrics", Accuracy=_Inert)
    _stub("torchvision", __path__=[])
    _stub("torchvision.transforms", ToPILImage=_Inert, __path__=[])
    _stub("torchvision.transforms.functional")
    _stub("torchvision.models")
    _stub("torchvision.utils", make_grid=_Inert(), save_image=_Inert())
    _stub("diffusers", AutoencoderKL=_Inert)
    _stub("PIL", Image=_Inert, __path__=[])
    _stub("transformers", AutoTokenizer=_Inert)
    sys.path.insert(0, str(ref))
    importlib.import_module("model")
    if not (ref / "model" / "replay_buffer.py").exists():
        _stub("model.replay_buffer", CausalReplayBuffer=_Inert)
    ebt = importlib.import_module("model.nlp.ebt")
    base = importlib.import_module("model.nlp.baseline_transformer")
    return ebt, base


class _ByteTokenizer:
    def __init__(self, n):
        self.n, self.eos_token_id = n, 0

    def __len__(self):
        return self.n


def reference_hparams(kind: str, L: int, d: int, h: int, S: int, B: int, V: int, alpha: float, noise: float):
    """The reference's knobs for our presets (recipe section 4), thinking fixed at 2 steps."""
    return _HParams(
        tokenizer="bytes", embedding_dim=d, num_transformer_blocks=L, multiheaded_attention_heads=h,
        context_length=S, batch_size_per_device=B, ffn_dim_multiplier=None, weight_initialization_method="xavier",
        weight_initialization_gain=1.0, ebt_norm="rms", ebt_act_func="silu", dyt_alpha_init=0.5,
        execution_mode="pretrain", debug_unused_parameters=False,
        # EBT
        # both presets have step tokens (time_embed): S1 two landscapes of one step each, S2 one
        # landscape (one token) walked twice, as its job script does (2 steps, no randomness here)
        ebt_type="time_embed", mcmc_num_steps=2 if kind == "ebt_s1" else 1, mcmc_step_size=alpha,
        mcmc_step_size_learnable=kind == "ebt_s1", langevin_dynamics_noise=noise, vocab_to_embed_uses_prob_dist=False,
        num_modality_processing_mlp_layers=1, mcmc_replay_buffer=False, randomize_mcmc_step_size_scale=1,
        randomize_mcmc_num_steps=0 if kind == "ebt_s1" else 1, randomize_mcmc_num_steps_final_landscape=False,
        randomize_mcmc_num_steps_min=0,
        no_mcmc_detach=False, normalize_initial_condition=True, normalize_initial_condition_only_first_step=False,
        truncate_mcmc=kind == "ebt_s2", clamp_futures_grad=False, clamp_futures_grad_max_change=0.0,
        absolute_clamp=0.0, sharpen_predicted_distribution=0.0, denoising_initial_condition="random_noise",
        gaussian_random_noise_scaling=1.0)


def build_reference(mods, hp, V):
    ebt_mod, base_mod = mods
    cls_mod = base_mod if hp.ebt_type == "baseline" else ebt_mod
    cls_mod.AutoTokenizer = types.SimpleNamespace(from_pretrained=lambda *a, **k: _ByteTokenizer(V))
    return (base_mod.Baseline_Transformer_NLP if hp.ebt_type == "baseline" else ebt_mod.EBT_NLP)(hp)


# ----------------------------------------------------------------------- the weight map
def name_map(ours: nn.Module, kind: str) -> dict[str, str]:
    """Our parameter name -> the reference's."""
    m = {"tok_embeddings.weight": "embeddings.weight", "norm.weight": "transformer.norm.weight"}
    if kind == "transformer_pp":
        m["output.weight"] = "output.weight"
    else:
        m.update({"prob_embed.weight": "vocab_to_embed.weight", "alpha": "alpha",
                  "energy_head.weight": "transformer.final_layer.weight"})
        m["step_embeddings.weight"] = "transformer.time_embeddings.weight"
    for i in range(len(ours.layers)):
        for a, b in [("attention.wq", "attention.wq"), ("attention.wk", "attention.wk"),
                     ("attention.wv", "attention.wv"), ("attention.wo", "attention.wo"),
                     ("attention_norm", "attention_norm"), ("ffn_norm", "ffn_norm"),
                     ("ffn.w1", "feed_forward.w1"), ("ffn.w2", "feed_forward.w2"), ("ffn.w3", "feed_forward.w3")]:
            m[f"layers.{i}.{a}.weight"] = f"transformer.layers.{i}.{b}.weight"
    return m


def copy_weights(ours: nn.Module, ref: nn.Module, kind: str) -> dict[str, str]:
    m = name_map(ours, kind)
    op, rp = dict(ours.named_parameters()), dict(ref.named_parameters())
    # the reference also registers its (frozen) Langevin std as a parameter; it is a setting
    rp_used = {k for k in rp if k != "langevin_dynamics_noise_std"}
    if set(m) != set(op) or set(m.values()) != rp_used:
        raise AssertionError(f"unmapped: ours {sorted(set(op) - set(m))}, reference {sorted(rp_used - set(m.values()))}")
    with torch.no_grad():
        for a, b in m.items():
            if op[a].shape != rp[b].shape:
                raise AssertionError(f"{a} {tuple(op[a].shape)} vs {b} {tuple(rp[b].shape)}")
            rp[b].copy_(op[a])
    return m


# ----------------------------------------------------------------------- one pass of each
def our_config(kind, L, d, h, S, V, alpha, noise):
    c = {"model": {"family": "transformer_pp" if kind == "transformer_pp" else "ebt", "n_layers": L, "d_model": d,
                   "n_heads": h, "vocab_size": V}, "data": {"seq_len": S}, "train": {"steps": 1}}
    if kind != "transformer_pp":
        c["ebt"] = {"preset": kind, "alpha": alpha, "langevin_std": noise, "steps": 2, "replay_buffer": 0,
                    "random_extra_steps": 0, "alpha_random_scale": 1.0}
    return config_from_dict(c)


def ours_forward(model, kind, x, t, y0, seed):
    """Loss, logits after each step (EBT: one per step), mean energy of each step's input (EBT)."""
    if kind == "transformer_pp":
        logits = model(x)
        return F.cross_entropy(logits.flatten(0, 1), t.flatten()), [logits], []
    torch.manual_seed(seed)
    e = model.e
    logits, energies = model.think(x, e.steps, y0=y0.clone(), learning=True, randomize=False, noise=True)
    ce = [F.cross_entropy(y.flatten(0, 1), t.flatten()) for y in logits]
    loss = ce[-1] if e.loss == "final" else torch.stack(ce).mean()
    return loss, logits, [float(v) for v in energies]


def ref_forward(ref, kind, x, t, y0, seed):
    if kind == "transformer_pp":
        logits = ref(x, return_raw_logits=True)
        return F.cross_entropy(logits.flatten(0, 1), t.flatten()), [logits], []
    ref.corrupt_embeddings = lambda emb: y0.clone()
    torch.manual_seed(seed)
    dists, energies = ref(x, learning=True, return_raw_logits=True, no_randomness=True)
    ce = [F.cross_entropy(y.reshape(-1, y.shape[-1]), t.flatten()) for y in dists]
    loss = ce[-1] if ref.hparams.truncate_mcmc else torch.stack(ce).mean()
    return loss, dists, [float(v.detach().mean()) for v in energies]


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def build_pair(mods, kind, L, d, h, S, B, V, alpha, noise, seed=0):
    """Our model and the reference's, the latter holding a copy of our weights."""
    torch.manual_seed(seed)
    ours = build_model(our_config(kind, L, d, h, S, V, alpha, noise))
    hp = reference_hparams(kind, L, d, h, S, B, V, alpha, noise)
    if kind == "transformer_pp":
        hp["ebt_type"] = "baseline"
    ref = build_reference(mods, hp, V)
    copy_weights(ours, ref, kind)
    return ours, ref


def compare(mods, kind, L, d, h, S, B, V, alpha, noise, seed=0):
    ours, ref = build_pair(mods, kind, L, d, h, S, B, V, alpha, noise, seed)
    g = torch.Generator().manual_seed(seed + 1)
    seq = torch.randint(0, V, (B, S + 1), generator=g)
    x, t = seq[:, :-1], seq[:, 1:]
    y0 = torch.randn(B, S, V, generator=g)
    lo, yo, eo = ours_forward(ours, kind, x, t, y0, seed)
    lr, yr, er = ref_forward(ref, kind, x, t, y0, seed)
    lo.backward()
    lr.backward()
    lo_, lr_ = float(lo.detach()), float(lr.detach())
    out = {"loss ours": lo_, "loss ref": lr_, "loss rel diff": abs(lo_ - lr_) / abs(lr_)}
    out["logits max rel diff (per step)"] = [rel(a.detach(), b.detach().reshape(a.shape)) for a, b in zip(yo, yr)]
    if eo:
        out["mean energy ours / ref (per step)"] = [f"{a:.7g} / {b:.7g}" for a, b in zip(eo, er)]
        out["mean energy rel diff (per step)"] = [abs(a - b) / abs(b) for a, b in zip(eo, er)]
    m = name_map(ours, kind)
    rp = dict(ref.named_parameters())
    worst = max(((rel(p.grad, rp[m[n]].grad), n) for n, p in ours.named_parameters() if p.grad is not None))
    out["grad max rel diff"] = worst
    out["params with a gradient (ours, reference)"] = (sum(p.grad is not None for p in ours.parameters()),
                                                       sum(p.grad is not None for p in ref.parameters()))
    return out


# ----------------------------------------------------------------------- same-run timing
def time_steps(step, repeats):
    ts = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        step()
        if i >= 2:
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def timing(mods, kind, L, d, h, S, B, V, alpha, noise, repeats):
    ours, ref = build_pair(mods, kind, L, d, h, S, B, V, alpha, noise)
    seq = torch.randint(0, V, (B, S + 1))
    x, t = seq[:, :-1], seq[:, 1:]
    res = {}
    for name, model, fwd in [("ours", ours, ours_forward), ("reference", ref, ref_forward)]:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

        def step():
            y0 = torch.randn(B, S, V)
            loss, _, _ = fwd(model, kind, x, t, y0, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        res[name] = time_steps(step, repeats)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=os.environ.get("EBT_REFERENCE"), help="checkout of alexiglad/EBT")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-flush", action="store_true", help="leave denormals unflushed (both models)")
    ap.add_argument("--timing-only", action="store_true")
    args = ap.parse_args()
    if not args.ref:
        raise SystemExit("give --ref PATH (or set EBT_REFERENCE) to a checkout of alexiglad/EBT")
    if not args.no_flush:
        flush_denormals()
    mods = load_reference(Path(args.ref))
    V = args.vocab
    print(f"# Weight-for-weight against the reference ({args.ref}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fp32, V={V}\n")
    for kind, alpha, noise in [] if args.timing_only else [
            ("transformer_pp", 0, 0), ("ebt_s2", 1.33, 3.0), ("ebt_s1", 13.3, 0.0), ("ebt_s1", 1.33, 0.0)]:
        r = compare(mods, kind, L=2, d=32, h=2, S=16, B=3, V=V, alpha=alpha, noise=noise)
        print(f"## {kind} (L2 d32, ctx 16, batch 3, fp32, alpha {alpha}, Langevin std {noise})")
        for k, v in r.items():
            print(f"- {k}: {v}")
        print()
    if args.no_timing:
        return
    print("## Training step, same run (L2 d128, 2 heads, ctx 128, batch 16, fp32; medians of "
          f"{args.repeats} after 2 warm-up; loss + backward + clip + AdamW; EBTs at 2 steps, no replay; "
          f"denormals {'not ' if args.no_flush else ''}flushed)\n")
    print("| model | ours ms | reference ms | reference / ours |\n|---|---|---|---|")
    for kind, alpha, noise in [("transformer_pp", 0, 0), ("ebt_s1", 133.0, 0.0), ("ebt_s2", 1.33, 3.0)]:
        r = timing(mods, kind, L=2, d=128, h=2, S=128, B=16, V=V, alpha=alpha, noise=noise, repeats=args.repeats)
        print(f"| {kind} | {r['ours'] * 1e3:.0f} | {r['reference'] * 1e3:.0f} | {r['reference'] / r['ours']:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
