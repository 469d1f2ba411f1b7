"""The schema of sweeps/*.yaml: what a sweep varies, at which scale, on what resources.

    name: depth                 # rows carry it in their `sweep` column; the fitter reads
    x: depth                    #   the axis from it (data, batch, depth, width, params, flops)
    families: [transformer_pp, ebt_s2]
    seeds: [0]                  # several seeds give error bars
    base: {model: ..., data: ..., train: ...}    # the point config tree (config.py)
    rules: {lr: lr_from_ladder, batch: constant, tokens: constant}   # see rules.py
    axes:                       # the grid is the product of every axis given
      depth: [2, 4, 8]          # model.n_layers
      width: [64, 128]          # model.d_model (n_heads = d_model / head_dim when head_dim is set)
      size: [4xs, xxs, {n_layers: 2, d_model: 64, n_heads: 2}]   # ladder names or shapes
      batch_size: [16, 32]      # train.batch_size (sequences)
      tokens: [1e6, 2e6]        # train.tokens (rounded to whole sequences)
      flops: {budgets: [1e15, 3e15], sizes: [...]}   # isoFLOP: tokens = budget / FLOPs per token
    resources: {cpus: 1, gpus: 0.5}                  # per trial; fractions pack trials (Ray)
    backend: {slurm: {partition, time, mem, account, gpus, cpus}, ray: {address, object_store_mb}}
    scales:                     # presets merged over the keys above; --scale picks one
      cpu: {base: ..., axes: ..., ...}
      paper: {...}

`load_spec(path, scale)` reads and validates strictly, every preset whichever is picked:
an unknown key, a wrong type or an impossible value raises ConfigError naming the file
and the key. Values are checked by config.py's one checker (check_value, from_dict and
the LIMITS of each dataclass), as point configs are.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ..config import (SIZE_LADDER, Config, ConfigError, ModelConfig, Span, TrainConfig, brief, check_value,
                      deep_merge, from_dict, key_name, load_yaml, unknown_key)
from .rules import RULES

FAMILY_NAMES = ("transformer_pp", "ebt_s1", "ebt_s2")
SCALES = ("cpu", "paper")
AXES = ("size", "depth", "width", "batch_size", "tokens", "flops")
# x axis (what the fitter plots) -> the axes that can realise it
X_AXES: dict[str, tuple[str, ...]] = {
    "data": ("tokens",), "batch": ("batch_size",), "depth": ("depth",), "width": ("width",),
    "params": ("size", "depth", "width"), "flops": ("flops", "size"), "none": (),
}
TOP_KEYS = {"name", "description", "x", "families", "seeds", "base", "rules", "axes",
            "resources", "backend", "head_dim", "est_flops_per_s", "scales"}
SCALE_KEYS = TOP_KEYS - {"name", "x", "scales"}
MERGED_KEYS = ("base", "backend", "resources", "rules")     # a preset merges these over the top level's
BACKEND_KEYS = {"slurm", "ray"}
# the spans of axis values: those of the config key each axis sets
AXIS_SPANS = {"depth": ModelConfig.LIMITS["n_layers"], "width": ModelConfig.LIMITS["d_model"],
              "batch_size": TrainConfig.LIMITS["batch_size"], "tokens": Span(1, TrainConfig.LIMITS["tokens"].hi)}
FLOP_BUDGET = Span(0, 1e27, lo_open=True)
RULE_OPTION = Span(0, 1e15, lo_open=True)
LABEL = r"[\w.+-]{1,40}"       # a size label: it becomes part of trial names and file names


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0

    LIMITS: ClassVar[dict[str, Span]] = {"cpus": Span(0, 4096, lo_open=True),
                                         "gpus": Span(0, 1024, note="fractions share a GPU")}


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""
    time: str | int = "04:00:00"    # HH:MM:SS, D-HH:MM:SS, or minutes
    mem: str = ""                   # e.g. "16G"; "" = the partition's default
    account: str = ""
    gpus: int = -1                  # GPUs per job; -1 = ceil(resources.gpus)
    cpus: int = 0                   # CPUs per job; 0 = ceil(resources.cpus)
    qos: str = ""
    array_parallelism: int = 64     # array tasks running at once
    constraint: str = ""
    nodes: int = 1                  # nodes per trial
    tasks_per_node: int = 0         # 0: one task per trial, which starts a rank per GPU itself;
    #                                 k: k tasks (ranks) per node, one GPU each (nodes > 1 needs this)

    LIMITS: ClassVar[dict[str, Span]] = {
        "gpus": Span(-1, 64, note="-1 = ceil(resources.gpus)"), "cpus": Span(0, 4096, note="0 = ceil(resources.cpus)"),
        "array_parallelism": Span(1, 100000), "nodes": Span(1, 4096),
        "tasks_per_node": Span(0, 64, note="0 = one task per trial")}

    def ranks(self, trial_gpus: float) -> tuple[int, int]:
        """(nodes, tasks per node) of one trial's job: with nodes > 1 and no tasks_per_node,
        the trial's GPUs split evenly over the nodes, one task per GPU."""
        k = self.tasks_per_node
        if self.nodes > 1 and not k:
            k = int(trial_gpus) // self.nodes
        return self.nodes, k

    @property
    def timeout_min(self) -> int:
        return time_to_minutes(self.time)


