"""The token store, offline: a local parquet/jsonl dataset read through `datasets` and a
BPE tokenizer trained here with `tokenizers` on the embedded corpus."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # before `datasets` is imported: no network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest

from ebt_scaling.data.tokenizers import train_bpe

from ebt_scaling.config import ConfigError, DataConfig
from ebt_scaling.data import store
from ebt_scaling.data.sources import ArraySource, shakespeare_plays
from ebt_scaling.data.tokenizers import build_tokenizer
from ebt_scaling.fit.io import check_val_hash

ROOT = Path(__file__).resolve().parents[1]


def _docs():
    return [p for _, body in shakespeare_plays() for p in body.split("\n\n") if p.strip()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(parquet folder, jsonl folder, tokenizer A, tokenizer B): 3 shards of about 1.6 MB each."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = tmp_path_factory.mktemp("corpus")
    docs = _docs()
    pq_dir, js_dir = root / "pq", root / "js"
    pq_dir.mkdir(), js_dir.mkdir()
    for s in range(3):
        pq.write_table(pa.table({"text": docs[s::3]}), pq_dir / f"train-{s:05d}.parquet")
    with open(js_dir / "train-00000.jsonl", "w") as f:      # another dataset: the plays reversed
        for d in docs[::-1]:
            f.write(json.dumps({"text": d}) + "\n")
    tok_a = train_bpe(docs[:4000], 512, root / "bpe512.json")
    tok_b = train_bpe(docs[:4000], 384, root / "bpe384.json")
    return pq_dir, js_dir, tok_a, tok_b


def _cfg(corpus, cache, **kw):
    pq_dir, _, tok_a, _ = corpus
    base = dict(source="hf", hf_dataset=str(pq_dir), tokenizer=tok_a, val_tokens=20000, cache_dir=str(cache),
                num_proc=1, seq_len=32)
    return DataConfig(**{**base, **kw})


def test_one_validation_set_across_budgets_and_run_orders(corpus, tmp_path):
    a, b = _cfg(corpus, tmp_path / "a"), _cfg(corpus, tmp_path / "b")
    small_first = [store.ensure(a, 50_000), store.ensure(a, 400_000)]
    large_first = [store.ensure(b, 400_000), store.ensure(b, 50_000)]
    vals = [np.asarray(s.val) for s in small_first + large_first]
    assert all(np.array_equal(v, vals[0]) for v in vals)
    assert len({s.val_hash for s in small_first + large_first}) == 1
    # the larger budget extended the store: the small one's training tokens are its prefix
    assert len(small_first[0].train) >= 50_000 and len(small_first[1].train) >= 400_000
    assert np.array_equal(small_first[1].train[:len(small_first[0].train)], small_first[0].train)
    assert np.array_equal(small_first[1].train[:400_000], large_first[0].train[:400_000])
    # the validation set is the stream's first documents, and none of them is trained on
    tok = build_tokenizer(a.tokenizer)
    first = _docs()[0::3][:store.read_index(small_first[0].path)["val_docs"]]
    expect = np.concatenate([tok.encode(d) + [tok.eos_id] for d in first])
    assert np.array_equal(vals[0], expect)
    train_text = tok.decode(np.asarray(small_first[1].train[:200_000]))
    assert first[-1].strip()[:60] not in train_text


def test_two_concurrent_prepares_build_one_store(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path / "cache", num_proc=2)
    point = tmp_path / "point.yaml"
    point.write_text(textwrap.dedent(f"""\
        model: {{n_layers: 1, d_model: 16, n_heads: 2}}
        data: {json.dumps({k: getattr(cfg, k) for k in ("source", "hf_dataset", "tokenizer", "val_tokens",
                                                       "cache_dir", "num_proc", "seq_len")})}
        train: {{batch_size: 4, tokens: 320000, eval_tokens: 1024, device: cpu}}
        """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "ebt_scaling.cli", "prepare", str(point)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    idx = store.read_index(store.store_dir(cfg, build_tokenizer(cfg.tokenizer)))
    assert len(idx["sessions"]) == 1 and idx["sessions"][0]["from"] == 0          # tokenized once
    assert idx["train_tokens"] >= 320_000 + 33
    assert len(list((tmp_path / "cache" / "stores").iterdir())) == 1
    assert all("ready" in o for o in outs)


def test_an_interrupted_prepare_resumes_where_it_committed(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "DOCS_PER_BATCH", 200)
    monkeypatch.setattr(store, "COMMIT_TOKENS", 1)                 # commit after every batch
    whole = store.ensure(_cfg(corpus, tmp_path / "whole"), 300_000)
    real = store.tokenize_batches

    def dies_after_five(batches, tok, num_proc, with_lengths=False):
        for i, item in enumerate(real(batches, tok, num_proc, with_lengths)):
            if i == 5 and not with_lengths:       # the fifth batch of training tokens
                raise KeyboardInterrupt
            yield item
    cfg = _cfg(corpus, tmp_path / "cut")
    monkeypatch.setattr(store, "tokenize_batches", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        store.ensure(cfg, 300_000)
    path = store.store_dir(cfg, build_tokenizer(cfg.tokenizer))
    cut = store.read_index(path)
    assert 0 < cut["train_tokens"] < 300_000
    with open(path / "train.bin", "ab") as f:                      # a half-written chunk after the commit
        f.write(b"\xff" * 1000)
    monkeypatch.setattr(store, "tokenize_batches", real)
    resumed = store.ensure(cfg, 300_000)
    assert resumed.index["sessions"][-1]["from"] == cut["train_tokens"]
    assert np.array_equal(resumed.train, whole.train) and resumed.val_hash == whole.val_hash
    assert resumed.index["train_hash"] == whole.index["train_hash"]


def test_a_stream_that_breaks_off_stops_with_what_to_do(corpus, tmp_path, monkeypatch):
    real = store.tokenize_batches

    def breaks(batches, tok, num_proc, with_lengths=False):
        if with_lengths == breaks_in_val:
            raise OSError("connection reset by peer")
        yield from real(batches, tok, num_proc, with_lengths)
    monkeypatch.setattr(store, "tokenize_batches", breaks)
    for breaks_in_val, where in ((True, "the validation set"), (False, "0 training tokens")):
        with pytest.raises(ConfigError, match=rf"prepare .*pq: reading or tokenizing the dataset failed at {where}"
                                              r".*connection reset.*run the same command again to resume"):
            store.ensure(_cfg(corpus, tmp_path / where), 1000)


def test_val_hash_differs_when_the_dataset_or_the_tokenizer_does(corpus, tmp_path):
    pq_dir, js_dir, tok_a, tok_b = corpus
    same = [store.ensure(_cfg(corpus, tmp_path / c), 1000).val_hash for c in ("x", "y")]
    assert same[0] == same[1]                                      # content, not the cache folder
    other_tok = store.ensure(_cfg(corpus, tmp_path / "x", tokenizer=tok_b), 1000).val_hash
    other_data = store.ensure(_cfg(corpus, tmp_path / "x", hf_dataset=str(js_dir)), 1000).val_hash
    assert len({same[0], other_tok, other_data}) == 3


def test_no_token_repeats_within_one_pass_and_a_new_order_each_pass():
    S, B = 16, 7
    src = ArraySource("t", np.arange(S * 1000 + 1, dtype=np.int64), np.arange(100), 1 << 20)
    n = src.n_windows(S)
    assert n == 1000
    steps = -(-2 * n // B)

    def starts(seed):
        return np.concatenate([src.train_batch(t, B, S, seed=seed)[:, 0].numpy() for t in range(steps)])
    seq = starts(3)
    first, second = seq[:n], seq[n:2 * n]
    every = list(range(0, n * S, S))
    assert sorted(first) == every                                  # each window once: targets disjoint
    assert not np.array_equal(first, np.arange(0, n * S, S))       # in a shuffled order
    assert sorted(second) == every and not np.array_equal(second, first)   # pass 2: a new order
    assert np.array_equal(seq, starts(3))                          # a pure function of (seed, step)
    assert not np.array_equal(first, starts(4)[:n])
    batch = src.train_batch(5, B, S, seed=3).numpy()
    assert (batch[:, 1:] - batch[:, :-1] == 1).all()               # whole contiguous windows of S+1
    assert src.passes(2 * n * S, S) == 2.0


def test_fit_refuses_points_scored_on_different_validation_sets():
    rows = pd.DataFrame({"sweep": ["d"] * 4, "trial_id": ["a", "b", "c", "e"], "val_hash": ["h1", "h1", "h2", ""]})
    with pytest.raises(ValueError, match=r"sweep 'd'.*2 different validation sets.*h1: trials a, b.*h2: trials c"):
        check_val_hash(rows)
    check_val_hash(rows[rows.trial_id != "c"])          # "" (rows from before the column) is unknown, not a mismatch
    check_val_hash(rows.drop(columns="val_hash"))
    check_val_hash(pd.DataFrame({"sweep": ["d", "e"], "trial_id": ["a", "b"], "val_hash": ["h1", "h2"]}))


def test_the_paper_dataset_offline_names_the_dataset_and_the_fix(monkeypatch):
    from ebt_scaling.data.hf import open_stream
    from ebt_scaling.sweep import load_spec, plan
    cfg = plan(load_spec(ROOT / "sweeps" / "data.yaml", "paper"))[0].config.data
    assert (cfg.hf_dataset, cfg.hf_config, cfg.tokenizer) == ("HuggingFaceFW/fineweb-edu", "sample-100BT",
                                                              "EleutherAI/gpt-neox-20b")
    with pytest.raises(ConfigError) as e:
        open_stream(cfg)
    assert "HuggingFaceFW/fineweb-edu" in str(e.value) and "fix:" in str(e.value)
    with pytest.raises(ConfigError, match=r"RedPajama-Data-V2.*fix:.*loading script.*hf_data_files"):
        open_stream(DataConfig(source="hf", hf_dataset="togethercomputer/RedPajama-Data-V2", hf_config="sample"))


def test_prepare_train_fit_on_a_local_dataset(corpus, tmp_path, capsys):
    pq_dir, _, tok_a, _ = corpus
    spec = tmp_path / "data.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: data
        x: data
        families: [transformer_pp]
        seeds: [0]
        base:
          model: {{n_layers: 1, d_model: 16, n_heads: 2, vocab_size: 512}}
          data: {{source: hf, hf_dataset: "{pq_dir}", tokenizer: "{tok_a}", val_tokens: 20000,
                  cache_dir: "{tmp_path / 'cache'}", num_proc: 1, seq_len: 32}}
          train: {{batch_size: 4, eval_every: 1000, eval_tokens: 2048, log_every: 10, device: cpu}}
        axes:
          tokens: [2560, 5120, 10240]
        resources: {{cpus: 1}}
        """))
    from ebt_scaling.cli import main
    results = tmp_path / "results"
    assert main(["launch", str(spec), "--scale", "cpu", "--backend", "local", "--in-process",
                 "--results", str(results)]) == 0
    idx = store.read_index(next((tmp_path / "cache" / "stores").iterdir()))
    assert len(idx["sessions"]) == 1 and idx["train_tokens"] >= 10240 + 33   # prepared once, for the largest
    rows = pd.concat([pd.read_parquet(p) for p in (results / "data").glob("*.parquet")])
    final = rows[rows.kind == "final"]
    assert len(final) == 3 and (final.status == "ok").all()
    assert final.val_hash.nunique() == 1 and final.val_hash.iloc[0]
    assert main(["fit", str(results), "--out", str(tmp_path / "analysis")]) == 0
    # one point scored elsewhere: fit names it and refuses
    odd = next((results / "data").glob("*.parquet"))
    t = pd.read_parquet(odd)
    t["val_hash"] = "0000000000000000"
    t.to_parquet(odd)
    capsys.readouterr()
    assert main(["fit", str(results), "--out", str(tmp_path / "analysis2")]) == 2
    err = capsys.readouterr().err
    assert "different validation sets" in err and odd.stem[:12] in err and "Traceback" not in err


