"""Configuration of one training point: frozen dataclasses and strict YAML loading.

The YAML tree maps 1:1 onto `Config`:

    model: {family, size | n_layers/d_model/n_heads/d_ffn, ...}
    ebt:   {preset, steps, alpha, ...}          # read only when model.family is an EBT
    optim: {lr, betas, weight_decay, ...}
    data:  {source, tokenizer, seq_len, ...}
    train: {batch_size, tokens | steps, eval_every, ...}

`load_config(path, overrides)` rejects unknown keys, wrong types and impossible values
with a ConfigError that names the file, the key and what is allowed, before any work.
This module is the one checker of YAML that users write, point configs and sweep specs
(sweep/spec.py) alike: `_Loader` (repeated keys, alias expansion, depth), `check_value`
(types, finite floats, 64-bit integers, bounded text) and the `LIMITS` span of every
number, declared next to its dataclass field; messages quote values through `brief`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import yaml


class ConfigError(ValueError):
    """A configuration a user wrote is wrong; the message says where and how to fix it."""


_BRIEF = reprlib.Repr()      # (keyword arguments need Python 3.12)
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 2, 200, 48, 24   # 200: a whole path
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 4


def brief(value) -> str:
    """repr() cut to at most a few hundred characters: what messages print of a value a user wrote
    (a 1 MB string or an alias-expanded tree must not become a 28 MB message)."""
    return _BRIEF.repr(value)


INT64_MAX = 2 ** 63 - 1
MAX_TEXT = 4096             # characters in any text value (PATH_MAX): messages that quote one stay bounded


class Span(NamedTuple):
    """The values a number may take: lo..hi, each end open (excluded) or not."""
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""          # what a special value means, e.g. "0 = d_model"

    def holds(self, v) -> bool:
        return ((v > self.lo) if self.lo_open else (v >= self.lo)) and \
               ((v < self.hi) if self.hi_open else (v <= self.hi))

    def describe(self) -> str:
        return (f"{'>' if self.lo_open else '>='} {self.lo:g} and {'<' if self.hi_open else '<='} {self.hi:g}"
                + (f" ({self.note})" if self.note else ""))


def check_span(value, span: Span, where: str) -> None:
    if not span.holds(value):
        raise ConfigError(f"{where}: {brief(value)} is out of range; use a value {span.describe()}")


def key_name(key) -> str:
    """A key as messages show it: a string as written (cut at 60), anything else as a brief repr."""
    return key[:60] if isinstance(key, str) else brief(key)


def unknown_key(where: str, key, allowed) -> ConfigError:
    return ConfigError(f"{where}{key_name(key)}: unknown key; allowed keys are {', '.join(sorted(allowed))}")


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

    LIMITS: ClassVar[dict[str, Span]] = {
        "n_layers": Span(1, 1024), "d_model": Span(1, 65536), "n_heads": Span(1, 1024),
        "d_ffn": Span(0, 262144, note="0 = d_model"), "vocab_size": Span(0, 2 ** 24, note="0 = from the tokenizer"),
        "norm_eps": Span(0, 1, lo_open=True), "rope_theta": Span(0, 1e12, lo_open=True),
        "init_gain": Span(0, 100, lo_open=True)}


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
    alpha: float = 0.0                  # 0 -> alpha_ref * (vocab_size / alpha_ref_vocab) ** alpha_vocab_power
    alpha_ref: float = 5.0              # the paper's alpha, tuned at alpha_ref_vocab
    alpha_ref_vocab: int = 50277
    alpha_vocab_power: float = 0.25     # how alpha follows the vocabulary (resolve_alpha; measured per preset)
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

    LIMITS: ClassVar[dict[str, Span]] = {
        "steps": Span(1, 1000), "random_extra_steps": Span(0, 1000),
        "landscapes": Span(0, 1000, note="0 = one step token per step"),
        "eval_steps": Span(0, 1000, note="0 = steps + random_extra_steps"),
        "alpha": Span(0, 1e9, note="0 = the vocabulary rule"), "alpha_ref": Span(0, 1e9, lo_open=True),
        "alpha_ref_vocab": Span(1, 2 ** 24), "alpha_vocab_power": Span(0, 4), "alpha_lr_mult": Span(0, 1e6, note="0 = 3 x alpha"),
        "alpha_min": Span(0, 1e9), "alpha_random_scale": Span(1, 1e3, note="1 = fixed"),
        "langevin_std": Span(0, 1e3), "init_std": Span(0, 1e3), "replay_buffer": Span(0, 2 ** 20, note="0 = off"),
        "replay_fraction": Span(0, 1, hi_open=True), "grad_clamp": Span(0, 1e9, note="0 = off")}

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

    @property
    def per_step_context(self) -> bool:
        """Whether the context changes with the step (several step tokens: S1), so that
        it is recomputed at each step instead of shared by all of them."""
        return self.step_tokens > 1


# The recipe's table, with alpha expressed at the paper's vocabulary (see `resolve_alpha`).
EBT_PRESETS: dict[str, dict[str, Any]] = {
    "ebt_s1": dict(steps=2, random_extra_steps=0, step_embeddings=True, landscapes=0, alpha_ref=500.0,
                   alpha_vocab_power=0.75,
                   alpha_learnable=True, alpha_lr_mult=0.0, alpha_random_scale=1.0,
                   langevin_std=0.0, second_order="full", detach_between_steps=True,
                   loss="mean", replay_buffer=0),
    "ebt_s2": dict(steps=2, random_extra_steps=1, step_embeddings=True, landscapes=1, alpha_ref=5.0,
                   alpha_vocab_power=0.25,
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

    LIMITS: ClassVar[dict[str, Span]] = {
        "lr": Span(0, 1, note="0 = the ladder's lr"), "betas": Span(0, 1, hi_open=True),
        "eps": Span(0, 1, lo_open=True), "weight_decay": Span(0, 10), "grad_clip": Span(0, 1e6, note="0 = off"),
        "warmup_frac": Span(0, 1, hi_open=True), "min_lr_ratio": Span(0, 1)}


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

    LIMITS: ClassVar[dict[str, Span]] = {
        "seq_len": Span(2, 2 ** 20), "val_tokens": Span(1, INT64_MAX), "num_proc": Span(0, 4096, note="0 = all cores"),
        "val_fraction": Span(0, 1, lo_open=True, hi_open=True), "markov_vocab": Span(2, 2 ** 16),
        "markov_order": Span(1, 16), "markov_branching": Span(1, 2 ** 16), "markov_seed": Span(0, 2 ** 32 - 1)}


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16                # sequences per optimiser step
    tokens: int = 0                     # token budget D; 0 -> use `steps`
    steps: int = 0                      # optimiser steps; 0 -> from `tokens`
    eval_every: int = 50                # steps between evaluations (and the final one)
    eval_tokens: int = 16384            # held-out tokens per evaluation
    log_every: int = 10
    checkpoint_every: int = 0           # steps; 0 -> only at the end when a dir is set
    checkpoint_minutes: float = 0.0     # also checkpoint after this much wall time; 0 -> off
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

    LIMITS: ClassVar[dict[str, Span]] = {
        "batch_size": Span(1, 2 ** 24), "tokens": Span(0, INT64_MAX, note="0 = use steps"),
        "steps": Span(0, INT64_MAX, note="0 = from tokens"), "eval_every": Span(1, INT64_MAX),
        "eval_tokens": Span(1, INT64_MAX), "log_every": Span(1, INT64_MAX),
        "checkpoint_every": Span(0, INT64_MAX, note="0 = only at the end"),
        "checkpoint_minutes": Span(0, 1e6, note="0 = off"),
        "threads": Span(0, 4096, note="0 = torch's default"), "fail_at_step": Span(-1, INT64_MAX, note="-1 = off"),
        "micro_batch_size": Span(0, 2 ** 24, note="0 = the whole batch"),
        "data_parallel": Span(0, 4096)}


# train.* keys that say where/how a point runs, not what it is (left out of Config.hash)
PLACEMENT_KEYS = ("checkpoint_dir", "checkpoint_every", "checkpoint_minutes", "device", "threads", "track", "track_dir",
                  "micro_batch_size", "compile", "data_parallel")
# what data.path (source: file) may be (data/sources.py reads each)
FILE_SUFFIXES = (".txt", ".md", ".txt.gz", ".jsonl", ".json", ".parquet")


def file_suffix(path: str) -> str:
    """".txt", or ".txt.gz" for a gzipped file."""
    p = Path(path)
    return "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix


# what train.device may name (train/preflight.py checks that this machine has it)
DEVICES = r"auto|cpu|cuda(:\d{1,2})?"
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

    LIMITS: ClassVar[dict[str, Span]] = {"seed": Span(0, 2 ** 32 - 1)}

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
    """Check `value` against the annotation `tp`: ints are accepted for floats, floats must
    be finite and ints must fit 64 bits (rows, parquet and torch store them so)."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType:            # e.g. int | str: the first type that fits
        errors = []
        for a in typing.get_args(tp):
            try:
                return _coerce(value, a, where)
            except ConfigError as err:
                errors.append(str(err))
        if any("expected" not in e for e in errors):     # the right type, a wrong value: say which
            raise ConfigError(next(e for e in errors if "expected" not in e))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in typing.get_args(tp))}, "
                          f"got {type(value).__name__} {brief(value)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} numbers, got {brief(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        f = float(value) if abs(value) < 1e308 else math.inf
        if not math.isfinite(f):
            raise ConfigError(f"{where}: {brief(value)} is not a finite number; write a number such as 1.0e-3")
        return f
    if tp is int and isinstance(value, (int, float)) and not isinstance(value, bool):
        # a float is a whole number written with an exponent: tokens: 1e6
        n = int(value) if isinstance(value, float) and value.is_integer() and abs(value) >= 1e3 else value
        if isinstance(n, int):
            if not -INT64_MAX - 1 <= n <= INT64_MAX:
                raise ConfigError(f"{where}: {brief(value)} does not fit in 64 bits; use a value <= {INT64_MAX:.3g}")
            return n
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ConfigError(f"{where}: a text of {len(value):,} characters; write at most {MAX_TEXT:,}")
        return value
    hint = " (a whole number)" if tp is int and isinstance(value, float) else ""
    raise ConfigError(f"{where}: expected {_type_name(tp)}{hint}, got {type(value).__name__} {brief(value)}")


