"""The one row schema of every parquet file under results/.

A `Row` is one observation of one trial: a training log line (kind="train"), a
held-out evaluation (kind="eval"), the trial's final evaluation (kind="final"), or
one System-2 measurement (kind="think"). Its fields are the parquet columns, in
this order. Columns that do not apply to a row are NaN (floats) or "" (strings).

Bump SCHEMA_VERSION whenever a column is added, removed or changes meaning;
readers check it (see `check_columns`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import pyarrow as pa

SCHEMA_VERSION = 2

ROW_KINDS = ("train", "eval", "final", "think")
STATUSES = ("ok", "failed", "running")

NaN = math.nan


@dataclass
class Row:
    # --- identity
    trial_id: str                    # hash of the fully resolved config (+ seed)
    family: str                      # "transformer_pp" | "ebt_s1" | "ebt_s2" | custom
    kind: str                        # one of ROW_KINDS
    sweep: str = ""                  # name of the sweep spec, "" for a lone `train`
    config_hash: str = ""            # hash of the config without the seed
    seed: int = 0
    schema_version: int = SCHEMA_VERSION
    # --- hyperparameters (flat copies of the config; the full config is config_json)
    n_layers: int = 0
    d_model: int = 0
    n_heads: int = 0
    d_ffn: int = 0
    vocab_size: int = 0
    seq_len: int = 0
    batch_size: int = 0              # sequences per optimiser step
    batch_tokens: int = 0            # batch_size * seq_len
    total_steps: int = 0
    total_tokens: int = 0            # the trial's token budget D
    peak_lr: float = NaN
    weight_decay: float = NaN
    n_params: int = 0                # non-embedding parameters N
    n_params_total: int = 0          # every parameter
    flops_per_token: float = NaN     # analytic training FLOPs per token (see flops.py)
    dataset: str = ""                # training corpus name
    val_hash: str = ""               # the held-out tokens and windows scored ("" in rows before v2)
    config_json: str = ""            # the full resolved config
    # --- progress
    step: int = 0
    tokens: int = 0                  # tokens seen so far (exact)
    flops: float = 0.0               # cumulative training FLOPs so far
    # --- metrics
    train_loss: float = NaN          # nats per token
    val_loss: float = NaN            # nats per token on held-out data
    val_ppl: float = NaN             # exp(val_loss)
    lr: float = NaN                  # learning rate at this step
    grad_norm: float = NaN
    wall_time: float = NaN           # seconds since the trial started
    tokens_per_s: float = NaN
    mfu: float = NaN                 # achieved / peak FLOP/s (NaN when the peak is unknown)
    # --- EBT
    ebt_steps: float = NaN           # optimisation steps (mean when randomised); in think
                                     # rows the point's own eval steps (think_steps: the row's)
    ebt_alpha: float = NaN           # step size (learnable or base value)
    energy_first: float = NaN        # mean energy at the start of thinking (*)
    energy_last: float = NaN         # mean energy at the end of thinking (*)
    # (*) train/eval rows: energies of the first and last step's input, Langevin noise
    #     included (what the model scored while thinking); think rows: noise-free, at the
    #     random start and after the row's steps (best-of-N: the kept candidates)
    # --- System-2 evaluation (kind="think")
    eval_set: str = ""               # held-out set name, e.g. "val", "ood:dyck"
    think_steps: int = 0             # optimisation steps at inference (1 for T++)
    n_candidates: int = 0            # best-of-N self-verification
    forward_passes: int = 0          # think_steps * n_candidates
    ood_ratio: float = NaN           # ppl on this set / in-distribution ppl
    # --- outcome and provenance
    status: str = "ok"               # one of STATUSES: "running" on train/eval rows while the
                                     # trial runs; when it ends, every row takes its outcome,
                                     # "ok" or "failed" (the final row's); "ok" on think rows
    error: str = ""                  # reason when status == "failed"
    device: str = ""
    dtype: str = ""
    package_version: str = ""
    time_unix: float = NaN           # when the row was made

    def asdict(self) -> dict:
        return dataclasses.asdict(self)


_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string()}


def arrow_schema() -> pa.Schema:
    """The parquet schema, derived from the dataclass so the two cannot drift."""
    types = {"int": int, "float": float, "str": str}
    return pa.schema([(f.name, _ARROW[types[f.type]]) for f in fields(Row)])


COLUMNS = tuple(f.name for f in fields(Row))


def check_columns(columns, source: str) -> None:
    """Raise ValueError naming `source` when required columns are missing."""
    required = ("trial_id", "family", "kind", "status")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; expected the ebt-scaling row schema "
            f"(ebt_scaling/results/schema.py, version {SCHEMA_VERSION})")
