"""Configuration of one training point: frozen dataclasses and strict YAML loading.

The YAML tree maps 1:1 onto `Config`:

    model: {family, size | n_layers/d_model/n_heads/d_ffn, ...}
    ebt:   {preset, steps, alpha, ...}          # read only when model.family is an EBT
    optim: {lr, betas, weight_decay, ...}
    data:  {source, tokenizer, seq_len, ...}
    train: {batch_size, tokens | steps, eval_every, ...}

`load_config(path, overrides)` rejects unknown keys, wrong types and impossible values
with a ConfigError that names the file, the key and what is allowed, before any work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration a user wrote is wrong; the message says where and how to fix it."""


# --- the paper's size ladder (recipe section 2): name -> (layers, heads, width, peak lr)
SIZE_LADDER: dict[str, tuple[int, int, int, float]] = {
    "4xs": (2, 2, 128, 2.4e-3),
    "3xs": (4, 4, 256, 1.8e-3),
    "xxs": (6, 6, 384, 1.2e-3),
    "xs": (12, 6, 384, 9e-4),
    "small": (12, 12, 768, 6e-4),
    "medium": (24, 16, 1024, 3e-4),
    "large": (24, 16, 1536, 2.5e-4),
    "xl": (24, 32, 2048, 2e-4),
}

FAMILIES = ("transformer_pp", "ebt")


@dataclass(frozen=True)
class ModelConfig:
    family: str = "transformer_pp"      # "transformer_pp" or "ebt"
    size: str = ""                      # a ladder name; fills layers/heads/width when set
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 2
    d_ffn: int = 0                      # 0 -> d_model (the paper: SwiGLU hidden = width)
    vocab_size: int = 0                 # 0 -> from the tokenizer / data source
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_gain: float = 1.0              # Xavier-normal gain for every Linear
    embed_init: str = "normal"          # token/step embeddings: "normal" N(0, 1) as the reference, or "xavier"


@dataclass(frozen=True)
class EBTConfig:
    """Thinking as optimisation (recipe section 4). `preset` fills the rest; any key set
    explicitly in YAML wins over the preset."""
    preset: str = "ebt_s2"              # "ebt_s1" | "ebt_s2" | "" (all explicit)
    steps: int = 2                      # optimisation steps per training forward
    random_extra_steps: int = 0         # S2: steps drawn uniformly in [steps, steps+extra]
    eval_steps: int = 0                 # steps at validation (0 -> steps + extra)
    step_embeddings: bool = False       # a learned prefix token the context sees (the reference's time_embed)
    landscapes: int = 0                 # distinct step tokens: 0 -> one per step (S1), 1 -> one for all (S2)
    alpha: float = 0.0                  # 0 -> alpha_ref * (vocab_size / alpha_ref_vocab) ** 0.75 (resolve_alpha)
    alpha_ref: float = 5.0              # the paper's alpha, tuned at alpha_ref_vocab
    alpha_ref_vocab: int = 50277
    alpha_learnable: bool = False
    alpha_lr_mult: float = 0.0          # 0 -> 3 * alpha (the paper: 1500 at alpha 500)
    alpha_min: float = 1e-4
    alpha_random_scale: float = 2.0     # alpha ~ U[alpha/s, alpha*s] per (batch, pos); 1 = off
    langevin_std: float = 0.0
    init_std: float = 1.0               # y0 = randn * init_std
    second_order: str = "truncated"     # "truncated" (last step keeps the graph) | "full"
    detach_between_steps: bool = True
    loss: str = "final"                 # "final" | "mean" over steps
    replay_buffer: int = 0              # sequences kept; 0 = off
    replay_fraction: float = 0.5        # share of each batch taken from the buffer
    grad_clamp: float = 0.0             # clamp |dE/dp| <= grad_clamp / alpha; 0 = off

    @property
    def default_eval_steps(self) -> int:
        """Steps at validation and for best-of-N: eval_steps, else the most trained."""
        return self.eval_steps or (self.steps + self.random_extra_steps)

    @property
    def max_steps(self) -> int:
        """How many distinct steps a model may meet."""
        return max(self.steps + self.random_extra_steps, self.eval_steps)

    @property
    def step_tokens(self) -> int:
        """Learned step tokens: one per landscape (S1: one per step; S2: a single one)."""
        if not self.step_embeddings:
            return 0
        return self.landscapes or self.max_steps