@dataclass(frozen=True)
class RayOptions:
    address: str = ""               # "" = start an embedded local cluster
    object_store_mb: int = 128

    LIMITS: ClassVar[dict[str, Span]] = {"object_store_mb": Span(80, 2 ** 24, note="Ray needs at least 80 MB")}


@dataclass(frozen=True)
class AxisSize:
    """One model shape of a `size` or `flops` axis: a ladder name or an explicit shape."""
    label: str
    size: str = ""                  # ladder name, or "" for the explicit shape below
    n_layers: int = 0
    d_model: int = 0
    n_heads: int = 0


@dataclass(frozen=True)
class SweepSpec:
    name: str
    x: str
    path: str
    scale: str                      # the preset merged in ("" when the spec has none)
    families: tuple[str, ...]
    seeds: tuple[int, ...]
    base: dict
    rules: dict                     # kind -> (rule name, kwargs)
    axes: dict                      # axis -> tuple of values (flops: (budgets, sizes))
    resources: Resources
    slurm: SlurmOptions
    ray: RayOptions
    head_dim: int = 0
    est_flops_per_s: float = 0.0       # 0: the measured rates of sweep/rates.json
    description: str = ""
    scales: tuple[str, ...] = field(default=())


def time_to_minutes(t) -> int:
    """'HH:MM:SS', 'MM:SS', 'D-HH:MM:SS' or a number of minutes -> minutes (rounded up)."""
    if isinstance(t, int):
        return t
    s = str(t).strip()
    if s.isdigit():
        return int(s)
    days = 0
    if "-" in s:
        d, s = s.split("-", 1)
        days = int(d)
    parts = [int(p) for p in s.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, sec = parts
    return days * 1440 + h * 60 + m + (1 if sec else 0)


def resolve_scale(requested: str, has_gpu: bool) -> tuple[str, str]:
    """`auto` -> paper on a GPU machine, cpu otherwise. Returns (scale, why)."""
    if requested in SCALES:
        return requested, "asked for"
    if requested != "auto":
        raise ConfigError(f"--scale {requested!r}: use one of cpu, paper, auto")
    return ("paper", "a CUDA GPU was found") if has_gpu else ("cpu", "no CUDA GPU was found")


# --------------------------------------------------------------------------- loading
def load_spec(path: str | Path, scale: str = "cpu") -> SweepSpec:
    """Read, merge the `scale` preset in, and validate. `scale` must be cpu or paper
    (resolve `auto` first with resolve_scale)."""
    return spec_from_dict(load_yaml(path), str(path), scale)


def spec_from_dict(data: dict, source: str = "<spec>", scale: str = "cpu") -> SweepSpec:
    """The spec with its `scale` preset merged in. Every other preset is checked too (a
    mistake in `paper` stops a cpu run before any work); its messages say which preset."""
    s = source
    if not isinstance(data, dict):
        raise ConfigError(f"{s}: the top level must be a mapping (name:, families:, base:, ...)")
    _keys(data, TOP_KEYS, s, "")
    scales = data.get("scales") or {}
    _type(scales, dict, s, "scales")
    _keys(scales, set(SCALES), s, "scales.")
    if scales and scale not in scales:
        raise ConfigError(f"{s}: scales: no {brief(scale)} preset; this spec has "
                          f"{', '.join(scales)} (pass --scale {next(iter(scales))})")
    if scales:
        _check_defaults(data, s, scales)
    chosen = _one_preset(data, f"{s} (preset {scale})" if scales else s, scale if scales else "", s)
    for other in scales:
        if other != scale:
            _one_preset(data, f"{s} (preset {other})", other, s)
    return chosen


def _check_defaults(data: dict, s: str, scales: dict) -> None:
    """With presets, the top level holds defaults that each preset merges its own over.
    Check them on their own as well: a wrong value that every preset overrides would
    otherwise never be looked at, and a key that every preset replaces is never used."""
    for k in MERGED_KEYS:
        if data.get(k) is not None:
            _type(data[k], dict, s, k)
    from_dict(Config, data.get("base"), f"{s}: base.")
    _resources(data.get("resources") or {}, s)
    backend = data.get("backend") or {}
    _keys(backend, BACKEND_KEYS, s, "backend.")
    _slurm(backend.get("slurm") or {}, s)
    from_dict(RayOptions, backend.get("ray"), f"{s}: backend.ray.")
    _rules(data.get("rules") or {}, s, {})
    for k in sorted(set(data) & SCALE_KEYS - set(MERGED_KEYS)):
        if all(isinstance(b, dict) and k in b for b in scales.values()):
            raise ConfigError(f"{s}: {k}: every preset ({', '.join(scales)}) sets its own {k}, so this one is "
                              "never used; delete it or move it into a preset")


def _one_preset(data: dict, s: str, scale: str, path: str) -> SweepSpec:
    """The spec of one preset (`scale`, or "" for a spec without presets); `s` prefixes messages."""
    scales = data.get("scales") or {}
    if scale:
        block = scales[scale] or {}
        _type(block, dict, s, f"scales.{scale}")
        _keys(block, SCALE_KEYS, s, f"scales.{scale}.")
        data = _merge_scale(data, block)
    for key in ("name", "families", "base"):
        if key not in data:
            raise ConfigError(f"{s}: {key}: missing; every sweep spec needs name, x, families and base")
    name = check_value(data["name"], str, f"{s}: name")
    if not name or len(name) > 100 or any(c in name for c in "/\\ \t\n") or name.startswith("."):
        raise ConfigError(f"{s}: name: {brief(name)} must be a plain word (it names the results folder)")
    x = check_value(data.get("x", name if name in X_AXES else ""), str, f"{s}: x")
    if x not in X_AXES:
        raise ConfigError(f"{s}: x: {brief(x)} is not one of {', '.join(X_AXES)}; name the axis the "
                          "sweep varies (the fitter reads it from the sweep name)")
    families = data["families"]
    if isinstance(families, str):
        families = [families]
    _type(families, list, s, "families")
    for f in families:
        if f not in FAMILY_NAMES:
            raise ConfigError(f"{s}: families: {brief(f)} is not one of {', '.join(FAMILY_NAMES)}")
    if not families or len(set(families)) != len(families):
        raise ConfigError(f"{s}: families: list each family once, at least one")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{s}: seeds: expected a list of integers, e.g. [0, 1, 2], got {brief(seeds)}")
    seeds = [check_value(v, int, f"{s}: seeds", Config.LIMITS["seed"]) for v in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{s}: seeds: {brief(seeds)} repeats a seed; list each once")
    base = data["base"] or {}
    _type(base, dict, s, "base")
    head_dim = check_value(data.get("head_dim", 0), int, f"{s}: head_dim", Span(0, 65536, note="0 = unset"))
    est = data.get("est_flops_per_s")    # absent: the planner's measured rates (rates.json)
    if est is not None:
        est = check_value(est, float, f"{s}: est_flops_per_s", Span(1e3, 1e20, note="effective FLOP/s"))
    rules = data.get("rules") or {}
    _type(rules, dict, s, "rules")
    axes = _axes(data.get("axes") or {}, s)
    needed = X_AXES[x]
    tokens_rule = _rule_name(rules, "tokens") != "constant"
    if needed and not any(a in axes for a in needed) and not (x == "data" and tokens_rule):
        raise ConfigError(f"{s}: axes: x is {x!r} but none of {', '.join(needed)} is an axis; add one")
    description = check_value(data.get("description", ""), str, f"{s}: description")
    backend = data.get("backend") or {}
    _type(backend, dict, s, "backend")
    _keys(backend, BACKEND_KEYS, s, "backend.")
    return SweepSpec(name=name, x=x, path=path, scale=scale, families=tuple(families), seeds=tuple(seeds),
                     base=base, rules=_rules(rules, s, axes), axes=axes,
                     resources=(res := _resources(data.get("resources") or {}, s)),
                     slurm=_slurm(backend.get("slurm") or {}, s, res.gpus),
                     ray=from_dict(RayOptions, backend.get("ray"), f"{s}: backend.ray."),
                     head_dim=head_dim, est_flops_per_s=est or 0.0, description=description,
                     scales=tuple(scales))


def _merge_scale(top: dict, block: dict) -> dict:
    out = {k: v for k, v in top.items() if k != "scales"}
    for k, v in block.items():
        if k in ("base", "backend", "resources", "rules") and isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v          # axes, families, seeds...: the preset's list replaces the top one
    return out


def _keys(d: dict, allowed: set, s: str, prefix: str) -> None:
    for k in d:
        if k not in allowed:
            raise unknown_key(f"{s}: {prefix}", k, allowed)


def _type(v, tp, s: str, key: str) -> None:
    if not isinstance(v, tp) or isinstance(v, bool) and tp is not bool:
        want = getattr(tp, "__name__", str(tp))
        raise ConfigError(f"{s}: {key}: expected {want}, got {type(v).__name__} {brief(v)}")


def _integer(v, s: str, key: str, span: Span) -> int:
    hint = " (YAML reads 1e9 as text: write 1.0e+9)" if isinstance(v, str) and "e" in v.lower() else ""
    try:
        return check_value(v, int, f"{s}: {key}", span)
    except ConfigError as err:
        raise ConfigError(f"{err}{hint}") from None


def _size(v, s: str, key: str) -> AxisSize:
    if isinstance(v, str):
        if v not in SIZE_LADDER:
            raise ConfigError(f"{s}: {key}: unknown ladder size {brief(v)}; allowed: {', '.join(SIZE_LADDER)}, "
                              "or a shape {n_layers, d_model, n_heads}")
        return AxisSize(label=v, size=v)
    if isinstance(v, dict):
        _keys(v, {"n_layers", "d_model", "n_heads", "label"}, s, f"{key}.")
        for k in ("n_layers", "d_model", "n_heads"):
            if k not in v:
                raise ConfigError(f"{s}: {key}.{k}: missing; a shape needs n_layers, d_model and n_heads")
        L, D, H = (_integer(v[k], s, f"{key}.{k}", ModelConfig.LIMITS[k]) for k in ("n_layers", "d_model", "n_heads"))
        label = check_value(v.get("label", f"L{L}d{D}"), str, f"{s}: {key}.label")
        if not re.fullmatch(LABEL, label):
            raise ConfigError(f"{s}: {key}.label: {brief(label)}: use up to 40 letters, digits, '.', '_', '+' "
                              "or '-' (it becomes part of trial names)")
        return AxisSize(label=label, n_layers=L, d_model=D, n_heads=H)
    raise ConfigError(f"{s}: {key}: expected a ladder name or a shape mapping, got {brief(v)}")


def _axes(axes: dict, s: str) -> dict:
    _type(axes, dict, s, "axes")
    _keys(axes, set(AXES), s, "axes.")
    out: dict[str, Any] = {}
    for name, values in axes.items():
        key = f"axes.{name}"
        if name == "flops":
            _type(values, dict, s, key)
            _keys(values, {"budgets", "sizes"}, s, f"{key}.")
            budgets = values.get("budgets")
            sizes = values.get("sizes")
            if not isinstance(budgets, list) or not budgets:
                raise ConfigError(f"{s}: {key}.budgets: expected a list of FLOP budgets, e.g. [1e15, 3e15]")
            if not isinstance(sizes, list) or len(sizes) < 1:
                raise ConfigError(f"{s}: {key}.sizes: expected a list of model sizes (ladder names or shapes)")
            out[name] = (tuple(check_value(b, float, f"{s}: {key}.budgets", FLOP_BUDGET) for b in budgets),
                         tuple(_size(v, s, f"{key}.sizes") for v in sizes))
            for part, vals in zip(("budgets", "sizes"), out[name]):
                labels = [getattr(v, "label", v) for v in vals]
                if len(set(labels)) != len(labels):
                    raise ConfigError(f"{s}: {key}.{part}: {brief(labels)} repeats a value; list each once")
            continue
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{s}: {key}: expected a non-empty list of values")
        if name == "size":
            vals = tuple(_size(v, s, key) for v in values)
        else:
            vals = tuple(_integer(v, s, key, AXIS_SPANS[name]) for v in values)
        labels = [getattr(v, "label", v) for v in vals]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{s}: {key}: {brief(labels)} repeats a value; list each once")
        out[name] = vals
    if "flops" in out and ({"tokens", "size"} & set(out)):
        raise ConfigError(f"{s}: axes.flops: an isoFLOP axis sets both size and tokens; "
                          "drop axes.size and axes.tokens (list the sizes under flops.sizes)")
    if "size" in out and ({"depth", "width"} & set(out)):
        raise ConfigError(f"{s}: axes.size: a ladder size fixes depth and width; drop axes.depth/axes.width "
                          "or use explicit shapes under axes.size")
    return out


def _rule_name(rules: dict, kind: str):
    r = rules.get(kind, "constant")
    return r.get("name", "constant") if isinstance(r, dict) else r


def _rules(rules: dict, s: str, axes: dict) -> dict:
    _keys(rules, set(RULES), s, "rules.")
    out = {}
    for kind in RULES:
        r = rules.get(kind, "constant")
        kwargs: dict = {}
        if isinstance(r, dict):
            if "name" not in r:
                raise ConfigError(f"{s}: rules.{kind}.name: missing; e.g. {{name: {next(iter(RULES[kind]))}}}")
            kwargs = {k: v for k, v in r.items() if k != "name"}
            r = r["name"]
        if not isinstance(r, str) or r not in RULES[kind]:
            raise ConfigError(f"{s}: rules.{kind}: unknown rule {brief(r)}; allowed: {', '.join(RULES[kind])}")
        if r != "constant":
            params = inspect.signature(RULES[kind][r]).parameters
            for k, v in kwargs.items():
                if k not in params or k == "n_params":
                    raise ConfigError(f"{s}: rules.{kind}.{key_name(k)}: {r} has no option {brief(k)}; options: "
                                      f"{', '.join(p for p in params if p != 'n_params') or 'none'}")
                kwargs[k] = check_value(v, float, f"{s}: rules.{kind}.{k}", RULE_OPTION)
        clash = {"batch": ("batch_size",), "tokens": ("tokens", "flops")}.get(kind, ())
        if r != "constant" and any(a in axes for a in clash):
            raise ConfigError(f"{s}: rules.{kind}: {r} would overwrite axes.{[a for a in clash if a in axes][0]}; "
                              f"set rules.{kind} to constant or drop that axis")
        out[kind] = (r, kwargs)
    return out


def _resources(r: dict, s: str) -> Resources:
    res = from_dict(Resources, r, f"{s}: resources.")
    if res.gpus > 1 and not res.gpus.is_integer():
        raise ConfigError(f"{s}: resources.gpus: {res.gpus} mixes whole and fractional GPUs; use a fraction "
                          "below 1 or a whole number")
    return res


def _slurm(d: dict, s: str, res_gpus: float | None = None) -> SlurmOptions:
    opts = from_dict(SlurmOptions, d, f"{s}: backend.slurm.")
    try:
        minutes = time_to_minutes(opts.time)
    except ValueError:
        minutes = -1
    if not 1 <= minutes <= 366 * 1440:
        raise ConfigError(f"{s}: backend.slurm.time: {brief(opts.time)} is not a time limit; write HH:MM:SS, "
                          "D-HH:MM:SS or minutes (at least 1, at most a year)")
    if res_gpus is not None:
        check_ranks(opts, res_gpus, f"{s}: backend.slurm.")
    return replace(opts, time=str(opts.time))


def check_ranks(opts: SlurmOptions, res_gpus: float, where: str) -> None:
    """nodes x tasks_per_node must give each task one of the trial's GPUs (or, without
    GPUs, name the tasks per node)."""
    if opts.nodes <= 1 and not opts.tasks_per_node:
        return
    gpus = opts.gpus if opts.gpus >= 0 else -(-res_gpus // 1)
    nodes, k = opts.ranks(gpus)
    if k <= 0 or (gpus and nodes * k != gpus):
        raise ConfigError(
            f"{where}nodes: {nodes} node(s) with tasks_per_node {opts.tasks_per_node} cannot train a trial of "
            f"{gpus:g} GPU(s) at one GPU per task; set resources.gpus to nodes x GPUs per node (e.g. gpus: 16 "
            "with nodes: 2), or tasks_per_node for ranks without GPUs")
