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

`load_spec(path, scale)` reads and validates strictly: an unknown key, a wrong type or an
impossible value raises ConfigError naming the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SIZE_LADDER, ConfigError, deep_merge, load_yaml
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
SLURM_KEYS = {"partition": str, "time": (str, int), "mem": str, "account": str, "gpus": int,
              "cpus": int, "qos": str, "array_parallelism": int, "constraint": str}
RAY_KEYS = {"address": str, "object_store_mb": int}


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""
    time: str = "04:00:00"          # HH:MM:SS, or minutes
    mem: str = ""                   # e.g. "16G"; "" = the partition's default
    account: str = ""
    gpus: int = -1                  # GPUs per job; -1 = ceil(resources.gpus)
    cpus: int = 0                   # CPUs per job; 0 = ceil(resources.cpus)
    qos: str = ""
    array_parallelism: int = 64     # array tasks running at once
    constraint: str = ""

    @property
    def timeout_min(self) -> int:
        return time_to_minutes(self.time)


@dataclass(frozen=True)
class RayOptions:
    address: str = ""               # "" = start an embedded local cluster
    object_store_mb: int = 128


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
    s = source
    _keys(data, TOP_KEYS, s, "")
    scales = data.get("scales") or {}
    _type(scales, dict, s, "scales")
    _keys(scales, set(SCALES), s, "scales.")
    chosen = ""
    if scales:
        if scale not in scales:
            raise ConfigError(f"{s}: scales: no {scale!r} preset; this spec has "
                              f"{', '.join(scales)} (pass --scale {next(iter(scales))})")
        block = scales[scale] or {}
        _type(block, dict, s, f"scales.{scale}")
        _keys(block, SCALE_KEYS, s, f"scales.{scale}.")
        data = _merge_scale(data, block)
        chosen = scale
    for key in ("name", "families", "base"):
        if key not in data:
            raise ConfigError(f"{s}: {key}: missing; every sweep spec needs name, x, families and base")
    name = data["name"]
    _type(name, str, s, "name")
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ConfigError(f"{s}: name: {name!r} must be a plain word (it names the results folder)")
    x = data.get("x", name if name in X_AXES else "")
    if x not in X_AXES:
        raise ConfigError(f"{s}: x: {x!r} is not one of {', '.join(X_AXES)}; name the axis the "
                          "sweep varies (the fitter reads it from the sweep name)")
    families = data["families"]
    if isinstance(families, str):
        families = [families]
    _type(families, list, s, "families")
    for f in families:
        if f not in FAMILY_NAMES:
            raise ConfigError(f"{s}: families: {f!r} is not one of {', '.join(FAMILY_NAMES)}")
    if not families or len(set(families)) != len(families):
        raise ConfigError(f"{s}: families: list each family once, at least one")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds):
        raise ConfigError(f"{s}: seeds: expected a list of integers, e.g. [0, 1, 2], got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{s}: seeds: {seeds} repeats a seed; list each once")
    base = data["base"] or {}
    _type(base, dict, s, "base")
    head_dim = data.get("head_dim", 0)
    _type(head_dim, int, s, "head_dim")
    est = data.get("est_flops_per_s", 0.0)    # absent: the planner's measured rates (rates.json)
    if not isinstance(est, (int, float)) or isinstance(est, bool) or est < 0 or (
            "est_flops_per_s" in data and est == 0):
        raise ConfigError(f"{s}: est_flops_per_s: expected a positive number (effective FLOP/s), got {est!r}")
    axes = _axes(data.get("axes") or {}, s)
    needed = X_AXES[x]
    if needed and not any(a in axes for a in needed) and not (x == "data" and _rule_name(data, "tokens") != "constant"):
        raise ConfigError(f"{s}: axes: x is {x!r} but none of {', '.join(needed)} is an axis; add one")
    description = data.get("description", "")
    _type(description, str, s, "description")
    return SweepSpec(name=name, x=x, path=s, scale=chosen, families=tuple(families), seeds=tuple(seeds),
                     base=base, rules=_rules(data.get("rules") or {}, s, axes), axes=axes,
                     resources=_resources(data.get("resources") or {}, s),
                     slurm=_slurm((data.get("backend") or {}).get("slurm") or {}, s),
                     ray=_ray((data.get("backend") or {}).get("ray") or {}, s),
                     head_dim=head_dim, est_flops_per_s=float(est), description=description,
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
            raise ConfigError(f"{s}: {prefix}{k}: unknown key; allowed keys are {', '.join(sorted(allowed))}")


def _type(v, tp, s: str, key: str) -> None:
    if not isinstance(v, tp) or isinstance(v, bool) and tp is not bool:
        want = getattr(tp, "__name__", str(tp))
        raise ConfigError(f"{s}: {key}: expected {want}, got {type(v).__name__} {v!r}")


def _number(v, s: str, key: str, integer: bool = False, positive: bool = True):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if ok and integer and isinstance(v, float):
        ok = v.is_integer()
        v = int(v) if ok else v
    if not ok or (positive and v <= 0):
        kind = "a positive integer" if integer else "a positive number"
        hint = " (YAML reads 1e9 as text: write 1.0e+9)" if isinstance(v, str) and "e" in v.lower() else ""
        raise ConfigError(f"{s}: {key}: expected {kind}, got {v!r}{hint}")
    return v


def _size(v, s: str, key: str) -> AxisSize:
    if isinstance(v, str):
        if v not in SIZE_LADDER:
            raise ConfigError(f"{s}: {key}: unknown ladder size {v!r}; allowed: {', '.join(SIZE_LADDER)}, "
                              "or a shape {n_layers, d_model, n_heads}")
        return AxisSize(label=v, size=v)
    if isinstance(v, dict):
        _keys(v, {"n_layers", "d_model", "n_heads", "label"}, s, f"{key}.")
        for k in ("n_layers", "d_model", "n_heads"):
            if k not in v:
                raise ConfigError(f"{s}: {key}.{k}: missing; a shape needs n_layers, d_model and n_heads")
        L, D, H = (_number(v[k], s, f"{key}.{k}", integer=True) for k in ("n_layers", "d_model", "n_heads"))
        return AxisSize(label=str(v.get("label", f"L{L}d{D}")), n_layers=L, d_model=D, n_heads=H)
    raise ConfigError(f"{s}: {key}: expected a ladder name or a shape mapping, got {v!r}")


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
            out[name] = (tuple(float(_number(b, s, f"{key}.budgets")) for b in budgets),
                         tuple(_size(v, s, f"{key}.sizes") for v in sizes))
            continue
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{s}: {key}: expected a non-empty list of values")
        if name == "size":
            vals = tuple(_size(v, s, key) for v in values)
        else:
            vals = tuple(_number(v, s, key, integer=True) for v in values)
        labels = [getattr(v, "label", v) for v in vals]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{s}: {key}: {labels} repeats a value; list each once")
        out[name] = vals
    if "flops" in out and ({"tokens", "size"} & set(out)):
        raise ConfigError(f"{s}: axes.flops: an isoFLOP axis sets both size and tokens; "
                          "drop axes.size and axes.tokens (list the sizes under flops.sizes)")
    if "size" in out and ({"depth", "width"} & set(out)):
        raise ConfigError(f"{s}: axes.size: a ladder size fixes depth and width; drop axes.depth/axes.width "
                          "or use explicit shapes under axes.size")
    return out


def _rule_name(data: dict, kind: str) -> str:
    r = (data.get("rules") or {}).get(kind, "constant")
    return r.get("name", "constant") if isinstance(r, dict) else r


def _rules(rules: dict, s: str, axes: dict) -> dict:
    _type(rules, dict, s, "rules")
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
        if r not in RULES[kind]:
            raise ConfigError(f"{s}: rules.{kind}: unknown rule {r!r}; allowed: {', '.join(RULES[kind])}")
        if r != "constant":
            import inspect
            params = inspect.signature(RULES[kind][r]).parameters
            for k, v in kwargs.items():
                if k not in params or k == "n_params":
                    raise ConfigError(f"{s}: rules.{kind}.{k}: {r} has no option {k!r}; options: "
                                      f"{', '.join(p for p in params if p != 'n_params') or 'none'}")
                _number(v, s, f"rules.{kind}.{k}")
        clash = {"batch": ("batch_size",), "tokens": ("tokens", "flops")}.get(kind, ())
        if r != "constant" and any(a in axes for a in clash):
            raise ConfigError(f"{s}: rules.{kind}: {r} would overwrite axes.{[a for a in clash if a in axes][0]}; "
                              f"set rules.{kind} to constant or drop that axis")
        out[kind] = (r, kwargs)
    return out


def _resources(r: dict, s: str) -> Resources:
    _type(r, dict, s, "resources")
    _keys(r, {"cpus", "gpus"}, s, "resources.")
    cpus = _number(r.get("cpus", 1), s, "resources.cpus")
    gpus = r.get("gpus", 0)
    if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or gpus < 0:
        raise ConfigError(f"{s}: resources.gpus: expected a number >= 0 (fractions share a GPU), got {gpus!r}")
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError(f"{s}: resources.gpus: {gpus} mixes whole and fractional GPUs; use a fraction "
                          "below 1 or a whole number")
    return Resources(cpus=float(cpus), gpus=float(gpus))


def _typed_section(d: dict, spec: dict, s: str, prefix: str) -> dict:
    _type(d, dict, s, prefix.rstrip("."))
    _keys(d, set(spec), s, prefix)
    for k, v in d.items():
        tp = spec[k]
        if not isinstance(v, tp) or isinstance(v, bool):
            raise ConfigError(f"{s}: {prefix}{k}: expected {getattr(tp, '__name__', 'str or int')}, got {v!r}")
    return d


def _slurm(d: dict, s: str) -> SlurmOptions:
    d = _typed_section(d, SLURM_KEYS, s, "backend.slurm.")
    if "time" in d:
        try:
            time_to_minutes(d["time"])
        except ValueError:
            raise ConfigError(f"{s}: backend.slurm.time: {d['time']!r} is not HH:MM:SS or minutes") from None
        d = {**d, "time": str(d["time"])}
    return SlurmOptions(**d)


def _ray(d: dict, s: str) -> RayOptions:
    d = _typed_section(d, RAY_KEYS, s, "backend.ray.")
    if d.get("object_store_mb", 128) < 80:
        raise ConfigError(f"{s}: backend.ray.object_store_mb: Ray needs at least 80 MB")
    return RayOptions(**d)
