"""Writing and reading rows. Every file is written whole to a temporary name and then
renamed over the target, so a crash never leaves a half-written parquet file."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import COLUMNS, Row, arrow_schema, check_columns


def rows_to_table(rows: list[Row]) -> pa.Table:
    df = pd.DataFrame([r.asdict() for r in rows], columns=list(COLUMNS))
    return pa.Table.from_pandas(df, schema=arrow_schema(), preserve_index=False)


def write_rows_atomic(rows: list[Row], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pq.write_table(rows_to_table(rows), tmp)
        os.replace(tmp, path)
    finally:          # a failed write (a full disk) leaves no temporary file behind
        tmp.unlink(missing_ok=True)
    return path


def read_rows(path: str | Path) -> list[Row]:
    df = pq.read_table(path).to_pandas()
    check_columns(df.columns, str(path))
    names = set(COLUMNS)
    return [Row(**{k: v for k, v in rec.items() if k in names}) for rec in df.to_dict("records")]


class MemorySink:
    """Keeps rows in a list (tests, notebooks). The sink interface every row goes
    through: emit(row), flush(), truncate_after(step), close(status)."""

    def __init__(self):
        self.rows: list[Row] = []

    def emit(self, row: Row) -> None:
        self.rows.append(row)

    def flush(self) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` and any final row: a run resumed from a checkpoint
        taken at `step` (after that step's rows were emitted) makes them again."""
        self.rows = [r for r in self.rows if r.kind == "think" or (r.step <= step and r.kind != "final")]

    def close(self, status: str = "ok") -> None:
        """The trial ended: its rows that said "running" now say how it ended."""
        for r in self.rows:
            if r.status == "running":
                r.status = status


class ParquetSink(MemorySink):
    """One parquet file per trial. Rows already in the file are loaded, so a resumed
    trial appends to its own history without duplicating it."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            self.rows = read_rows(self.path)

    def flush(self) -> None:
        write_rows_atomic(self.rows, self.path)

    def close(self, status: str = "ok") -> None:
        super().close(status)
        self.flush()


class TeeSink:
    """The record (a ParquetSink, say) plus views of it (trackers, a progress bar):
    every call goes to all; `rows` are the record's."""

    def __init__(self, record, *views):
        self.record, self.views = record, [v for v in views if v is not None]

    @property
    def rows(self):
        return self.record.rows

    def emit(self, row: Row) -> None:
        self.record.emit(row)
        for v in self.views:
            v.emit(row)

    def flush(self) -> None:
        self.record.flush()
        for v in self.views:
            v.flush()

    def truncate_after(self, step: int) -> None:
        self.record.truncate_after(step)
        for v in self.views:
            v.truncate_after(step)

    def close(self, status: str = "ok") -> None:
        for s in (self.record, *self.views):
            if hasattr(s, "close"):
                s.close(status)
