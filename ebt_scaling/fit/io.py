"""Read result rows, pick each trial's evaluation, and work out what a sweep varied.

The fitter's input is the parquet written by the results store (one row schema,
ebt_scaling/results/schema.py), or a CSV of the same columns, or the Chinchilla
points CSV used to validate the fitter. Everything a user can get wrong here
(wrong path, empty folder, missing column, no finished trial) raises ValueError
with a sentence naming the file and the fix; anything that still allows a
partial fit (a failed trial, a NaN loss) becomes a note for the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ebt_scaling.results import dataset
from ebt_scaling.results.outcome import unfinished_ids
from ebt_scaling.results.schema import SCHEMA_VERSION, check_columns

#: axis name -> the column holding its x value
AXES: dict[str, str] = {
    "data": "total_tokens",
    "batch": "batch_tokens",
    "depth": "n_layers",
    "width": "d_model",
    "params": "n_params",
    "flops": "flops",          # final cumulative training FLOPs
}
BASELINE = "transformer_pp"
CHINCHILLA_COLUMNS = ("Model Size", "Training FLOP", "loss")
SELECT_MODES = ("final", "last", "best")

# A sweep named after an axis fits that axis. "params" and "flops" are the
# same runs in the paper (models of several sizes, equal steps), drawn once
# against N and once against training FLOPs (its figure 5), so either name
# fits both.
SWEEP_AXES: dict[str, tuple[str, ...]] = {
    "data": ("data",), "tokens": ("data",),
    "batch": ("batch",),
    "depth": ("depth",), "layers": ("depth",),
    "width": ("width",),
    "params": ("params", "flops"), "size": ("params", "flops"),
    "flops": ("flops", "params"), "compute": ("flops", "params"),
}


@dataclass(frozen=True)
class Table:
    """Rows read from `source` (a folder, a parquet file or a CSV)."""

    frame: pd.DataFrame
    source: str
    files: tuple[str, ...]
    # {sweep: trial ids} from the sweeps' _state/plan.json (results/dataset.py): a trial two
    # sweeps share is stored once and counted in both when points are selected
    members: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def is_chinchilla(self) -> bool:
        return all(c in self.frame.columns for c in CHINCHILLA_COLUMNS)


def read_results(source) -> Table:
    """Read a results folder (every *.parquet below it), one .parquet, or a .csv."""
    path = Path(source)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder; pass a results folder "
                         "(e.g. results/), a .parquet file or a .csv file")
    if path.is_dir():
        files = dataset.row_files(path)
        if not files:
            csvs = dataset.row_files(path, ".csv")
            if not csvs:
                raise ValueError(f"{path}: folder holds no *.parquet (or *.csv) result files; "
                                 "run a sweep first (ebt-sweep launch ...) or point at the folder it wrote")
            files = csvs
    else:
        files = [path]
    # one sweep's folder: its shared trials stored in a sibling folder count here too
    shared = dataset.borrowed(path) if path.is_dir() else {}
    sweep_of_folder = next(iter(dataset.members(path)), "") if shared else ""
    place = {f: f for f in files} | shared
    files = sorted(place, key=lambda f: str(place[f]))
    frames = []
    for f in files:
        frame = _read_one(f)
        if is_plain(frame):
            frame = from_plain(frame, str(f))
        if f in shared:
            frame["sweep"] = sweep_of_folder
        if not all(c in frame.columns for c in CHINCHILLA_COLUMNS):
            check_columns(frame.columns, str(f))
            if "schema_version" in frame.columns and len(frame):
                newest = pd.to_numeric(frame["schema_version"], errors="coerce").max()
                if np.isfinite(newest) and newest > SCHEMA_VERSION:
                    raise ValueError(
                        f"{f}: rows have schema_version {int(newest)}, newer than this "
                        f"package's {SCHEMA_VERSION}; upgrade ebt-scaling to read them")
        frame["_file"] = str(place[f])
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.empty:
        raise ValueError(f"{path}: the result files hold no rows; run the sweep (or wait for it) first")
    notes = []
    if "trial_id" in frame.columns and "kind" in frame.columns:
        frame, dropped = dataset.dedupe(frame)
        if dropped:
            notes.append(f"{len(dropped)} file(s) repeat rows of trials stored elsewhere and were "
                         f"left out: {_some(dropped)}")
    return Table(frame=frame.reset_index(drop=True), source=str(path), files=tuple(str(f) for f in files),
                 members=dataset.members(path) if path.is_dir() else {}, notes=tuple(notes))


PLAIN_METRICS = ("val_loss", "val_ppl")


def is_plain(frame: pd.DataFrame) -> bool:
    """A plain table: columns family, x and val_loss (nats) or val_ppl, no row-schema columns."""
    cols = set(frame.columns)
    return {"family", "x"} <= cols and bool(cols & set(PLAIN_METRICS)) and "trial_id" not in cols


def from_plain(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows of the schema from a plain table (family, x, val_loss or val_ppl; optional seed, axis).

    Each row is one finished trial (kind 'final', status 'ok'). `axis` names
    the swept axis (data, batch, depth, width, params, flops: x goes to that
    axis's column) or any label (x is fitted under that name); without it
    every row belongs to one axis called "x". val_ppl = exp(val_loss) fills
    whichever of the two is missing.
    """
    out = frame.copy()
    x = pd.to_numeric(out["x"], errors="coerce")
    if x.isna().all():
        raise ValueError(f"{source}: column 'x' holds no numbers; give the swept value (tokens, "
                         "layers, parameters, ...) of each row as a number")
    out["family"] = text_column(out["family"])
    axis = text_column(out["axis"]) if "axis" in out.columns else pd.Series("x", index=out.index)
    axis = axis.where(axis != "", "x")
    out["sweep"] = axis
    for name in axis.unique():
        col = AXES.get(name, name)
        m = axis == name
        if col not in out.columns:
            out[col] = np.nan
        out.loc[m, col] = x[m]
    for metric in PLAIN_METRICS:
        if metric in out.columns:
            out[metric] = pd.to_numeric(out[metric], errors="coerce")
    if "val_ppl" not in out.columns:
        out["val_ppl"] = np.exp(out["val_loss"])
    if "val_loss" not in out.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["val_loss"] = np.log(out["val_ppl"])
    seed = out["seed"].astype(str) if "seed" in out.columns else pd.Series("0", index=out.index)
    out["trial_id"] = [f"row{i}-{s}" for i, s in zip(range(len(out)), seed)]
    out["kind"], out["status"] = "final", "ok"
    out.attrs["plain_axes"] = sorted(set(axis))
    return out


