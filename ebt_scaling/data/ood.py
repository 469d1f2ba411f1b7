"""Offline out-of-distribution sets for System-2 evaluation, each of another domain than
the English plays the models train on. All are byte strings made without a network:

  ood:dyck    balanced bracket sequences over four bracket types (like BigBench Dyck)
  ood:arith   templated grade-school arithmetic word problems with worked answers
              (in the spirit of GSM8K)
  ood:python  Python source code from this interpreter's standard library

With a Hugging Face tokenizer the same texts are tokenized by it. The paper's own sets
(GSM8K, SQuAD, BigBench) need `.[hf]` and a network: `hf:<dataset>[:config]:<column>`.
"""
from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import numpy as np

from ..config import ConfigError

OOD_SETS = ("ood:dyck", "ood:arith", "ood:python")
_PY_MODULES = ("json/decoder.py", "json/encoder.py", "textwrap.py", "csv.py", "shlex.py",
               "fractions.py", "heapq.py", "bisect.py", "calendar.py", "difflib.py")


def dyck_text(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    pairs = ["()", "[]", "{}", "<>"]
    out, total = [], 0
    while total < n_chars:
        stack, s = [], []
        for _ in range(rng.randint(8, 40)):
            if stack and (rng.random() < 0.45 or len(stack) > 8):
                s.append(stack.pop())
            else:
                o, c = rng.choice(pairs)
                s.append(o)
                stack.append(c)
        s.extend(reversed(stack))
        line = " ".join(s) + "\n"
        out.append(line)
        total += len(line)
    return "".join(out)


def arith_text(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    names = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana"]
    items = ["apples", "books", "coins", "pencils", "shells", "stamps"]
    out, total = [], 0
    while total < n_chars:
        a, b, c = rng.randint(2, 60), rng.randint(2, 40), rng.randint(2, 9)
        n, m, it = rng.choice(names), rng.choice(names), rng.choice(items)
        kind = rng.randrange(3)
        if kind == 0:
            q = f"Question: {n} has {a} {it}. {m} gives {n} {b} more. How many {it} does {n} have now?\n"
            ans = f"Answer: {n} has {a} + {b} = {a + b} {it}. #### {a + b}\n\n"
        elif kind == 1:
            q = f"Question: {n} buys {c} boxes with {b} {it} in each. How many {it} is that?\n"
            ans = f"Answer: {c} * {b} = {c * b} {it}. #### {c * b}\n\n"
        else:
            q = f"Question: {n} had {a + b} {it} and gave {b} to {m}. How many are left?\n"
            ans = f"Answer: {a + b} - {b} = {a} {it}. #### {a}\n\n"
        out += [q, ans]
        total += len(q) + len(ans)
    return "".join(out)


def python_text(n_chars: int, seed: int = 0) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for rel in _PY_MODULES:
        f = root / rel
        if f.exists():
            t = f.read_text(encoding="utf-8", errors="replace")
            parts.append(t)
            total += len(t)
        if total >= n_chars:
            break
    if not parts:
        raise ConfigError(f"ood:python: no standard-library sources found under {root}")
    return "".join(parts)[:n_chars]


def ood_tokens(name: str, tokenizer, n_chars: int = 200_000) -> np.ndarray:
    makers = {"ood:dyck": dyck_text, "ood:arith": arith_text, "ood:python": python_text}
    if name in makers:
        text = makers[name](n_chars)
    elif name.startswith("hf:"):
        text = _hf_text(name, n_chars)
    else:
        raise ConfigError(f"--sets: unknown set {name!r}; use val, {', '.join(OOD_SETS)} or hf:DATASET[:CONFIG]:COLUMN")
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


def _hf_text(name: str, n_chars: int) -> str:
    parts = name[3:].split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"--sets {name!r}: expected hf:DATASET[:CONFIG]:COLUMN, e.g. hf:gsm8k:main:question")
    ds_name, column = parts[0], parts[-1]
    config = parts[1] if len(parts) == 3 else None
    try:
        import datasets
        ds = datasets.load_dataset(ds_name, config, split="test", streaming=True)
        out, total = [], 0
        for rec in ds:
            out.append(str(rec[column]) + "\n\n")
            total += len(out[-1])
            if total >= n_chars:
                break
        return "".join(out)
    except Exception as e:
        raise ConfigError(f"--sets {name!r}: could not stream it ({type(e).__name__}: {str(e)[:200]}); "
                          "needs `pip install 'ebt-scaling[hf]'` and a network") from None