# alpha's transfer across vocabularies (resolve_alpha): measured, benchmarks/RESULTS.md
ALPHA_VOCAB_POWER = 0.75
# The recipe's table, with alpha expressed at the paper's vocabulary (see `resolve_alpha`).
EBT_PRESETS: dict[str, dict[str, Any]] = {
    "ebt_s1": dict(steps=2, random_extra_steps=0, step_embeddings=True, landscapes=0, alpha_ref=500.0,
                   alpha_learnable=True, alpha_lr_mult=0.0, alpha_random_scale=1.0,
                   langevin_std=0.0, second_order="full", detach_between_steps=True,
                   loss="mean", replay_buffer=0),
    "ebt_s2": dict(steps=2, random_extra_steps=1, step_embeddings=True, landscapes=1, alpha_ref=5.0,
                   alpha_learnable=False, alpha_random_scale=2.0, langevin_std=3.0,
                   second_order="truncated", detach_between_steps=True, loss="final",
                   replay_buffer=192, replay_fraction=0.5),
}


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.0                     # 0 -> the ladder's peak lr for model.size (else 1e-3)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup_frac: float = 0.05           # share of total steps spent warming up
    min_lr_ratio: float = 0.1           # cosine decays to peak * min_lr_ratio


@dataclass(frozen=True)
class DataConfig:
    source: str = "shakespeare"         # "shakespeare" | "markov" | "file" | "hf"
    tokenizer: str = "byte"             # "byte" or a Hugging Face tokenizer name
    seq_len: int = 128
    path: str = ""                      # source=file: .txt, .jsonl or .parquet
    text_column: str = "text"           # jsonl/parquet/hf column holding the text
    hf_dataset: str = ""                # source=hf: a Hub dataset (HuggingFaceFW/fineweb-edu), a packaged
                                        # format with hf_data_files (json, parquet) or a local folder of shards
    hf_config: str = ""
    hf_split: str = "train"
    hf_data_files: str = ""             # source=hf: comma-separated data files or URLs (globs allowed)
    hf_revision: str = ""               # source=hf: Hub branch/tag/commit; "" = latest
    val_tokens: int = 4194304           # source=hf: the store's validation set (its first documents)
    num_proc: int = 0                   # source=hf: tokenizer processes when preparing; 0 -> all cores
    val_fraction: float = 0.1           # share held out (file source)
    targets: str = "pack"               # "pack": documents packed with EOS separators, every target
                                        # counted; "pad" (source=hf): one document per sequence, cut to
                                        # seq_len + 1 tokens, padding masked out of the loss (the paper)
    markov_vocab: int = 64              # source=markov
    markov_order: int = 1
    markov_branching: int = 4           # allowed next symbols per context
    markov_seed: int = 1234
    cache_dir: str = ""                 # token caches/stores; "" -> $EBT_CACHE, else ~/.cache/ebt-scaling


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16                # sequences per optimiser step
    tokens: int = 0                     # token budget D; 0 -> use `steps`
    steps: int = 0                      # optimiser steps; 0 -> from `tokens`
    eval_every: int = 50                # steps between evaluations (and the final one)
    eval_tokens: int = 16384            # held-out tokens per evaluation
    log_every: int = 10
    checkpoint_every: int = 0           # steps; 0 -> only at the end when a dir is set
    checkpoint_dir: str = ""
    device: str = "auto"                # "auto" | "cpu" | "cuda" | "cuda:1"
    precision: str = "auto"             # "auto" (bf16 autocast on CUDA) | "fp32" | "bf16"
    threads: int = 0                    # torch CPU threads; 0 -> torch's default
    nan_check: bool = True
    fail_at_step: int = -1              # testing aid: force a NaN loss at this step
    track: str = ""                     # experiment trackers, comma-separated: tensorboard, wandb, mlflow
    track_dir: str = ""                 # where trackers write; "" -> runs/tracking
    micro_batch_size: int | str = 0     # rows per forward (gradient accumulation); 0 = whole batch; "auto"
    compile: bool = False               # torch.compile what can be (train/loop.py compile_model)
    data_parallel: int = 0              # >1: train on this many local GPUs (ranks); set from resources.gpus


# train.* keys that say where/how a point runs, not what it is (left out of Config.hash)
PLACEMENT_KEYS = ("checkpoint_dir", "checkpoint_every", "device", "threads", "track", "track_dir",
                  "micro_batch_size", "compile", "data_parallel")
