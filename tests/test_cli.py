import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ebt_scaling.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


def test_help_lists_the_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("train", "think", "plan", "launch", "status", "fit"):
        assert cmd in r.stdout


def test_train_example_with_overrides_writes_rows(tmp_path):
    r = run("train", "examples/tiny.yaml", "--set", "train.tokens=20480", "--set", "train.eval_every=5",
            "--set", "train.eval_tokens=1024", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    files = list(tmp_path.glob("tiny-*.parquet"))
    assert len(files) == 1
    df = pq.read_table(files[0]).to_pandas()
    fin = df[df.kind == "final"].iloc[0]
    assert fin.status == "ok" and fin.tokens == 20480 and fin.total_steps == 10


def test_bad_config_exits_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 65, n_heads: 2}\ntrain: {steps: 1}\n")
    r = run("train", str(bad), "--out", str(tmp_path))
    assert r.returncode == 2
    assert str(bad) in r.stderr and "model.d_model" in r.stderr and not list(tmp_path.glob("*.parquet"))
