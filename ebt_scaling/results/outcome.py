"""How a trial ended, from its rows: the one rule that `status`, `launch` and `fit`
share. A trial is finished when its *last* final row has status ok and a finite
validation loss; a failed final row, or an ok one whose loss is NaN/Inf (possible
with train.nan_check off, or in files written before that was checked), means
failed; rows without a final row mean the trial was cut short."""
from __future__ import annotations

import math

import pandas as pd

DONE, FAILED, PARTIAL, PENDING = "done", "failed", "partial", "pending"


def outcome(rows: dict) -> tuple[str, str]:
    """(done | failed | partial | pending, reason) of one trial's rows, given as columns
    {"kind": [...], "status": [...], "error": [...], "val_loss": [...]} in the order they
    were written (pyarrow's Table.to_pydict())."""
    kinds = rows["kind"]
    if not kinds:
        return PENDING, ""
    finals = [i for i, k in enumerate(kinds) if k == "final"]
    if not finals:
        return PARTIAL, ""
    i = finals[-1]
    if rows["status"][i] != "ok":
        return FAILED, str(rows["error"][i] or "failed (no reason recorded)")
    loss = rows["val_loss"][i]
    if loss is None or not math.isfinite(loss):
        return FAILED, f"its final row says ok but has no finite validation loss ({loss})"
    return DONE, ""


def unfinished_ids(frame: pd.DataFrame) -> set:
    """Over many trials' rows: the trials that `outcome` does not call done although
    they have a final row (their last final row on the validation set is failed, or
    ok without a finite loss)."""
    final = frame[frame["kind"].astype(str) == "final"]
    if "eval_set" in final.columns:
        final = final[final["eval_set"].astype("string").fillna("").isin(["", "val"])]
    last = final.drop_duplicates("trial_id", keep="last")
    loss = pd.to_numeric(last["val_loss"], errors="coerce")
    bad = (last["status"].astype(str) != "ok") | ~loss.map(lambda v: math.isfinite(v) if v == v else False)
    return set(last.loc[bad, "trial_id"])