# what train.track may name (ebt_scaling/results/trackers.py)
TRACKERS = ("tensorboard", "wandb", "mlflow")


@dataclass(frozen=True)
class Config:
    name: str = "point"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    ebt: EBTConfig = field(default_factory=EBTConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- derived values (pure functions of the config)
    @property
    def is_ebt(self) -> bool:
        return self.model.family == "ebt"

    @property
    def family_name(self) -> str:
        """The name rows carry: transformer_pp, ebt_s1, ebt_s2 or ebt."""
        return (self.ebt.preset or "ebt") if self.is_ebt else self.model.family

    @property
    def batch_tokens(self) -> int:
        return self.train.batch_size * self.data.seq_len

    @property
    def total_steps(self) -> int:
        if self.train.steps:
            return self.train.steps
        return -(-self.train.tokens // self.batch_tokens)

    @property
    def total_tokens(self) -> int:
        return self.train.tokens if self.train.tokens else self.train.steps * self.batch_tokens

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self, with_seed: bool = True) -> str:
        """Identity of the point: everything that changes what is trained, not where
        or how it is run (name, checkpoint placement, device, threads)."""
        d = self.to_dict()
        if not with_seed:
            d.pop("seed")
        d.pop("name")
        for k in PLACEMENT_KEYS:
            d["train"].pop(k)
        blob = json.dumps(d, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- loading
def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp`; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType:            # e.g. int | str: the first type that fits
        for a in typing.get_args(tp):
            try:
                return _coerce(value, a, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in typing.get_args(tp))}, "
                          f"got {type(value).__name__} {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, float) and value.is_integer() and abs(value) >= 1e3:
        return int(value)   # lets users write tokens: 1e6
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def from_dict(cls, data: dict, where: str):
    """Build dataclass `cls` from a plain dict, strictly. `where` prefixes messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"{where}.{key}: unknown key; allowed keys are {', '.join(sorted(known))}")
        tp = hints[key]
        if is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, tp, f"{where}.{key}")
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
    node[parts[-1]] = value


def parse_overrides(pairs: list[str] | None) -> dict:
    """`["model.d_model=64", "train.steps=10"]` -> nested dict; values parsed as YAML."""
    tree: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set train.steps=100")
        key, raw = pair.split("=", 1)
        _set_path(tree, key.strip(), yaml_load(raw))
    return tree


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads 1e9 and 2.0e9 as strings; accept them as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (model:, train:, ...)")
    return data


def config_from_dict(data: dict, source: str = "<config>") -> Config:
    cfg = from_dict(Config, data, source)
    ebt_keys = set((data.get("ebt") or {}).keys())
    return validate(resolve(cfg, explicit_ebt_keys=ebt_keys, source=source), source)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """The point config at `path` with `--set key=value` overrides on top. An error the
    overrides cause names the override, not the file."""
    base = load_yaml(path)
    try:
        return config_from_dict(deep_merge(base, parse_overrides(overrides)), str(path))
    except ConfigError as err:
        if not overrides:
            raise
        blamed = _blame_override(str(err), str(path), overrides, base)
        if blamed is None:
            raise
        raise ConfigError(blamed) from None


def _blame_override(message: str, path: str, overrides: list[str], base: dict) -> str | None:
    """Reword `message` (about `path`) as the fault of the override that caused it: the
    one whose key it names, else all of them when the file alone is valid."""
    for sep in (": ", "."):
        if message.startswith(path + sep):
            rest = message[len(path) + len(sep):]
            break
    else:
        return None
    key = rest.split(":", 1)[0].strip()
    for pair in overrides:
        if pair.split("=", 1)[0].strip() == key:
            return f"--set {pair}: {rest.split(':', 1)[1].strip() if ':' in rest else rest}"
    try:
        config_from_dict(base, path)
    except ConfigError:
        return None          # the file is at fault on its own
    return f"--set {' --set '.join(overrides)} (over {path}): {rest}"


# --------------------------------------------------------------------------- resolving
def resolve(cfg: Config, explicit_ebt_keys: set[str] | None = None, source: str = "<config>") -> Config:
    """Fill what the user left to defaults: ladder sizes, ffn width, lr, EBT preset."""
    m = cfg.model
    if m.size:
        if m.size not in SIZE_LADDER:
            raise ConfigError(f"{source}: model.size: unknown size {m.size!r}; allowed: {', '.join(SIZE_LADDER)}")
        L, H, D, _ = SIZE_LADDER[m.size]
        m = replace(m, n_layers=L, n_heads=H, d_model=D)
    if m.d_ffn == 0:
        m = replace(m, d_ffn=m.d_model)
    o = cfg.optim
    if o.lr == 0.0:
        o = replace(o, lr=SIZE_LADDER[m.size][3] if m.size else 1e-3)
    e = cfg.ebt
    if e.preset:
        if e.preset not in EBT_PRESETS:
            raise ConfigError(f"{source}: ebt.preset: unknown preset {e.preset!r}; allowed: "
                              f"{', '.join(EBT_PRESETS)} or '' for all-explicit")
        preset = {k: v for k, v in EBT_PRESETS[e.preset].items()
                  if k not in (explicit_ebt_keys or set())}
        e = replace(e, **preset)
    return replace(cfg, model=m, optim=o, ebt=e)


def resolve_alpha(e: EBTConfig, vocab_size: int) -> float:
    """The thinking step size at this vocabulary.

    The paper's alpha (5 for S2, 500 for S1) was tuned for V = 50277 and is far too large
    at small vocabularies (recipe section 9: S1 starts near a loss of 15000 at V = 256).
    Unless the user fixes `alpha`, alpha = alpha_ref * (V / alpha_ref_vocab) ** (3/4)
    (S1 9.53, S2 0.0953 at V = 256), the paper's values at V = 50277. Chosen from
    `benchmarks/learn_markov.py --alpha-grid` (benchmarks/RESULTS.md): at V = 256 both
    presets learn under k = 3/4 and k = 1 and not under k <= 1/2 (S1 stays at the
    unigram loss); at V = 32 and 64 S2 learns a little under 3/4 and not at all under 1.
    At V = 4096 neither preset learned in 200 steps under any k tried (open).
    """
    if e.alpha > 0:
        return e.alpha
    return e.alpha_ref * (vocab_size / e.alpha_ref_vocab) ** ALPHA_VOCAB_POWER


def _need(cond: bool, where: str, msg: str):
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def tracker_names(text: str) -> tuple[str, ...]:
    """"tensorboard, wandb" -> ("tensorboard", "wandb") (lower case, no repeats)."""
    return tuple(dict.fromkeys(n.strip().lower() for n in (text or "").split(",") if n.strip()))


def validate(cfg: Config, source: str = "<config>") -> Config:
    s = source
    m, o, d, t, e = cfg.model, cfg.optim, cfg.data, cfg.train, cfg.ebt
    _need(m.family in FAMILIES, f"{s}: model.family", f"{m.family!r} is not one of {FAMILIES}")
    _need(m.n_layers >= 1, f"{s}: model.n_layers", "must be >= 1")
    _need(m.d_model >= 1, f"{s}: model.d_model", "must be >= 1")
    _need(m.n_heads >= 1, f"{s}: model.n_heads", "must be >= 1")
    _need(m.d_model % m.n_heads == 0, f"{s}: model.d_model",
          f"width {m.d_model} is not divisible by n_heads {m.n_heads}; pick a multiple")
    _need((m.d_model // m.n_heads) % 2 == 0, f"{s}: model.n_heads",
          f"head width {m.d_model // m.n_heads} must be even for RoPE")
    _need(m.vocab_size >= 0, f"{s}: model.vocab_size", "must be >= 0 (0 = from the tokenizer)")
    _need(o.lr > 0, f"{s}: optim.lr", "must be > 0")
    _need(0 <= o.betas[0] < 1 and 0 <= o.betas[1] < 1, f"{s}: optim.betas", "each must be in [0, 1)")
    _need(o.weight_decay >= 0, f"{s}: optim.weight_decay", "must be >= 0")
    _need(o.grad_clip >= 0, f"{s}: optim.grad_clip", "must be >= 0 (0 = off)")
    _need(0 <= o.warmup_frac < 1, f"{s}: optim.warmup_frac", "must be in [0, 1)")
    _need(0 <= o.min_lr_ratio <= 1, f"{s}: optim.min_lr_ratio", "must be in [0, 1]")
    _need(d.source in ("shakespeare", "markov", "file", "hf"), f"{s}: data.source",
          f"{d.source!r} is not one of shakespeare, markov, file, hf")
    _need(d.seq_len >= 2, f"{s}: data.seq_len", "must be >= 2")
    _need(d.source != "file" or d.path, f"{s}: data.path", "source=file needs a path (.txt, .jsonl, .parquet)")
    _need(d.source != "hf" or d.hf_dataset, f"{s}: data.hf_dataset", "source=hf needs a dataset name")
    _need(0 < d.val_fraction < 1, f"{s}: data.val_fraction", "must be in (0, 1)")
    _need(d.source != "hf" or d.val_tokens >= t.eval_tokens + d.seq_len, f"{s}: data.val_tokens",
          f"must be >= train.eval_tokens + data.seq_len ({t.eval_tokens + d.seq_len}): evaluation reads it")
    _need(d.num_proc >= 0, f"{s}: data.num_proc", "must be >= 0 (0 = all cores)")
    _need(d.targets in ("pack", "pad"), f"{s}: data.targets", "one of pack, pad")
    _need(d.targets == "pack" or (d.source == "hf" and d.tokenizer != "byte"), f"{s}: data.targets",
          "pad needs source: hf and a tokenizer with an EOS token (documents are found by their EOS)")
    _need(d.markov_vocab >= 2 and d.markov_order >= 1, f"{s}: data.markov_vocab",
          "markov_vocab must be >= 2 and markov_order >= 1")
    _need(1 <= d.markov_branching <= d.markov_vocab, f"{s}: data.markov_branching",
          "must be between 1 and markov_vocab")
    _need(m.embed_init in ("normal", "xavier"), f"{s}: model.embed_init", "one of normal, xavier")
    _need(t.batch_size >= 1, f"{s}: train.batch_size", "must be >= 1")
    _need((t.tokens > 0) != (t.steps > 0), f"{s}: train.tokens",
          "set exactly one of train.tokens (a token budget) or train.steps, and make it > 0")
    if t.tokens:
        _need(t.tokens % d.seq_len == 0, f"{s}: train.tokens",
              f"{t.tokens} is not a multiple of data.seq_len={d.seq_len}; round it so that "
              "every sequence is whole")
    _need(t.eval_every >= 1, f"{s}: train.eval_every", "must be >= 1")
    _need(t.eval_tokens >= d.seq_len, f"{s}: train.eval_tokens", f"must be >= data.seq_len ({d.seq_len})")
    _need(t.log_every >= 1, f"{s}: train.log_every", "must be >= 1")
    _need(t.precision in ("auto", "fp32", "bf16"), f"{s}: train.precision", "one of auto, fp32, bf16")
    unknown = [n for n in tracker_names(t.track) if n not in TRACKERS]
    _need(not unknown, f"{s}: train.track", f"unknown tracker(s) {unknown}; choose from "
          f"{', '.join(TRACKERS)} (comma-separated), or leave it empty for none")
    _need(t.micro_batch_size == "auto" or (isinstance(t.micro_batch_size, int) and t.micro_batch_size >= 0),
          f"{s}: train.micro_batch_size", "a number of rows >= 1, 0 (the whole batch) or auto")
    if cfg.is_ebt:
        _need(e.steps >= 1, f"{s}: ebt.steps", "must be >= 1")
        _need(e.random_extra_steps >= 0, f"{s}: ebt.random_extra_steps", "must be >= 0")
        _need(e.landscapes >= 0, f"{s}: ebt.landscapes", "must be >= 0 (0 = one step token per step)")
        _need(e.alpha >= 0 and e.alpha_ref > 0, f"{s}: ebt.alpha", "must be > 0 (or 0 for the vocabulary rule)")
        _need(e.alpha_random_scale >= 1, f"{s}: ebt.alpha_random_scale", "must be >= 1 (1 = fixed)")
        _need(e.langevin_std >= 0, f"{s}: ebt.langevin_std", "must be >= 0")
        _need(e.second_order in ("truncated", "full"), f"{s}: ebt.second_order", "one of truncated, full")
        _need(e.loss in ("final", "mean"), f"{s}: ebt.loss", "one of final, mean")
        _need(e.replay_buffer >= 0 and 0 <= e.replay_fraction < 1, f"{s}: ebt.replay_fraction",
              "replay_buffer must be >= 0 and replay_fraction in [0, 1)")
    return cfg
