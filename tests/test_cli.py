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


def test_version():
    from ebt_scaling import __version__
    r = run("--version")
    assert r.returncode == 0 and __version__ in r.stdout


def test_bad_override_is_blamed_on_the_override_not_the_file(tmp_path):
    for pair, why in (("model.d_modle=5", "unknown key"), ("model.d_model=65", "not divisible"),
                      ("train.steps=abc", "expected int")):
        r = run("train", "examples/tiny.yaml", "--set", pair, "--out", str(tmp_path))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"error: --set {pair}: ") and why in r.stderr, r.stderr
    # valid alone, wrong together with the file: both are named
    r = run("train", "examples/tiny.yaml", "--set", "train.steps=100", "--out", str(tmp_path))
    assert r.returncode == 2 and "--set train.steps=100 (over examples/tiny.yaml): train.tokens" in r.stderr
    # the file's own fault stays the file's
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 65, n_heads: 2}\ntrain: {steps: 1}\n")
    r = run("train", str(bad), "--set", "train.steps=2", "--out", str(tmp_path))
    assert r.returncode == 2 and f"error: {bad}: model.d_model" in r.stderr
    assert not list(tmp_path.glob("*.parquet"))


def test_help_lists_every_choice():
    r = run("fit", "--help")
    assert all(c in r.stdout for c in ("final", "last", "best", "isoflop"))
    r = run("launch", "--help")
    assert all(c in r.stdout for c in ("tensorboard", "wandb", "mlflow", "ray", "local", "slurm"))


def test_train_prints_progress_off_a_terminal(tmp_path):
    r = run("train", "examples/tiny.yaml", "--set", "train.tokens=20480", "--set", "train.eval_every=5",
            "--set", "train.eval_tokens=1024", "--set", "train.log_every=5", "--progress-every", "0",
            "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("step ")]
    assert lines[0].startswith("step 5/10 (50%)") and "(eval)" in lines[1] and lines[-1].endswith("(final)")
    assert all("tok/s" in l and "elapsed" in l for l in lines)


def test_status_shows_progress_sorted_by_the_axis():
    r = run("status", "results/depth")
    lines = r.stdout.splitlines()
    assert lines[1].split()[:8] == ["state", "id", "family", "point", "seed", "step", "last", "metric"]
    body = [l.split() for l in lines[2:]]
    depths = [int(b[3].split("=")[1]) for b in body]
    from ebt_scaling.sweep.plan import load_plan
    trials = load_plan(str(ROOT / "sweeps/depth.yaml"), "cpu")[1]
    assert depths == sorted(depths) and len(body) == len(trials)
    from ebt_scaling.sweep.plan import plan_frame
    (n,) = set(plan_frame(trials)["steps"])            # every trial finished all its steps
    assert all(b[5] == f"{n}/{n}" and b[6] == "val" and float(b[7]) > 0 for b in body)
