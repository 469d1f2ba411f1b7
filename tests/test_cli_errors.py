"""One clean error everywhere (issue 13, item 8, the input side): every command turns an
expected failure into one line naming what, where and the fix, with exit code 2, before
any work; --debug shows the traceback instead."""
import errno
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ebt_scaling.cli import main, os_error_message
from ebt_scaling.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "depth"        # the shipped study's rows


def run(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return rc, err


def one_clean_line(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), (words, err)


@pytest.fixture
def bad_point(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: {d_model: 64, n_heads: 2, norm_eps: -1}\ntrain: {steps: 2}\ntrain: {steps: 3}\n")
    return p


@pytest.fixture
def file_spec(tmp_path):
    """sweeps/depth.yaml training on a local file that is not there."""
    tree = yaml.safe_load((ROOT / "sweeps/depth.yaml").read_text())
    tree["scales"]["cpu"]["base"]["data"] = {"source": "file", "path": str(tmp_path / "corpus.txt"), "seq_len": 64}
    p = tmp_path / "depth.yaml"
    p.write_text(yaml.safe_dump(tree))
    return p


def test_train_and_prepare_stop_on_a_bad_config(capsys, tmp_path, bad_point):
    for cmd in (["train", bad_point, "--out", tmp_path / "rows"], ["prepare", bad_point]):
        one_clean_line(*run(capsys, *cmd), str(bad_point), "train: this key appears twice", "keep one")
    assert not (tmp_path / "rows").exists()


def test_a_missing_data_file_stops_train_prepare_plan_launch_before_work(capsys, tmp_path, file_spec):
    corpus = tmp_path / "corpus.txt"
    point = tmp_path / "point.yaml"
    point.write_text(f"data: {{source: file, path: {corpus}}}\ntrain: {{steps: 2}}\n")
    one_clean_line(*run(capsys, "train", point, "--out", tmp_path / "rows"), f"{point}: data.path", "does not exist")
    one_clean_line(*run(capsys, "prepare", point), f"{point}: data.path", "does not exist")
    results = tmp_path / "results"
    one_clean_line(*run(capsys, "launch", file_spec, "--scale", "cpu", "--backend", "local", "--results", results),
                   f"{file_spec} [trial transformer_pp depth=1 seed 0]: data.path", "does not exist")
    assert not results.exists() and not (tmp_path / "rows").exists()
    rc, _ = run(capsys, "plan", file_spec, "--scale", "cpu")        # plan touches nothing and probes nothing
    assert rc == 0


def test_plan_launch_status_stop_on_a_bad_spec(capsys, tmp_path):
    tree = yaml.safe_load((ROOT / "sweeps/depth.yaml").read_text())
    tree["scales"]["paper"]["backend"] = {"kube": 1}
    spec = tmp_path / "depth.yaml"
    spec.write_text(yaml.safe_dump(tree))
    for cmd in (["plan", spec, "--scale", "cpu"], ["status", spec, "--scale", "cpu", "--results", tmp_path],
                ["launch", spec, "--scale", "cpu", "--backend", "local", "--results", tmp_path / "r"]):
        one_clean_line(*run(capsys, *cmd), f"{spec} (preset paper): backend.kube: unknown key")
    assert not (tmp_path / "r").exists()
    one_clean_line(*run(capsys, "status", tmp_path / "nowhere"), "nowhere", "neither a sweep spec")


def test_slurm_nodes_that_cannot_hold_a_trial_stop_launch_before_work(capsys, tmp_path):
    one_clean_line(*run(capsys, "launch", ROOT / "sweeps/depth.yaml", "--scale", "cpu", "--backend", "slurm",
                        "--nodes", "3", "--results", tmp_path / "r"), "nodes: 3", "tasks_per_node")
    assert not (tmp_path / "r").exists()


def test_fit_think_stop_on_bad_input(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    one_clean_line(*run(capsys, "fit", tmp_path / "empty", "--out", tmp_path / "out"), "no *.parquet")
    (tmp_path / "file").write_text("")
    one_clean_line(*run(capsys, "fit", RESULTS, "--out", tmp_path / "file"), "file", "--out")
    garbage = tmp_path / "last.pt"
    garbage.write_bytes(b"not a checkpoint")
    one_clean_line(*run(capsys, "think", garbage), str(garbage), "not a checkpoint written by train")
    one_clean_line(*run(capsys, "think", tmp_path / "missing.pt"), "missing.pt", "no such file")
    one_clean_line(*run(capsys, "think", garbage, "--device", "tpu"), "--device: 'tpu' is not a device")
    one_clean_line(*run(capsys, "think", garbage, "--steps", "1,0"), "--steps '1,0': expected comma-separated")
    one_clean_line(*run(capsys, "think", garbage, "--tokens", "0"), "--tokens 0: must be >= 1")


@pytest.mark.parametrize("code, what, fix", [
    (errno.ENOSPC, "no space left on the device", "free space"),
    (errno.EACCES, "permission denied", "fix the permissions"),
    (errno.EROFS, "read-only file system", "write elsewhere"),
])
def test_disk_full_and_permission_errors_are_one_line(capsys, tmp_path, monkeypatch, code, what, fix):
    """fit writing its report on a full disk (or a folder it may not write): the OS error
    is raised where the report is written, for real, by a patched write_text."""
    import os

    def refuse(self, *a, **k):
        raise OSError(code, os.strerror(code), str(self))
    monkeypatch.setattr(Path, "write_text", refuse)
    out = tmp_path / "out"
    one_clean_line(*run(capsys, "fit", RESULTS, "--out", out), str(out), what, fix)


def test_pyarrow_style_os_errors_are_read_from_their_text():
    err = OSError("Failed to open local file '/r/x.parquet'. Detail: [errno 28] No space left on device")
    assert os_error_message(err) == ("Failed to open local file '/r/x.parquet'. Detail: [errno 28] No space left "
                                     "on device: no space left on the device; free space, or write elsewhere "
                                     "(--out / --results), then run the same command again: finished work is kept")


def test_debug_shows_the_traceback(tmp_path, bad_point):
    with pytest.raises(ConfigError):
        main(["--debug", "train", str(bad_point), "--out", str(tmp_path)])
    r = subprocess.run([sys.executable, "-m", "ebt_scaling.cli", "--debug", "plan", str(bad_point)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1 and "Traceback" in r.stderr and "ConfigError" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ebt_scaling.cli", "plan", str(bad_point)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith(f"error: {bad_point}")


@pytest.mark.parametrize("name, content, why", [
    ("corpus.parquet", b"not parquet", "could not be read as .parquet (ArrowInvalid"),
    ("corpus.jsonl", b'{"text": "a"}\n{bad json\n', "could not be read as .jsonl (JSONDecodeError"),
    ("corpus.txt", b"", "holds 0 tokens, too few"),
])
def test_a_data_file_train_cannot_use_is_one_line_and_leaves_no_temporary_file(capsys, tmp_path, monkeypatch,
                                                                              name, content, why):
    monkeypatch.setenv("EBT_CACHE", str(tmp_path / "cache"))
    (tmp_path / name).write_bytes(content)
    point = tmp_path / "point.yaml"
    point.write_text(f"data: {{source: file, path: {tmp_path / name}, seq_len: 16}}\n"
                     "train: {steps: 2, batch_size: 2, eval_tokens: 16}\n")
    one_clean_line(*run(capsys, "train", point, "--out", tmp_path / "rows", "--no-progress"),
                   f"{point}: data.path: {tmp_path / name}", why)
    assert not list((tmp_path / "cache").rglob("*.tmp*"))