def _read_one(f: Path) -> pd.DataFrame:
    suffix = f.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(f)
        if suffix == ".csv":
            return pd.read_csv(f)
    except Exception as err:  # pyarrow/pandas raise many types; the user needs the file name
        raise ValueError(f"{f}: could not be read as {suffix[1:]} ({type(err).__name__}: {err}); "
                         "the file may be truncated by an interrupted run: delete or re-run it") from err
    raise ValueError(f"{f}: unsupported file type {suffix!r}; expected .parquet or .csv")


# ---------------------------------------------------------------- selecting rows
@dataclass(frozen=True)
class Selection:
    """One row per trial (its chosen evaluation), plus what was left out and why."""

    points: pd.DataFrame
    notes: tuple[str, ...]
    n_rows_read: int
    n_trials: int
    n_failed: int


def loss_of(metric: str, values):
    """The loss (nats) behind a metric: ln(ppl) for perplexities, else the value itself.

    Offset power laws describe a loss with an irreducible floor E; on a
    perplexity metric they are fitted to its logarithm.
    """
    values = np.asarray(values, dtype=float)
    return np.log(values) if metric.endswith("ppl") else values


def select_points(table: Table, metric: str = "val_ppl", select: str = "final") -> Selection:
    """Each trial's evaluation to fit: its final row (default), last eval, or best eval.

    Rows of failed trials are left out (and counted); NaN or non-positive
    metrics are dropped with a note; the result must keep at least one row.
    """
    frame, source = table.frame, table.source
    if select not in SELECT_MODES:
        raise ValueError(f"select={select!r} is not one of {SELECT_MODES}; "
                         "'final' uses kind=='final' rows, 'last' the last eval, 'best' the lowest")
    if metric not in frame.columns:
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        raise ValueError(f"{source}: no column {metric!r} to fit; pass metric= one of "
                         f"{sorted(numeric)[:20]}")
    notes: list[str] = list(table.notes)
    status = frame["status"].astype(str)
    failed_ids = set(frame.loc[status == "failed", "trial_id"])
    kinds = frame["kind"].astype(str)
    if select == "final":   # results/outcome.py: a trial is done by its last final row only
        unfinished = unfinished_ids(frame)
        chosen = frame[(kinds == "final") & (status == "ok") & ~frame["trial_id"].isin(unfinished)]
        failed_ids |= unfinished
    else:   # eval rows say "running" (older files: "ok"); a failed trial's rows are left out
        chosen = frame[kinds.isin(["eval", "final"]) & status.isin(["ok", "running"])
                       & ~frame["trial_id"].isin(failed_ids)]
    ok_ids = set(chosen["trial_id"])
    n_failed = len(failed_ids - ok_ids)
    if n_failed:
        notes.append(f"{n_failed} failed trial(s) left out: {_some(sorted(failed_ids - ok_ids))}")
    if chosen.empty:
        present = sorted(set(kinds))
        raise ValueError(
            f"{source}: no rows with kind in {'final' if select == 'final' else 'eval/final'} "
            f"and status ok (or running, for last/best) (read {len(frame)} rows; kinds present: {present}; "
            f"{n_failed} failed trial(s)); finished trials write a kind='final' row: "
            "wait for the sweep, re-run failed trials, or pass select='last'")
    if select != "final":
        chosen = _one_per_trial(chosen, metric, select)
    chosen = _in_every_sweep(chosen, table.members)
    if "eval_set" in chosen.columns:
        sets = text_column(chosen["eval_set"])
        if sets.nunique() > 1:
            keep = sets.isin(["", "val"])
            notes.append(f"final rows cover eval sets {sorted(set(sets))}; fitting the "
                         f"in-distribution one ('' or 'val') only")
            chosen = chosen[keep] if keep.any() else chosen
    values = pd.to_numeric(chosen[metric], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        notes.append(f"{int(bad.sum())} row(s) with NaN or non-positive {metric} dropped "
                     f"(trials {_some(sorted(chosen.loc[bad, 'trial_id'].astype(str)))})")
        chosen = chosen[~bad]
    if chosen.empty:
        raise ValueError(f"{source}: every selected row has NaN or non-positive {metric}; "
                         "the runs diverged or never evaluated: check their logs, or pick "
                         "another metric with metric=")
    chosen = chosen.copy()
    for col in ("sweep", "family"):
        if col in chosen.columns:
            chosen[col] = text_column(chosen[col])
    if "sweep" not in chosen.columns:
        chosen["sweep"] = ""
    return Selection(points=chosen.reset_index(drop=True), notes=tuple(notes),
                     n_rows_read=len(frame), n_trials=int(chosen["trial_id"].nunique()),
                     n_failed=n_failed)


def check_val_hash(points: pd.DataFrame) -> None:
    """Refuse to compare points of one sweep scored on different validation tokens.

    Rows carry `val_hash` (the held-out set and the windows scored); rows written
    before that column existed have none, which counts as unknown, not as a mismatch.
    """
    if "val_hash" not in points.columns:
        return
    for sweep, rows in points.groupby("sweep", sort=True):
        hashes = text_column(rows["val_hash"])
        groups = rows[hashes != ""].groupby(hashes[hashes != ""])["trial_id"]
        if len(groups) > 1:
            which = "; ".join(f"val_hash {h}: trials {_some(sorted(map(str, ids)))}" for h, ids in groups)
            raise ValueError(f"sweep {sweep!r}: its points were scored on {len(groups)} different "
                             f"validation sets ({which}); they cannot be compared. Re-run the odd "
                             "trials on the sweep's dataset and tokenizer, or fit them apart")


def _in_every_sweep(chosen: pd.DataFrame, members: dict) -> pd.DataFrame:
    """A trial that several sweeps list is stored once (results/dataset.py): add its row
    to each other sweep that lists it, as if that sweep's folder held it, so that every
    sweep's fit sees all its points in path order, and (sweep, trial_id) stays unique."""
    if not members or "sweep" not in chosen.columns:
        return chosen
    sweeps = text_column(chosen["sweep"])
    extra = []
    for sweep, ids in members.items():
        here = set(chosen.loc[sweeps == sweep, "trial_id"])
        rows = chosen[chosen["trial_id"].isin(ids - here) & (sweeps != sweep)]
        rows = rows.drop_duplicates("trial_id")
        if len(rows):
            rows = rows.assign(sweep=sweep)
            if "_file" in rows.columns:   # where this sweep would have stored it: keeps path order
                rows["_file"] = [str(Path(f).parent.parent / sweep / Path(f).name) for f in rows["_file"]]
            extra.append(rows)
    if not extra:
        return chosen
    out = pd.concat([chosen, *extra], ignore_index=True)
    return out.sort_values("_file", kind="mergesort") if "_file" in out.columns else out


def text_column(series: pd.Series) -> pd.Series:
    """A string column with "" for missing: CSV readers turn empty strings into NaN floats."""
    return series.astype(object).where(series.notna(), "").astype(str)


def _one_per_trial(rows: pd.DataFrame, metric: str, select: str) -> pd.DataFrame:
    rows = rows.assign(_final=(rows["kind"] == "final").astype(int))
    if select == "best":
        order = rows.sort_values([metric], na_position="first")
        return order.groupby("trial_id", sort=False).head(1)
    step = rows["step"] if "step" in rows.columns else pd.Series(0, index=rows.index)
    order = rows.assign(_step=step).sort_values(["_step", "_final"])
    return order.groupby("trial_id", sort=False).tail(1).drop(columns=["_step"])


def select_think(table: Table) -> pd.DataFrame:
    """System-2 rows (kind=='think', status ok); empty when the sweep had none."""
    frame = table.frame
    if "kind" not in frame.columns:
        return frame.iloc[0:0]
    return frame[(frame["kind"].astype(str) == "think") & (frame["status"].astype(str) == "ok")]


SEQUENCES_SUFFIX = "-sequences.csv"


def select_sequences(table: Table) -> pd.DataFrame:
    """Per-sequence thinking losses written beside think rows (`_<rows>-sequences.csv`), if any.

    `ebt-sweep think` writes them; older think rows have none, and their
    improvements then carry no interval."""
    frames = []
    for f in table.files:
        # "_<rows>-sequences.csv" (kept out of the parquet dataset by its "_"); older name without it
        stem = Path(f).stem
        sides = [Path(f).with_name(f"_{stem}{SEQUENCES_SUFFIX}"), Path(f).with_name(stem + SEQUENCES_SUFFIX)]
        side = next((s for s in sides if s.is_file()), sides[0])
        if side.is_file():
            try:
                frames.append(pd.read_csv(side))
            except Exception as err:  # noqa: BLE001  (the fit goes on without intervals)
                raise ValueError(f"{side}: could not be read as CSV ({type(err).__name__}: {err}); "
                                 "delete it (the improvements then have no interval) or re-run think") from err
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _some(items, k: int = 5) -> str:
    items = list(items)
    return ", ".join(map(str, items[:k])) + (f" and {len(items) - k} more" if len(items) > k else "")


# ---------------------------------------------------------------- which axes varied
@dataclass(frozen=True)
class AxisPlan:
    """Fit `axis` (x taken from `x_column`) on the rows of `sweep`."""

    sweep: str
    axis: str
    x_column: str
    reason: str


# Which varying columns are consequences of another: FLOPs change with any
# change of size or tokens; N changes with depth and width; a batch sweep at
# fixed steps changes the token budget too. What is left is what was swept.
def _primary_axes(varied: set[str], points: pd.DataFrame) -> set[str]:
    left = set(varied)
    if left - {"flops"}:
        left.discard("flops")
    if left & {"depth", "width"}:
        left.discard("params")
    if {"batch", "data"} <= left and _constant(points, "total_steps"):
        left.discard("data")
    if {"depth", "width"} <= left:
        left -= {"depth", "width"}
        left.add("params")
    return left


def _constant(points: pd.DataFrame, column: str) -> bool:
    return column in points.columns and points[column].nunique(dropna=True) <= 1


def varied_axes(points: pd.DataFrame) -> set[str]:
    """Axes along which some family has >= 2 distinct values."""
    out = set()
    for axis, col in AXES.items():
        if col not in points.columns:
            continue
        counts = points.groupby("family")[col].nunique(dropna=True)
        if (counts >= 2).any():
            out.add(axis)
    return out


def plan_axes(points: pd.DataFrame, axes=None) -> tuple[list[AxisPlan], list[str]]:
    """Which (sweep, axis) pairs to fit, and notes on what could not be decided.

    `axes`: names from AXES (or any numeric column) to fit on every sweep's rows,
    overriding detection. Otherwise a sweep named after an axis fits that axis
    (see SWEEP_AXES), a "thinking" sweep fits none, and any other sweep fits
    the one axis it varies once consequences are discounted.
    """
    plans: list[AxisPlan] = []
    notes: list[str] = []
    if axes is not None:
        axes = [axes] if isinstance(axes, str) else list(axes)
        if not axes:
            raise ValueError("axes=[] names no axis; leave it out to detect the swept axes")
        for name in axes:
            if name not in AXES and name not in points.columns and name != "isoflop":
                raise ValueError(f"unknown axis {name!r}; use one of {sorted(AXES) + ['isoflop']} "
                                 "or a numeric column of the results")
    for sweep, rows in points.groupby("sweep", sort=True):
        if axes is not None:
            for name in axes:
                if name != "isoflop":   # an analysis, not a line: see api._is_isoflop
                    plans.append(AxisPlan(sweep, name, AXES.get(name, name), "requested"))
            continue
        key = sweep.lower().strip()
        if "think" in key:
            continue
        if key not in SWEEP_AXES and key not in AXES and sweep in rows.columns and sweep not in (
                "sweep", "family") and pd.api.types.is_numeric_dtype(rows[sweep]):
            # a plain table's own axis label (column `axis`, or "x"): x is in the column of that name
            plans.append(AxisPlan(sweep, sweep, sweep, f"axis {sweep!r} of a plain table"))
            continue
        named = SWEEP_AXES.get(key) or next(
            (v for k, v in SWEEP_AXES.items() if k in key.replace("-", "_").split("_")), None)
        varied = varied_axes(rows)
        if named:
            for name in named:
                if name in varied or name == named[0]:
                    plans.append(AxisPlan(sweep, name, AXES[name], f"sweep name {sweep!r}"))
            continue
        primary = _primary_axes(varied, rows)
        label = f"sweep {sweep!r}" if sweep else "rows without a sweep name"
        if len(primary) == 1:
            name = primary.pop()
            plans.append(AxisPlan(sweep, name, AXES[name], f"{label} varies only {name}"))
            if name == "params" and "flops" in varied:
                plans.append(AxisPlan(sweep, "flops", AXES["flops"], f"{label}: FLOPs of the params sweep"))
        elif not primary:
            notes.append(f"{label}: no axis varies ({len(rows)} point(s)); nothing to fit")
        else:
            notes.append(f"{label} varies several axes {sorted(primary)}; pass axes=[...] "
                         "(ebt-sweep fit --axis NAME) to say which to fit")
    return plans, notes
