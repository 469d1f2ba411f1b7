"""`plan(spec) -> list[Trial]`: expand a sweep spec into fully resolved training points.

Pure: no files, no clocks, no hardware probes. For every point of the axis grid, every
family and every seed: start from the spec's base config, set the family, apply the
axis values, then the scaling rules (lr, batch, tokens from N), resolve and validate
the config (config.py), and estimate FLOPs and wall time (flops.py).

An isoFLOP axis (`flops: {budgets, sizes}`) gives, per budget and size, the token
budget D = C / (training FLOPs per token of that family at that size), rounded to
whole batches: at equal compute an EBT, costlier per token, sees fewer tokens.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..config import Config, ConfigError, brief, config_from_dict, from_dict, load_yaml
from ..data.tokenizers import SHIPPED
from ..flops import non_embedding_params, tpp_forward_flops_per_token, train_flops_per_token
from .rules import RULES
from .spec import AXES, AxisSize, SweepSpec, spec_from_dict
from .trial import Trial

# Vocabulary sizes of tokenizers the planner can cost without loading them.
KNOWN_VOCAB = {"byte": 256, "EleutherAI/gpt-neox-20b": 50277, "gpt2": 50257, **SHIPPED}
# When a spec sets est_flops_per_s (instead of the measured rates of rates.json):
EST_OVERHEAD_S = 3.0      # per trial: start-up, data loading, first evaluation
EBT_EFFICIENCY = 0.55     # EBTs reach ~0.55x of T++'s FLOP/s (small matmuls, autograd through thinking)


def load_plan(path: str | Path, scale: str) -> tuple[SweepSpec, list[Trial]]:
    """The spec at `path` with its `scale` preset, and its trials. Every other preset is
    planned too (and dropped): a point config that only the paper preset makes wrong
    stops a cpu launch before any work, as it would a paper one."""
    data = load_yaml(path)
    spec = spec_from_dict(data, str(path), scale)
    for other in spec.scales:
        if other != spec.scale:
            plan(spec_from_dict(data, str(path), other))
    return spec, plan(spec)


def plan(spec: SweepSpec) -> list[Trial]:
    from_dict(Config, copy.deepcopy(spec.base), f"{_source(spec)}: base.")   # types and ranges, before any use
    trials: list[Trial] = []
    seen: set[str] = set()
    for point in grid(spec):
        for family in spec.families:
            for seed in spec.seeds:
                t = make_trial(spec, point, family, seed)
                if t.id not in seen:        # two grid points that resolve alike train once
                    seen.add(t.id)
                    trials.append(t)
    return trials


def grid(spec: SweepSpec) -> list[dict]:
    """The axis grid as a list of {axis: value}, in the spec's axis order (flops expands
    to one point per (budget, size))."""
    lists = []
    for name in AXES:
        if name not in spec.axes:
            continue
        if name == "flops":
            budgets, sizes = spec.axes["flops"]
            lists.append([{"flops": b, "size": s} for b in budgets for s in sizes])
        else:
            lists.append([{name: v} for v in spec.axes[name]])
    points = []
    for combo in itertools.product(*lists):
        p: dict = {}
        for part in combo:
            p.update(part)
        points.append(p)
    return points


def vocab_size(cfg: Config, where: str = "") -> int:
    """The vocabulary the data will bring (train() fills it in; FLOPs need it now).
    `where` (the spec and trial) prefixes the message when it is unknown."""
    if cfg.model.vocab_size:
        return cfg.model.vocab_size
    if cfg.data.source == "markov":
        return cfg.data.markov_vocab
    if cfg.data.tokenizer in KNOWN_VOCAB:
        return KNOWN_VOCAB[cfg.data.tokenizer]
    raise ConfigError(f"{where + ': ' if where else ''}data.tokenizer: the planner does not know the vocabulary of "
                      f"{brief(cfg.data.tokenizer)}; set base.model.vocab_size to it so FLOPs can be estimated")


def make_trial(spec: SweepSpec, point: dict, family: str, seed: int) -> Trial:
    label = " ".join(f"{k}={_show(v)}" for k, v in point.items()) or "base"
    where = f"{_source(spec)} [trial {family} {label} seed {seed}] base"
    d = {k: v for k, v in copy.deepcopy(spec.base).items() if v is not None}
    d.pop("seed", None)
    d["seed"] = seed
    d["name"] = f"{spec.name}-{family}-{label.replace(' ', '-').replace('=', '')}-s{seed}"
    model = d.setdefault("model", {})
    if family == "transformer_pp":
        model["family"] = "transformer_pp"
        d.pop("ebt", None)              # ignored by T++; kept out so it does not change the id
    else:
        model["family"] = "ebt"
        d.setdefault("ebt", {})["preset"] = family
    train = d.setdefault("train", {})
    optim = d.setdefault("optim", {})
    seq_len = from_dict(Config, copy.deepcopy(d), f"{where}: ").data.seq_len

    size = point.get("size")
    if isinstance(size, AxisSize):
        for k in ("n_layers", "d_model", "n_heads"):
            model.pop(k, None)
        if size.size:
            model["size"] = size.size
        else:
            model.update(size="", n_layers=size.n_layers, d_model=size.d_model, n_heads=size.n_heads)
    if "depth" in point:
        model["n_layers"] = point["depth"]
    if "width" in point:
        model["d_model"] = point["width"]
        if spec.head_dim:
            if point["width"] % spec.head_dim:
                raise ConfigError(f"{spec.path}: axes.width: {point['width']} is not a multiple of "
                                  f"head_dim {spec.head_dim}")
            model["n_heads"] = point["width"] // spec.head_dim
    if "batch_size" in point:
        train["batch_size"] = point["batch_size"]
    if "tokens" in point:
        train.update(tokens=max(seq_len, _round_to(point["tokens"], seq_len)), steps=0)

    if ("flops" in point or spec.rules["tokens"][0] != "constant") and not (train.get("tokens") or train.get("steps")):
        train["tokens"] = seq_len       # a placeholder until the budget is known (below)
    cfg = _resolve(d, where)
    vocab_size(cfg, where)      # known, or an error that names the trial
    n = non_embedding_params(cfg)
    for kind, (rule, kwargs) in spec.rules.items():
        if rule == "constant":
            continue
        try:
            value = RULES[kind][rule](n, **kwargs)
            value = float(value) if kind == "lr" else int(value)
        except (ValueError, OverflowError, ZeroDivisionError) as err:
            raise ConfigError(f"{_source(spec)}: rules.{kind}: {rule} gives no usable value at N = {n:,} "
                              f"({type(err).__name__}: {str(err)[:100]}); change its options") from None
        if kind == "lr":
            optim["lr"] = float(value)
        elif kind == "batch":
            train["batch_size"] = int(value)
        elif kind == "tokens":
            bt = int(train.get("batch_size", cfg.train.batch_size)) * seq_len
            train.update(tokens=max(bt, _round_up(value, bt)), steps=0)
    cfg = _resolve(d, where)

    if "flops" in point:   # isoFLOP: tokens from the budget and this family's cost per token
        fpt = train_flops_per_token(_with_vocab(cfg))
        bt = cfg.batch_tokens
        tokens = max(bt, _round_to(point["flops"] / fpt, bt))
        train.update(tokens=tokens, steps=0)
        cfg = _resolve(d, where)
    if cfg.train.checkpoint_every == 0:   # a killed trial loses at most ~10% or 10 minutes
        train["checkpoint_every"] = max(1, math.ceil(cfg.total_steps / 10))
        train.setdefault("checkpoint_minutes", 10.0)
        cfg = _resolve(d, where)
    if spec.resources.gpus > 1 and not cfg.train.data_parallel:   # a trial given k GPUs trains on all k
        train["data_parallel"] = int(spec.resources.gpus)
        cfg = _resolve(d, where)

    flops, est = estimate(cfg, spec)
    shown = {k: _show(v) for k, v in point.items()}
    return Trial(id=cfg.hash(), family=family, config=cfg, sweep=spec.name, seed=seed,
                 resources=spec.resources, flops=flops, est_seconds=est, point=shown)


def work_flops(cfg: Config) -> tuple[float, float]:
    """(training FLOPs, training + evaluation FLOPs) of a point: evaluations are forward
    only (for an EBT about a third of a training step per token)."""
    c = _with_vocab(cfg)
    train_flops = train_flops_per_token(c) * cfg.total_tokens
    eval_fwd = (train_flops_per_token(c) / 3) if cfg.is_ebt else tpp_forward_flops_per_token(c)
    return float(train_flops), float(train_flops + eval_tokens(cfg) * eval_fwd)


def eval_tokens(cfg: Config) -> int:
    """Tokens a point evaluates over its run: every eval_every steps and once at the end."""
    return (cfg.total_steps // cfg.train.eval_every + 1) * cfg.train.eval_tokens


def vocab_elements(cfg: Config) -> float:
    """Tokens x vocabulary over training and evaluation: the (B, S, V) tensors' elementwise
    work (softmax, its gradient, the EBT's predicted distributions), which FLOP counts of
    matmuls miss and which dominates small models at large V (measured: the 4096-token
    BPE sweeps took 1.4x what FLOPs alone predicted)."""
    return float(vocab_size(cfg)) * (cfg.total_tokens + eval_tokens(cfg))


def estimate(cfg: Config, spec: SweepSpec) -> tuple[float, float]:
    """(training FLOPs, estimated seconds): overhead + steps x step cost + work / rate
    + tokens x V x a per-element cost, with this family's measured figures at this scale
    from rates.json, or the spec's est_flops_per_s when it sets one."""
    train_flops, work = work_flops(cfg)
    r = rate_for(spec, cfg.family_name)
    return train_flops, (r["overhead_s"] + cfg.total_steps * r["step_s"] + work / r["flops_per_s"]
                         + vocab_elements(cfg) * r["vocab_element_s"])


def rates() -> dict:
    """The measured rates the planner's estimates use (ebt_scaling/sweep/rates.json,
    written by benchmarks/calibrate_rates.py)."""
    global _RATES
    if _RATES is None:
        _RATES = json.loads((Path(__file__).with_name("rates.json")).read_text())
    return _RATES


_RATES: dict | None = None


def rate_for(spec: SweepSpec, family: str) -> dict[str, float]:
    """{"flops_per_s", "step_s", "overhead_s", "vocab_element_s"} for `family` at the spec's scale."""
    if spec.est_flops_per_s > 0:      # the spec says; EBTs reach a lower share of it
        rate = spec.est_flops_per_s * (EBT_EFFICIENCY if family.startswith("ebt") else 1.0)
        return {"flops_per_s": rate, "step_s": 0.0, "overhead_s": EST_OVERHEAD_S, "vocab_element_s": 0.0}
    table = rates().get(spec.scale or "cpu") or rates()["cpu"]
    fams = table["families"]
    # a family not measured: another EBT's figures for an EBT, else the fallback's
    kin = [f for f in sorted(fams) if f.startswith("ebt")] if family.startswith("ebt") else []
    entry = fams.get(family) or (fams[kin[0]] if kin else fams[table["fallback"]])
    return {k: float(entry.get(k, 0.0)) for k in ("flops_per_s", "step_s", "overhead_s", "vocab_element_s")}


def rates_note(spec: SweepSpec) -> str:
    """Where the estimate's rates come from, in a few words (plan prints it)."""
    if spec.est_flops_per_s > 0:
        return f"the spec's est_flops_per_s={sci(spec.est_flops_per_s)}"
    table = rates().get(spec.scale or "cpu") or rates()["cpu"]
    fams = [e for e in table["families"].values() if "median_rel_error" in e]
    err = ""
    if fams:
        e = sorted(f["median_rel_error"] for f in fams)
        r = sorted(f["sum_estimated_over_measured"] for f in fams)
        err = (f"; on those trials: median error {e[0]:.0%}-{e[-1]:.0%} per trial, "
               f"totals {r[0]:.2f}-{r[-1]:.2f}x measured")
    return f"sweep/rates.json {spec.scale or 'cpu'}: {table['note']}{err}"


def _source(spec: SweepSpec) -> str:
    """How messages name the spec: its file and the preset planned."""
    return f"{spec.path} (preset {spec.scale})" if spec.scale else spec.path


def _with_vocab(cfg: Config) -> Config:
    return replace(cfg, model=replace(cfg.model, vocab_size=vocab_size(cfg)))


def _resolve(d: dict, where: str) -> Config:
    return config_from_dict(copy.deepcopy(d), where)


def _round_to(x: float, unit: int) -> int:
    return int(round(x / unit)) * unit


def _round_up(x: float, unit: int) -> int:
    return int(math.ceil(x / unit)) * unit


def _show(v):
    if isinstance(v, AxisSize):
        return v.label
    if isinstance(v, float):
        return sci(v)
    return v


def sci(x: float) -> str:
    """The one number format of plans: 3 significant digits, exponent without '+'
    (9.98e10, 1e11, 512, 0.003)."""
    return f"{x:.3g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def plan_frame(trials: list[Trial]) -> pd.DataFrame:
    """One row per trial, the columns `ebt-sweep plan` prints (and `ebt_scaling.plan`
    returns)."""
    rows = []
    for t in trials:
        c, m = t.config, t.config.model
        row = dict(id=t.id, family=t.family, point=t.label, seed=t.seed, n_layers=m.n_layers,
                   d_model=m.d_model, n_heads=m.n_heads, n_params=non_embedding_params(c),
                   tokens=c.total_tokens, steps=c.total_steps, lr=c.optim.lr, flops=t.flops,
                   est_seconds=t.est_seconds, cpus=t.resources.cpus, gpus=t.resources.gpus)
        rows.append(row)
    return pd.DataFrame(rows)
