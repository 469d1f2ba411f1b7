"""Experiment trackers see every row, offline, and their files read back to the rows.

Each tracker's test skips only when its package is absent; `make test` installs the
`track` extra, so in CI none skips."""
import glob
import math
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ebt_scaling.results.store import MemorySink
from ebt_scaling.results.trackers import metrics_of
from ebt_scaling.train import train

ROOT = Path(__file__).resolve().parents[1]


def tracked(tiny_cfg, track, tmp_path):
    cfg = tiny_cfg()
    return replace(cfg, train=replace(cfg.train, track=track, track_dir=str(tmp_path / "trk")))


def expected(rows, kind, column):
    return {r.step: getattr(r, column) for r in rows if r.kind == kind and math.isfinite(getattr(r, column))}


def test_metrics_of_names_each_kind_and_skips_nan(tiny_cfg):
    sink = MemorySink()
    train(tiny_cfg(), sink)
    tr = next(r for r in sink.rows if r.kind == "train")
    ev = next(r for r in sink.rows if r.kind == "eval")
    m = metrics_of(tr)
    assert m["train/loss"] == tr.train_loss and "eval/loss" not in m and "train/ebt_alpha" not in m
    assert metrics_of(ev)["eval/ppl"] == ev.val_ppl and metrics_of(ev)["progress/tokens"] == ev.tokens


def test_tensorboard_event_files_hold_every_row(tiny_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    sink = MemorySink()
    s = train(tracked(tiny_cfg, "tensorboard", tmp_path), sink)
    assert s.status == "ok"
    [run] = list((tmp_path / "trk" / "tensorboard").iterdir())
    assert run.name == s.trial_id
    acc = EventAccumulator(str(run))
    acc.Reload()
    got = {e.step: e.value for e in acc.Scalars("train/loss")}
    want = expected(sink.rows, "train", "train_loss")
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], rel=1e-6) for k in want)
    assert {e.step for e in acc.Scalars("eval/loss")} == set(expected(sink.rows, "eval", "val_loss"))
    [fin] = acc.Scalars("final/ppl")
    assert fin.step == s.steps and fin.value == pytest.approx(s.val_ppl, rel=1e-6)


def _wandb_records(path):
    """The records of a .wandb file: W&B's 7-byte header, then LevelDB log records
    (32 KiB blocks; per record crc32c, length, type) holding protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk      # FULL/FIRST start a record
        if kind in (1, 4):                                   # FULL/LAST end one
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def _key(item) -> str:   # W&B stores "train/loss" as a key or as the nested key (train, loss)
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_run_holds_every_row(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = MemorySink()
    s = train(tracked(tiny_cfg, "wandb", tmp_path), sink, sweep="demo")
    assert s.status == "ok"
    import wandb
    wandb.teardown()     # W&B's service writes the run file in the background; this waits for it
    [f] = glob.glob(str(tmp_path / "trk" / "wandb" / "offline-run-*" / "*.wandb"))
    history, runs, summary = {}, [], {}
    for rec in _wandb_records(f):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            items = {_key(i): float(i.value_json) for i in rec.history.item if i.value_json[0] != '"'}
            history.setdefault(rec.history.step.num, {}).update(items)
        elif kind == "run":
            runs.append(rec.run)
        elif kind == "summary":
            summary.update({_key(i): i.value_json for i in rec.summary.update})
    assert runs[0].run_id == f"demo-{s.trial_id}" and runs[0].run_group == "demo"
    want = expected(sink.rows, "train", "train_loss")
    assert {k: v["train/loss"] for k, v in history.items() if "train/loss" in v} == pytest.approx(want)
    assert history[s.steps]["final/ppl"] == pytest.approx(s.val_ppl)
    assert summary["status"] == '"ok"'


def test_mlflow_file_store_holds_every_row(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from mlflow.tracking import MlflowClient
    sink = MemorySink()
    s = train(tracked(tiny_cfg, "mlflow", tmp_path), sink, sweep="demo")
    assert s.status == "ok"
    client = MlflowClient(tracking_uri=(tmp_path / "trk" / "mlruns").as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    assert run.info.run_name == s.trial_id and run.info.status == "FINISHED"
    assert run.data.tags["status"] == "ok" and run.data.params["model.d_model"] == "32"
    got = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert got == pytest.approx(expected(sink.rows, "train", "train_loss"))


def test_a_broken_tracker_never_fails_the_trial(tiny_cfg, tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorboard")
    import torch.utils.tensorboard as tb

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(tb, "SummaryWriter", boom)
    sink = MemorySink()
    s = train(tracked(tiny_cfg, "tensorboard", tmp_path), sink)
    assert s.status == "ok" and sink.rows[-1].kind == "final"
    assert "tensorboard logging switched off" in capsys.readouterr().err


def test_unknown_tracker_is_a_config_error_before_work(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ebt_scaling.cli", "train", "examples/tiny.yaml",
                        "--track", "tensorbored", "--out", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "--track" in r.stderr and "tensorbored" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.rglob("*.parquet"))


def test_think_rows_reach_the_tracker(tiny_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ebt_scaling.cli import main
    cfg = tiny_cfg("ebt", ebt={"preset": "ebt_s2"})
    cfg = replace(cfg, train=replace(cfg.train, checkpoint_dir=str(tmp_path / "ck")))
    s = train(cfg, MemorySink())
    out = tmp_path / "think" / "rows.parquet"
    assert main(["think", str(tmp_path / "ck" / "last.pt"), "--sets", "val", "--steps", "1,2",
                 "--candidates", "1", "--tokens", "256", "--out", str(out), "--track", "tensorboard"]) == 0
    acc = EventAccumulator(str(tmp_path / "think" / "_tracking" / "tensorboard" / s.trial_id))
    acc.Reload()
    assert {"think/val/ppl_steps1_n1", "think/val/ppl_steps2_n1"} <= set(acc.Tags()["scalars"])
    # the tracker's folder sits beside the rows and is not read as rows
    assert len(pd.read_parquet(tmp_path / "think")) == len(pd.read_parquet(out)) >= 2


def test_only_the_rank_that_writes_rows_opens_trackers(tiny_cfg, tmp_path, monkeypatch):
    """A point trained by k ranks is one run in the tracker: ranks 1..k-1 open none."""
    import ebt_scaling.results.trackers as trackers
    import ebt_scaling.train.loop as loop
    opened = []
    monkeypatch.setattr(trackers, "make_trackers", lambda *a, **k: opened.append(a) or [])
    monkeypatch.setattr(loop, "_train", lambda cfg, sink, *a: loop.Summary("t", "ok"))
    cfg = tracked(tiny_cfg, "tensorboard", tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    train(cfg, MemorySink())
    assert opened == []
    monkeypatch.setenv("RANK", "0")
    train(cfg, MemorySink())
    assert len(opened) == 1