def check_value(value, tp, where: str, span: Span | None = None):
    """The one check of a number or string a user wrote (point configs and sweep specs
    alike): its type (`_coerce`), then its range when `span` is given."""
    v = _coerce(value, tp, where)
    if span is not None:
        for x in (v if isinstance(v, tuple) else (v,)):
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                check_span(x, span, where)
    return v


@functools.cache
def _hints(cls) -> dict[str, Any]:
    """The field types of dataclass `cls` (resolved once: the planner builds thousands of configs)."""
    types_ = typing.get_type_hints(cls)
    return {f.name: types_[f.name] for f in fields(cls)}


def from_dict(cls, data: dict, where: str):
    """Build dataclass `cls` from a plain dict, strictly: unknown keys, wrong types and
    values outside `cls.LIMITS` are errors. `where` prefixes messages ("file: model.")."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip(': .')}: expected a mapping of keys, got {type(data).__name__} "
                          f"{brief(data)}")
    hints = _hints(cls)
    limits = getattr(cls, "LIMITS", {})
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise unknown_key(where, key, hints)
        tp = hints[key]
        if is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{where}{key}.")
        else:
            kwargs[key] = check_value(value, tp, f"{where}{key}", limits.get(key))
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
            raise ConfigError(f"--set {brief(pair)}: expected key=value, e.g. --set train.steps=100")
        key, raw = pair.split("=", 1)
        try:
            value = yaml_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {brief(pair)}: the value is not valid YAML ({yaml_problem(e)}); "
                              "quote it or write a number, e.g. --set train.steps=100") from None
        _set_path(tree, key.strip(), value)
    return tree


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# A document may expand (aliases repeat their anchor's value) to at most this many values;
# the shipped sweeps hold under 400. An "alias bomb" of 7 levels of 9 aliases is 4.8 million.
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64


class _TreeError(yaml.MarkedYAMLError):
    """Valid YAML that this project refuses: a repeated key, too deep, too big."""


class _Loader(yaml.SafeLoader):
    """Strict YAML. PyYAML follows YAML 1.1, which reads 1e9 and 2.0e9 as strings: they are
    floats here. A key repeated in one mapping is an error (YAML would keep the last value
    silently), and a document too deep or too big once its aliases are expanded is refused
    before anything is built from it."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_tree(node)
        return node

    def construct_yaml_int(self, node):
        if len(node.value) > 40:       # Python refuses to read ints past 4300 digits: refuse sooner
            raise _TreeError(problem=f"{node.value[:20]}...: a number of {len(node.value)} digits; write at most "
                             "19 (or use an exponent, 1.0e+9)", problem_mark=node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _check_tree(root: yaml.Node) -> None:
    """Count the values `root` expands to (a node shared by aliases counts once per use,
    but is walked once) and look for repeated keys; raise _TreeError at the first fault."""
    sizes: dict[int, int] = {}

    def shown(path: str) -> str:
        return path if len(path) <= 100 else "..." + path[-100:]

    def size(node, path: str, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_YAML_DEPTH:
            raise _TreeError(problem=f"{shown(path) or 'the document'}: nested deeper than {MAX_YAML_DEPTH} levels "
                             "(or an alias inside its own anchor); flatten it", problem_mark=node.start_mark)
        n = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple, int] = {}
            for k, v in node.value:
                scalar = isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge"
                key = (f"{path}.{k.value[:60]}" if path else k.value[:60]) if scalar else path
                if scalar and (k.tag, k.value) in seen:
                    raise _TreeError(problem=f"{shown(key)}: this key appears twice in one mapping (lines "
                                     f"{seen[(k.tag, k.value)]} and {k.start_mark.line + 1}); keep one",
                                     problem_mark=k.start_mark)
                if scalar:
                    seen[(k.tag, k.value)] = k.start_mark.line + 1
                n += size(k, path, depth + 1) + size(v, key, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                n += size(item, f"{path}[{i}]", depth + 1)
        if n > MAX_YAML_NODES:
            raise _TreeError(problem=f"{shown(path) or 'the document'}: expands to more than {MAX_YAML_NODES:,} values "
                             "(each alias *name repeats its anchor's value); write it out without aliases",
                             problem_mark=node.start_mark)
        sizes[id(node)] = n
        return n

    size(root, "", 0)


def yaml_load(text: str):
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise _TreeError(problem="nested too deeply to read; flatten it") from None


def yaml_problem(e: yaml.YAMLError) -> str:
    """A PyYAML error in one bounded line: where (line, column) and what."""
    mark = getattr(e, "problem_mark", None)
    problem = str(getattr(e, "problem", None) or e).splitlines()[0][:200]
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return at + problem


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; check the path") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 YAML") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror}); pass a readable YAML file") from None
    try:
        data = yaml_load(text)
    except _TreeError as e:
        raise ConfigError(f"{path}: {yaml_problem(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML at {yaml_problem(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (model:, train:, ...)")
    return data


