"""Bring row files written by an older schema up to the current one, in place.

A results folder that mixes rows of two schema versions (e.g. v1 files without
`val_hash` beside v2 files) reads fine with `ebt-sweep fit` and pandas, but polars and
duckdb refuse a glob over files whose columns differ. This adds every missing column of
ebt_scaling/results/schema.py with the value the schema documents for older rows ("" or
0), keeps each row's own `schema_version` (it says which version wrote the row), and
rewrites the file atomically. Files already current are left untouched.

Usage:  python scripts/migrate_rows.py results/
"""
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ebt_scaling.results.schema import Row, arrow_schema


def migrate(path: Path) -> bool:
    table = pq.read_table(path)
    schema = arrow_schema()
    missing = [f for f in schema if f.name not in table.column_names]
    if not missing:
        return False
    defaults = Row.__dataclass_fields__
    for f in missing:
        table = table.append_column(f, pa.array([defaults[f.name].default] * table.num_rows, f.type))
    table = table.select(schema.names).cast(schema)
    tmp = path.with_name(f".{path.name}.migrating")
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def main(root: str) -> int:
    files = [p for p in sorted(Path(root).rglob("*.parquet")) if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)]
    changed = sum(migrate(p) for p in files)
    print(f"{root}: {changed} of {len(files)} row files migrated to the current schema")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "results"))
