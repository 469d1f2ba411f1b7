"""Mutated inputs and the judge of what became of each (tests/test_fuzz_inputs.py drives it
with hypothesis; benchmarks/fuzz_specs.py draws a fixed set and prints the counts).

A case starts from a shipped sweep spec (sweeps/*.yaml) or point config (examples/*.yaml)
and makes one mutation: a key deleted, a value replaced (a wrong type, a huge, negative,
zero or non-finite number, a long string, a device or file that is not there), an unknown
key added, a line repeated (a duplicate key), an alias bomb or a deep nesting put in a
value. It then goes through what the commands do before any work: a spec through
`ebt-sweep plan` (every preset) and launch's pre-flight of every trial, a point config
through `train`'s loading and pre-flight. Good outcomes:

- a clean error: ConfigError (exit 2 for plan) whose message starts with the file, names
  a key (or the YAML line at fault), and is at most MAX_MESSAGE characters;
- or a plan that would train: every trial's config within its LIMITS and a sane envelope
  (finite numbers, 64-bit integers, at least one step, finite FLOPs and time), for
  mutations that may be valid (an unknown key, a duplicate, NaN, 1e30 or an alias bomb
  never are).

Anything else (a traceback, a run past TIME_LIMIT seconds, an unnamed or unbounded
message, a bad value accepted) is a bad outcome.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
import signal
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

import yaml

from ebt_scaling.cli import main
from ebt_scaling.config import (INT64_MAX, Config, ConfigError, DataConfig, EBTConfig, ModelConfig, OptimConfig,
                                TrainConfig, load_config)
from ebt_scaling.sweep.spec import AXES, TOP_KEYS, RayOptions, Resources, SlurmOptions
from ebt_scaling.sweep.plan import load_plan
from ebt_scaling.train.preflight import check_runnable

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "sweeps").glob("*.yaml"))
POINTS = sorted((ROOT / "examples").glob("*.yaml"))
MAX_MESSAGE = 1000
TIME_LIMIT = 10.0


class Raw(str):
    """YAML text put into a document as it is (.nan, an alias bomb)."""


class Twice(dict):
    """A mapping written with its first key twice."""


NAN, INF = Raw(".nan"), Raw("-.inf")
ALIAS_BOMB = Raw("[" + ", ".join(
    [f"&a0 [{', '.join(['lol'] * 9)}]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]) + "]")
DEEP = Raw("[" * 300 + "]" * 300)
# values that are wrong everywhere: no key may accept them
NEVER_VALID = [NAN, INF, Raw("1e30"), 10 ** 30, ALIAS_BOMB, DEEP, Raw("!!python/object/apply:os.getcwd []"),
               Raw("9" * 5000), Raw("!!binary aGVsbG8=")]
# values that some keys accept: the case is good either way, if what is accepted is sane
MAYBE_VALID = [-1, -5, 0, 1, 0.5, 1e-300, 2 ** 31, 2 ** 63 - 1, 3.5, "text", "x" * 20000, True, None, [], {},
               [1, 2], {"a": 1}, "tpu", "cuda", "cuda:7", "/nonexistent/corpus.txt", "../up", "file",
               Raw("2020-01-01"), Raw("!!set {a, b}"), Raw("0x1F"), Raw("1_000"), Raw("'\\t'"), Raw("~")]
KINDS = ("delete", "replace", "never_valid", "set_key", "unknown_key", "duplicate_key", "repeat_line",
         "missing_file", "no_device", "truncate")


def _schema(cls, prefix: str) -> list[str]:
    out = []
    for f in fields(cls):
        t = f.type if not isinstance(f.type, str) else getattr(cls, "__annotations__", {}).get(f.name)
        sub = {"model": ModelConfig, "ebt": EBTConfig, "optim": OptimConfig, "data": DataConfig,
               "train": TrainConfig}.get(f.name) if cls is Config else None
        out.extend(_schema(sub, f"{prefix}{f.name}.") if sub else [f"{prefix}{f.name}"])
    return out


# every key a point config may set, and every key of a spec (its base: the point keys)
POINT_KEYS = _schema(Config, "")
SPEC_KEYS = (["base." + k for k in POINT_KEYS] + [f"resources.{f.name}" for f in fields(Resources)]
             + [f"backend.slurm.{f.name}" for f in fields(SlurmOptions)]
             + [f"backend.ray.{f.name}" for f in fields(RayOptions)]
             + [f"axes.{a}" for a in AXES] + ["axes.flops.budgets", "rules.lr", "rules.batch.ref_batch",
                                              "rules.batch.multiple", "rules.tokens.ratio"]
             + sorted(TOP_KEYS - {"base", "axes", "rules", "resources", "backend"}))


@dataclass
class Case:
    source: Path            # the shipped file mutated
    kind: str
    detail: str             # which key or line, and what was put there
    text: str               # the mutated YAML
    must_fail: bool
    scale: str = "cpu"


# --------------------------------------------------------------------------- making cases
def emit(v) -> str:
    """YAML (flow style) for a tree that may hold Raw text and Twice mappings."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, dict):
        items = [f"{json.dumps(str(k))}: {emit(x)}" for k, x in v.items()]
        if isinstance(v, Twice) and items:
            items.append(items[0])
        return "{" + ", ".join(items) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(emit(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v) if "e" in repr(v) or "." in repr(v) else f"{v}.0"
    return json.dumps(v)


def paths(tree, prefix=()) -> list[tuple]:
    """Every key path of `tree` (mapping keys and list indices), parents first."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(paths(v, prefix + (k,)))
    return out


def _at(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def make_case(choose) -> Case:
    """One mutated input. `choose(options)` picks one of a list (hypothesis or a seeded RNG)."""
    source = choose(SPECS + POINTS)
    text = source.read_text()
    tree = yaml.safe_load(text)
    kind = choose(list(KINDS))
    scale = choose(["cpu", "paper"])
    if kind == "truncate":          # the file cut short (an editor crash, a half-copied file)
        cut = choose(list(range(0, len(text), max(1, len(text) // 40))))
        return Case(source, kind, f"first {cut} characters", text[:cut], must_fail=False, scale=scale)
    if kind == "repeat_line":
        lines = text.splitlines()
        i = choose(list(range(len(lines))))
        key_line = re.match(r"\s*[A-Za-z_]\w*:(\s|$)", lines[i]) is not None
        return Case(source, kind, f"line {i + 1} twice: {lines[i].strip()[:60]}",
                    "\n".join(lines[:i + 1] + lines[i:]) + "\n", must_fail=key_line, scale=scale)
    if kind in ("missing_file", "no_device"):      # a valid config this machine cannot run
        presets = tree.get("scales") or {}       # a spec: the base that the chosen preset trains
        section = tree if source in POINTS else (presets[scale] if scale in presets else tree).setdefault("base", {})
        if kind == "missing_file":
            section["data"] = {**(section.get("data") or {}), "source": "file", "path": "/nonexistent/corpus.txt"}
        else:
            section["train"] = {**(section.get("train") or {}), "device": choose(["tpu", "cuda:63", "mps"])}
        return Case(source, kind, "data.path" if kind == "missing_file" else "train.device", emit(tree),
                    must_fail=True, scale=scale)
    if kind == "set_key":       # any key the schema has, shipped file or not, to any value
        key = choose(POINT_KEYS if source in POINTS else SPEC_KEYS)
        value = choose(NEVER_VALID + MAYBE_VALID)
        node = tree
        presets = tree.get("scales") or {}
        if source in SPECS and key.split(".")[0] in ("base", "axes", "resources", "backend", "rules") and \
                scale in presets and choose([True, False]):
            node = presets[scale]        # the chosen preset's own, not the top level's default
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        shown = value[:40] if isinstance(value, str) else value
        return Case(source, kind, f"{key} = {shown!r}", emit(tree), must_fail=value in NEVER_VALID, scale=scale)
    ps = paths(tree)
    if kind in ("unknown_key", "duplicate_key"):
        maps = [()] + [p for p in ps if isinstance(_at(tree, p), dict) and _at(tree, p)]
        p = choose(maps)
        node = _at(tree, p)
        if kind == "unknown_key":
            node["zz_unknown"] = 1
        else:
            twice = Twice(node)
            if p:
                _at(tree, p[:-1])[p[-1]] = twice
            else:
                tree = twice
        return Case(source, kind, ".".join(map(str, p)) or "<top>", emit(tree), must_fail=True, scale=scale)
    p = choose(ps)
    parent = _at(tree, p[:-1])
    if kind == "delete":
        del parent[p[-1]]
        return Case(source, kind, ".".join(map(str, p)), emit(tree), must_fail=False, scale=scale)
    value = choose(NEVER_VALID if kind == "never_valid" else MAYBE_VALID)
    parent[p[-1]] = value
    shown = value[:40] if isinstance(value, str) else value
    return Case(source, kind, f"{'.'.join(map(str, p))} = {shown!r}", emit(tree),
                must_fail=kind == "never_valid", scale=scale)


# --------------------------------------------------------------------------- judging
def envelope(cfg: Config) -> str | None:
    """What is wrong with an accepted config, independently of how it was checked: None if
    every value is within its dataclass's LIMITS and the training it asks for is sane."""
    def walk(obj, where):
        for f in fields(obj):
            v = getattr(obj, f.name)
            if is_dataclass(v):
                yield from walk(v, f"{where}{f.name}.")
                continue
            for x in (v if isinstance(v, tuple) else (v,)):
                if isinstance(x, float) and not math.isfinite(x):
                    yield f"{where}{f.name} = {x} is not finite"
                if isinstance(x, int) and not -INT64_MAX - 1 <= x <= INT64_MAX:
                    yield f"{where}{f.name} does not fit 64 bits"
                span = getattr(type(obj), "LIMITS", {}).get(f.name)
                if span and isinstance(x, (int, float)) and not isinstance(x, bool) and not span.holds(x):
                    yield f"{where}{f.name} = {x} is outside {span.describe()}"
    problems = list(walk(cfg, ""))
    m, o = cfg.model, cfg.optim
    if not (cfg.total_steps >= 1 and cfg.total_tokens <= INT64_MAX and m.d_ffn >= 1 and m.norm_eps > 0
            and m.rope_theta > 0 and o.lr > 0 and o.eps > 0 and cfg.seed >= 0 and cfg.data.seq_len >= 2):
        problems.append("a resolved value is not trainable (steps, d_ffn, eps, theta, lr, seed or seq_len)")
    return problems[0] if problems else None


def names_file_and_key(message: str, path: str) -> bool:
    """The message starts with the file and then names a key (a dotted name followed by
    ':' or a space) or the line of the YAML at fault."""
    if not message.startswith(path):
        return False
    rest = re.sub(r"^( \(preset \w+\))?( \[trial [^\]]*\])?( base)?", "", message[len(path):])
    return re.match(r": ([A-Za-z_][\w.\[\]-]*[: ]|line \d+|not valid YAML at line \d+|the top level)", rest) is not None


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def judge(case: Case, folder: Path) -> tuple[str, str]:
    """(outcome, detail): outcome is "error" or "accepted" (good) or "traceback", "hang",
    "unnamed", "long_message", "accepted_bad" (bad)."""
    path = folder / case.source.name
    path.write_text(case.text)
    is_spec = case.source in SPECS
    try:
        with time_limit(TIME_LIMIT):
            if is_spec:
                err, out = io.StringIO(), io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                    rc = main(["plan", str(path), "--scale", case.scale])
                if rc != 0:
                    message = err.getvalue().strip()
                    if rc != 2 or not message.startswith("error: ") or "\n" in message:
                        return "unnamed", f"plan exit {rc}: {message[:300]}"
                    raise ConfigError(message[len("error: "):])
                spec, trials = load_plan(path, case.scale)     # what launch does before any work
                for t in trials:
                    check_runnable(t.config, str(path))
                configs = [t.config for t in trials]
                if any(not (math.isfinite(t.flops) and math.isfinite(t.est_seconds) and t.flops > 0) for t in trials):
                    return "accepted_bad", "a trial's FLOPs or time is not finite"
            else:
                cfg = load_config(path)
                check_runnable(cfg, str(path))
                configs = [cfg]
    except ConfigError as e:
        message = str(e)
        if len(message) > MAX_MESSAGE:
            return "long_message", f"{len(message)} characters: {message[:200]}"
        if not names_file_and_key(message, str(path)):
            return "unnamed", message[:300]
        return "error", message[:300]
    except TimeoutError as e:
        return "hang", str(e)
    except Exception as e:      # noqa: BLE001 - any other exception is what the fuzz looks for
        return "traceback", f"{type(e).__name__}: {str(e)[:300]}"
    if case.must_fail:
        return "accepted_bad", "a mutation that is never valid was accepted"
    for cfg in configs:
        problem = envelope(cfg)
        if problem:
            return "accepted_bad", problem
    return "accepted", f"{len(configs)} config(s)"


GOOD = ("error", "accepted")