def config_from_dict(data: dict, source: str = "<config>") -> Config:
    cfg = from_dict(Config, data, f"{source}: ")
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
            return f"--set {_cut(pair)}: {rest.split(':', 1)[1].strip() if ':' in rest else rest}"
    try:
        config_from_dict(base, path)
    except ConfigError:
        return None          # the file is at fault on its own
    shown = " --set ".join(map(_cut, overrides[:4])) + (" ..." if len(overrides) > 4 else "")
    return f"--set {shown} (over {path}): {rest}"


def _cut(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------- resolving
def resolve(cfg: Config, explicit_ebt_keys: set[str] | None = None, source: str = "<config>") -> Config:
    """Fill what the user left to defaults: ladder sizes, ffn width, lr, EBT preset."""
    m = cfg.model
    if m.size:
        if m.size not in SIZE_LADDER:
            raise ConfigError(f"{source}: model.size: unknown size {brief(m.size)}; allowed: {', '.join(SIZE_LADDER)}")
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
            raise ConfigError(f"{source}: ebt.preset: unknown preset {brief(e.preset)}; allowed: "
                              f"{', '.join(EBT_PRESETS)} or '' for all-explicit")
        preset = {k: v for k, v in EBT_PRESETS[e.preset].items()
                  if k not in (explicit_ebt_keys or set())}
        e = replace(e, **preset)
    return replace(cfg, model=m, optim=o, ebt=e)


def resolve_alpha(e: EBTConfig, vocab_size: int) -> float:
    """The thinking step size at this vocabulary.

    The paper's alpha (5 for S2, 500 for S1) was tuned for V = 50277 and is far too large
    for S1 at small vocabularies (recipe section 9: S1 starts near a loss of 15000 at
    V = 256). Unless the user fixes `alpha`, alpha = alpha_ref * (V / alpha_ref_vocab) **
    alpha_vocab_power, the paper's values at V = 50277, with the power measured per preset
    (benchmarks/RESULTS.md, "The alpha rule"): S1 3/4 (9.53 at V = 256; under 1/2 or less
    it stays at the unigram loss), S2 1/4 (1.34 at V = 256; on the study's Shakespeare
    point it reaches perplexity 8.27 where 3/4 gives 9.56). No single power serves both.
    """
    if e.alpha > 0:
        return e.alpha
    return e.alpha_ref * (vocab_size / e.alpha_ref_vocab) ** e.alpha_vocab_power


def _need(cond: bool, where: str, msg: str):
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def tracker_names(text: str) -> tuple[str, ...]:
    """"tensorboard, wandb" -> ("tensorboard", "wandb") (lower case, no repeats)."""
    return tuple(dict.fromkeys(n.strip().lower() for n in (text or "").split(",") if n.strip()))


def validate(cfg: Config, source: str = "<config>") -> Config:
    """The rules between keys (each key's own range is checked by from_dict, LIMITS)."""
    s = source
    m, o, d, t, e = cfg.model, cfg.optim, cfg.data, cfg.train, cfg.ebt
    _need(0 < len(cfg.name) <= 200 and cfg.name not in (".", "..") and not re.search(r"[/\\\x00-\x1f]", cfg.name),
          f"{s}: name", f"{brief(cfg.name)}: use a short name without / or \\ (it names the rows' file)")
    _need(m.family in FAMILIES, f"{s}: model.family", f"{brief(m.family)} is not one of {', '.join(FAMILIES)}")
    _need(m.d_model % m.n_heads == 0, f"{s}: model.d_model",
          f"width {m.d_model} is not divisible by n_heads {m.n_heads}; pick a multiple")
    _need((m.d_model // m.n_heads) % 2 == 0, f"{s}: model.n_heads",
          f"head width {m.d_model // m.n_heads} must be even for RoPE")
    _need(d.source in ("shakespeare", "markov", "file", "hf"), f"{s}: data.source",
          f"{brief(d.source)} is not one of shakespeare, markov, file, hf")
    _need(d.source != "file" or d.path, f"{s}: data.path", "source=file needs a path (.txt, .jsonl, .parquet)")
    _need(d.source != "file" or not d.path or file_suffix(d.path) in FILE_SUFFIXES, f"{s}: data.path",
          f"{brief(d.path)} has an unsupported suffix; use one of {', '.join(FILE_SUFFIXES)}")
    _need(d.source != "hf" or d.hf_dataset, f"{s}: data.hf_dataset", "source=hf needs a dataset name")
    _need(d.source != "hf" or d.val_tokens >= t.eval_tokens + d.seq_len, f"{s}: data.val_tokens",
          f"must be >= train.eval_tokens + data.seq_len ({t.eval_tokens + d.seq_len}): evaluation reads it")
    _need(d.targets in ("pack", "pad"), f"{s}: data.targets", "one of pack, pad")
    _need(d.targets == "pack" or (d.source == "hf" and d.tokenizer != "byte"), f"{s}: data.targets",
          "pad needs source: hf and a tokenizer with an EOS token (documents are found by their EOS)")
    _need(d.source != "markov" or d.markov_vocab ** (d.markov_order + 1) <= 2 ** 25, f"{s}: data.markov_order",
          f"a chain of {d.markov_vocab}^{d.markov_order} contexts x {d.markov_vocab} symbols is too big to "
          "hold; lower markov_order or markov_vocab (vocab^(order+1) <= 2^25)")
    _need(d.markov_branching <= d.markov_vocab, f"{s}: data.markov_branching", "must be between 1 and markov_vocab")
    _need(m.embed_init in ("normal", "xavier"), f"{s}: model.embed_init", "one of normal, xavier")
    _need((t.tokens > 0) != (t.steps > 0), f"{s}: train.tokens",
          "set exactly one of train.tokens (a token budget) or train.steps, and make it > 0")
    if t.tokens:
        _need(t.tokens % d.seq_len == 0, f"{s}: train.tokens",
              f"{t.tokens} is not a multiple of data.seq_len={d.seq_len}; round it so that "
              "every sequence is whole")
    _need(cfg.total_tokens <= INT64_MAX, f"{s}: train.steps",
          f"{t.steps} steps of {cfg.batch_tokens} tokens is more than 64 bits can count; lower it")
    _need(t.eval_tokens >= d.seq_len, f"{s}: train.eval_tokens", f"must be >= data.seq_len ({d.seq_len})")
    _need(t.eval_tokens <= 2 ** 32, f"{s}: train.eval_tokens", "must be <= 2^32 (every evaluation reads them)")
    _need(bool(re.fullmatch(DEVICES, t.device)), f"{s}: train.device",
          f"{brief(t.device)} is not a device; use auto, cpu, cuda or cuda:N")
    _need(t.precision in ("auto", "fp32", "bf16"), f"{s}: train.precision", "one of auto, fp32, bf16")
    unknown = [n[:40] for n in tracker_names(t.track) if n not in TRACKERS][:4]
    _need(not unknown, f"{s}: train.track", f"unknown tracker(s) {unknown}; choose from "
          f"{', '.join(TRACKERS)} (comma-separated), or leave it empty for none")
    _need(t.micro_batch_size == "auto" or isinstance(t.micro_batch_size, int),
          f"{s}: train.micro_batch_size", "a number of rows >= 1, 0 (the whole batch) or auto")
    if cfg.is_ebt:
        _need(e.second_order in ("truncated", "full"), f"{s}: ebt.second_order", "one of truncated, full")
        _need(e.loss in ("final", "mean"), f"{s}: ebt.loss", "one of final, mean")
    return cfg
