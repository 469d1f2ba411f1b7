import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ebt_scaling.config import config_from_dict
from ebt_scaling.data.sources import MarkovSource, build_source, shakespeare_plays
from ebt_scaling.results.schema import COLUMNS, SCHEMA_VERSION
from ebt_scaling.results.store import MemorySink, ParquetSink
from ebt_scaling.train import train
from conftest import tiny


def test_markov_entropy_rate_matches_empirical():
    src = MarkovSource(vocab=16, order=1, branching=3, seed=3)
    x = src.sample(np.random.default_rng(0), 64, 2001)
    # empirical conditional entropy of the sampled transitions, under the true probabilities
    nll = -np.log(src.probs[x[:, :-1], x[:, 1:]]).mean()
    assert nll == pytest.approx(src.entropy_rate, abs=0.02)


def test_shakespeare_split_is_by_play_and_deterministic():
    plays = shakespeare_plays()
    assert len(plays) == 38
    a, b = build_source(config_from_dict({"train": {"steps": 1}}).data), build_source(config_from_dict({"train": {"steps": 1}}).data)
    assert len(a.val) > 400_000 and len(a.train) > 4_000_000
    assert (np.asarray(a.val[:1000]) == np.asarray(b.val[:1000])).all()
    # batches are a pure function of (seed, step)
    assert (a.train_batch(5, 4, 32, 0) == b.train_batch(5, 4, 32, 0)).all()
    assert not (a.train_batch(5, 4, 32, 0) == a.train_batch(6, 4, 32, 0)).all()


def test_tiny_transformer_learns_markov_to_its_entropy_rate():
    """Order-1 chain, 32 symbols, 4 successors each: the floor is its entropy rate."""
    cfg = tiny(data={"markov_vocab": 32, "markov_branching": 4, "seq_len": 64},
               model={"n_layers": 1, "d_model": 32, "n_heads": 2},
               train={"batch_size": 32, "steps": 300, "eval_every": 300, "eval_tokens": 8192, "log_every": 50},
               optim={"lr": 1e-2, "warmup_frac": 0.02})
    floor = MarkovSource(32, 1, 4, cfg.data.markov_seed).entropy_rate
    summary = train(cfg, MemorySink())
    assert summary.status == "ok"
    assert summary.val_loss - floor < 0.1, (summary.val_loss, floor)


def test_exact_token_budget_with_short_last_step():
    cfg = tiny(train={"batch_size": 8, "steps": 0, "tokens": 16 * 21, "eval_every": 100})
    sink = MemorySink()
    s = train(cfg, sink)
    assert cfg.total_steps == 3 and s.tokens == 16 * 21 == sink.rows[-1].tokens
    assert sink.rows[-1].flops == pytest.approx(s.tokens * sink.rows[-1].flops_per_token)


def test_seeds_repeat_exactly_and_differ_across_seeds():
    a, b, c = MemorySink(), MemorySink(), MemorySink()
    train(tiny(), a)
    train(tiny(), b)
    train(tiny(seed=1), c)
    la = [r.train_loss for r in a.rows if r.kind == "train"]
    assert la == [r.train_loss for r in b.rows if r.kind == "train"]
    assert la != [r.train_loss for r in c.rows if r.kind == "train"]


class Killed(BaseException):
    """Like SIGINT: not an Exception, so train() does not record it as a failure."""


@pytest.mark.parametrize("family, ebt", [("transformer_pp", {}), ("ebt", {"preset": "ebt_s2"})])
def test_resume_reproduces_the_uninterrupted_curve(tmp_path, family, ebt):
    kw = {"ebt": ebt} if ebt else {}
    full = MemorySink()
    train(tiny(family, **kw), full)

    # rows every 5 steps, evaluations at 10 and 20, checkpoints at 8 and 16
    cfg = tiny(family, train={"checkpoint_every": 8, "checkpoint_dir": str(tmp_path / "ck")}, **kw)
    out = tmp_path / "rows.parquet"

    class DiesAtStep20(ParquetSink):       # dies after the checkpoint at 16, before step 20's eval
        def emit(self, row):
            super().emit(row)
            if row.kind == "train" and row.step == 20:
                raise Killed()                # no flush: what reached disk is what train() wrote

    with pytest.raises(Killed):
        train(cfg, DiesAtStep20(out))
    resumed = ParquetSink(out)
    assert max(r.step for r in resumed.rows) == 15    # row 15 reached disk with checkpoint 16
    assert train(cfg, resumed).status == "ok"
    curve = lambda rows: [(r.kind, r.step, r.train_loss, r.val_loss) for r in rows]
    nan_safe = lambda c: [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in t) for t in c]
    assert nan_safe(curve(resumed.rows)) == nan_safe(curve(full.rows))
    assert len(ParquetSink(out).rows) == len(full.rows)     # nothing duplicated on disk


def test_forced_nan_gives_failed_row_not_crash(tmp_path):
    path = tmp_path / "t.parquet"
    s = train(tiny(train={"fail_at_step": 7}), ParquetSink(path))
    assert s.status == "failed" and "nan" in s.error.lower() and "step 7" in s.error
    df = pq.read_table(path).to_pandas()
    final = df[df.kind == "final"]
    assert len(final) == 1 and final.status.iloc[0] == "failed" and "step 7" in final.error.iloc[0]


def test_parquet_rows_follow_the_schema(tmp_path):
    path = tmp_path / "t.parquet"
    train(tiny(), ParquetSink(path))
    table = pq.read_table(path)
    assert tuple(table.column_names) == COLUMNS
    df = table.to_pandas()
    assert set(df.kind) == {"train", "eval", "final"} and (df.schema_version == SCHEMA_VERSION).all()
    fin = df[df.kind == "final"].iloc[0]
    assert fin.status == "ok" and math.isfinite(fin.val_loss) and fin.val_ppl == pytest.approx(math.exp(fin.val_loss))
    assert fin.tokens == 20 * 8 * 16 and fin.n_params > 0 and fin.flops > 0 and fin.family == "transformer_pp"
    assert not list(tmp_path.glob(".*tmp*"))   # no temporaries left behind


def test_resume_from_a_checkpoint_at_the_last_step_keeps_every_row(tmp_path):
    """Killed during the final evaluation: the resumed run only re-does that evaluation."""
    cfg = tiny(train={"checkpoint_every": 5, "checkpoint_dir": str(tmp_path / "ck")})
    out = tmp_path / "rows.parquet"

    class DiesAtFinal(ParquetSink):
        def emit(self, row):
            if row.kind == "final":
                self.flush()
                raise Killed()
            super().emit(row)

    with pytest.raises(Killed):
        train(cfg, DiesAtFinal(out))
    resumed = ParquetSink(out)
    assert train(cfg, resumed).status == "ok"
    full = MemorySink()
    train(tiny(), full)
    key = lambda rows: [(r.kind, r.step) for r in rows]
    assert key(resumed.rows) == key(full.rows)


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_training_flushes_denormals():
    """Denormals (an EBT's underflowing softmax makes them) cost ~100x per operation on
    x86; train() turns on flush-to-zero for the process (benchmarks/RESULTS.md)."""
    torch.set_flush_denormal(False)                     # earlier tests may have trained
    tiny_denormal = torch.tensor([1e-39])
    assert (tiny_denormal * 1.0).item() != 0.0          # plain IEEE before training
    train(tiny(train={"steps": 2, "eval_every": 2}), MemorySink())
    assert (tiny_denormal * 1.0).item() == 0.0
    torch.set_flush_denormal(False)
