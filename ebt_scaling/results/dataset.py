"""A results folder as one dataset: every row file, each trial's rows once, and which
sweeps each trial belongs to.

    results/<sweep>/<trial id>.parquet        rows (the only parquet files of the tree)
    results/<sweep>/think/<trial id>.parquet  System-2 rows (`ebt-sweep think --out ...`)
    results/<sweep>/_state/                   bookkeeping: plan.json, manifest.json, logs/,
                                              ckpt/, locks/, tracking/ (execute/layout.py Layout)

Readers of parquet datasets (pyarrow, pandas, polars, duckdb's `**/*.parquet`) skip
paths that start with "_" or ".", so `pd.read_parquet("results/")` reads every row in
one call. A trial that two sweeps share (same config, same id) is trained and stored
once, in the sweep that ran it first; the other sweep lists it in its
_state/plan.json. So each trial's rows appear once in the dataset; `members` tells
which sweeps a trial belongs to, and the fitter counts it in each. Should two copies
exist anyway (two launchers trained it at the same moment), `dedupe` keeps one.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

STATE_DIR = "_state"          # per sweep: everything that is not rows
PLAN_FILE = "plan.json"


def hidden(path: Path, root: Path) -> bool:
    """True for what dataset readers skip: a part below `root` starting with _ or ."""
    return any(p.startswith(("_", ".")) for p in path.relative_to(root).parts)


def row_files(root: Path, suffix: str = ".parquet") -> list[Path]:
    """The row files under `root`, in path order, without the hidden ones."""
    root = Path(root)
    return sorted(p for p in root.rglob(f"*{suffix}") if p.is_file() and not hidden(p, root))


def borrowed(folder: Path) -> dict[Path, Path]:
    """For one sweep's folder: {file elsewhere: where this sweep would keep it} for its
    member trials whose rows are stored in a sibling sweep's folder (shared trials)."""
    folder = Path(folder)
    plan = folder / STATE_DIR / PLAN_FILE
    if not plan.exists():
        return {}
    own = {p.stem for p in folder.glob("*.parquet")}
    out = {}
    for tid in sorted(members(folder).get(_sweep_name(plan), set()) - own):
        found = sorted(p for p in folder.parent.glob(f"*/{tid}.parquet") if not hidden(p, folder.parent))
        if found:
            out[found[0]] = folder / found[0].name
    return out


def _sweep_name(plan: Path) -> str:
    try:
        return json.loads(plan.read_text()).get("sweep") or plan.parent.parent.name
    except (OSError, json.JSONDecodeError):
        return plan.parent.parent.name


def members(root: Path) -> dict[str, set[str]]:
    """{sweep: trial ids} from each <sweep>/_state/plan.json below `root` (the root
    itself may be one sweep's folder)."""
    root = Path(root)
    out: dict[str, set[str]] = {}
    for plan in sorted(root.glob(f"{STATE_DIR}/{PLAN_FILE}")) + sorted(root.glob(f"*/{STATE_DIR}/{PLAN_FILE}")):
        try:
            data = json.loads(plan.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        sweep = data.get("sweep") or plan.parent.parent.name
        out.setdefault(sweep, set()).update(data.get("trials", {}))
    return out


def dedupe(frame: pd.DataFrame, file_column: str = "_file") -> tuple[pd.DataFrame, list[str]]:
    """Keep one file's rows per (trial, training or think rows) when several files hold
    them; prefer a file with a finished (ok) final row, then the first in path order.
    Returns the rows and the files left out."""
    if frame.empty or "trial_id" not in frame.columns or frame[file_column].nunique() <= 1:
        return frame, []
    think = frame["kind"].astype(str).eq("think") if "kind" in frame.columns else False
    key = frame["trial_id"].astype(str) + "/" + pd.Series(think, index=frame.index).map({True: "think",
                                                                                         False: "rows"})
    ok = frame["kind"].astype(str).eq("final") & frame["status"].astype(str).eq("ok")
    files = (pd.DataFrame({"key": key, "file": frame[file_column], "ok": ok})
             .groupby(["key", "file"], sort=False)["ok"].any().reset_index())
    files = files.sort_values(["key", "ok", "file"], ascending=[True, False, True], kind="mergesort")
    keep = set(map(tuple, files.groupby("key").head(1)[["key", "file"]].to_numpy()))
    chosen = [(k, f) in keep for k, f in zip(key, frame[file_column])]
    dropped = sorted(set(frame.loc[[not c for c in chosen], file_column]))
    return frame[chosen], dropped