def test_cpu_sources_have_a_val_hash_and_a_budget_beyond_one_pass_says_how_many(capsys):
    from ebt_scaling.data.sources import build_source, val_hash
    shakes = [val_hash(build_source(DataConfig(seq_len=64), need_tokens=n), 64, 8192) for n in (1000, 2_000_000)]
    markov = val_hash(build_source(DataConfig(source="markov", seq_len=64)), 64, 8192)
    assert shakes[0] == shakes[1] and len({shakes[0], markov}) == 2
    assert val_hash(build_source(DataConfig(seq_len=64)), 64, 4096) != shakes[0]     # other windows scored
    capsys.readouterr()
    src = build_source(DataConfig(seq_len=64), need_tokens=10_000_000)
    err = capsys.readouterr().err
    assert f"{src.passes(10_000_000, 64):.2f} passes" in err and "2.27 passes" in err


def test_pad_targets_one_document_per_sequence_with_padding_masked(corpus, tmp_path):
    import torch
    import torch.nn.functional as F
    from ebt_scaling.config import config_from_dict
    from ebt_scaling.data.sources import PAD, PaddedSource, build_source, inputs_of, val_hash
    from ebt_scaling.models.registry import build_model
    from ebt_scaling.results.store import MemorySink
    from ebt_scaling.train import train
    eos = 0
    # three documents (ids 1.., each ended by EOS): 2, 5 and 3 tokens before their EOS
    arr = np.array([5, 6, eos, 7, 8, 9, 10, 11, eos, 12, 13, 14, eos])
    src = PaddedSource("t", arr, arr, 16, eos, val_id="v")
    assert src.n_windows(4) == 3
    rows = {tuple(r) for s in range(3) for r in src.train_batch(s, 1, 4, seed=0).tolist()}
    assert rows == {(5, 6, eos, PAD, PAD), (7, 8, 9, 10, 11), (12, 13, 14, eos, PAD)}   # each once per pass
    batch = src.train_batch(0, 3, 4, seed=0)
    assert int(inputs_of(batch).min()) >= 0
    # the loss counts only real targets: equal to the loss over the unpadded positions
    cfg = config_from_dict({"model": {"n_layers": 1, "d_model": 16, "n_heads": 2, "vocab_size": 16},
                            "train": {"steps": 1}})
    model = build_model(cfg)
    loss, _ = model.loss(inputs_of(batch), batch[:, 1:])
    logits = model(inputs_of(batch))
    keep = batch[:, 1:] != PAD
    assert torch.allclose(loss, F.cross_entropy(logits[keep], batch[:, 1:][keep]))
    # a pad-mode point trains end to end, on another val_hash than the packed one
    data = dict(source="hf", hf_dataset=str(corpus[0]), tokenizer=corpus[2], val_tokens=20000,
                cache_dir=str(tmp_path), num_proc=1, seq_len=32)
    point = {"model": {"n_layers": 1, "d_model": 16, "n_heads": 2},
             "train": {"batch_size": 4, "tokens": 1280, "eval_tokens": 512, "eval_every": 100, "device": "cpu"}}
    sink = MemorySink()
    out = train(config_from_dict({**point, "data": {**data, "targets": "pad"}}), sink)
    assert out.status == "ok" and np.isfinite(out.val_loss)
    packed = build_source(DataConfig(**data))
    padded = build_source(DataConfig(**data, targets="pad"))
    assert sink.rows[-1].val_hash == val_hash(padded, 32, 512) != val_hash(packed, 32, 512)
    with pytest.raises(ConfigError, match="data.targets.*pad needs source: hf"):
        config_from_dict({"data": {"targets": "pad"}, "train": {"steps": 1}})
