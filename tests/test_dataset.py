"""results/ is one dataset: parquet readers read every row in one call, a trial that
two sweeps share is stored (and counted) once, and the schema page lists every column."""
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pytest

from ebt_scaling import final_points, load_results
from ebt_scaling.execute.launcher import launch
from ebt_scaling.execute.layout import Layout
from ebt_scaling.execute.state import parquet_path
from ebt_scaling.execute.local import LocalExecutor
from ebt_scaling.fit.io import read_results
from ebt_scaling.results.dataset import row_files
from ebt_scaling.results.schema import COLUMNS
from ebt_scaling.sweep import plan
from ebt_scaling.sweep.spec import spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def n_rows_in_files(root):
    return sum(len(pd.read_parquet(f)) for f in row_files(root))


def test_readers_read_every_row_of_the_shipped_study_in_one_call():
    n = n_rows_in_files(RESULTS)
    df = pd.read_parquet(RESULTS)
    # every file carries every column (v1 rows migrated by scripts/migrate_rows.py: val_hash "")
    assert len(df) == n and set(df.columns) == set(COLUMNS)
    assert pads.dataset(RESULTS, format="parquet").count_rows() == n
    final = df[df["kind"] == "final"]
    assert final["trial_id"].is_unique          # no trial twice, although batch and data share four
    assert len(load_results(RESULTS)) == n
    from ebt_scaling.results.schema import arrow_schema        # and they follow the schema's types
    assert list(pd.read_parquet(RESULTS, schema=arrow_schema()).columns) == list(COLUMNS)


def test_polars_and_duckdb_read_it_too():
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    n = n_rows_in_files(RESULTS)
    assert pl.read_parquet(str(RESULTS / "**" / "*.parquet")).height == n
    got = duckdb.connect().execute(f"select count(*), count(distinct trial_id) filter (where kind = 'final') "
                     f"from read_parquet('{RESULTS}/**/*.parquet')").fetchone()
    assert got == (n, pd.read_parquet(RESULTS).query("kind == 'final'")["trial_id"].nunique())


def test_two_copies_of_a_trial_are_read_once(tmp_path):
    for sweep in ("batch", "data"):
        shutil.copytree(RESULTS / sweep, tmp_path / sweep)
    tid = sorted((RESULTS / "batch").glob("*.parquet"))[0].stem
    shutil.copy(RESULTS / "batch" / f"{tid}.parquet", tmp_path / "data" / f"{tid}.parquet")
    table = read_results(tmp_path)
    final = table.frame[table.frame["kind"] == "final"]
    assert final["trial_id"].is_unique and any("repeat rows" in n for n in table.notes)


def spec(name, depths):
    return spec_from_dict({"name": name, "x": "depth", "families": ["transformer_pp"],
                           "base": {"model": {"d_model": 32, "n_heads": 2},
                                    "data": {"source": "markov", "markov_vocab": 32, "seq_len": 16},
                                    "train": {"batch_size": 8, "steps": 10, "eval_every": 5,
                                              "eval_tokens": 256, "log_every": 5}},
                           "axes": {"depth": list(depths)}}, f"<{name}>")


def test_launch_trains_a_shared_trial_once(tmp_path):
    a, b = plan(spec("a", (1, 2))), plan(spec("b", (2, 3)))
    shared = {t.id for t in a} & {t.id for t in b}
    assert len(shared) == 1
    launch(a, LocalExecutor(in_process=True), tmp_path, progress_every=60)
    counts = launch(b, LocalExecutor(in_process=True), tmp_path, progress_every=60)
    assert counts["done"] == 2
    assert [p.name for p in (tmp_path / "b").glob("*.parquet")] == [f"{(set(t.id for t in b) - shared).pop()}.parquet"]
    assert parquet_path(Layout(tmp_path, "b"), next(iter(shared))).parent.name == "a"
    df = pd.read_parquet(tmp_path)
    assert df[df["kind"] == "final"]["trial_id"].is_unique and len(df[df["kind"] == "final"]) == 3
    pts = final_points(tmp_path)                        # the shared trial counts in both sweeps
    assert sorted(pts.groupby("sweep").size().items()) == [("a", 2), ("b", 2)]
    assert not pts.duplicated(["sweep", "trial_id"]).any()
    alone = final_points(tmp_path / "b")                # one sweep's folder borrows its shared trial
    assert len(alone) == 2 and set(alone["sweep"]) == {"b"} and shared <= set(alone["trial_id"])
    assert not list((tmp_path / "a").glob("*.json"))          # bookkeeping lives in _state/
    assert (tmp_path / "a" / "_state" / "plan.json").exists() and (tmp_path / "a" / "_state" / "logs").is_dir()


def test_the_schema_page_lists_every_column():
    page = (ROOT / "docs" / "schema.md").read_text()
    listed = [line.split("|")[1].strip().strip("`") for line in page.splitlines()
              if line.startswith("| `")]
    assert listed == list(COLUMNS)
