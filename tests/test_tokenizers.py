"""The shipped second vocabulary: a BPE of 4096 tokens trained on the training plays only,
rebuilt bit-identically, usable by name from a sweep spec."""
from pathlib import Path

from ebt_scaling.config import config_from_dict
from ebt_scaling.data.sources import build_source, shakespeare_plays, shakespeare_split
from ebt_scaling.data.tokenizers import SHIPPED, build_tokenizer, shakespeare_bpe, shipped_path


def test_shipped_bpe_rebuilds_byte_for_byte(tmp_path):
    for name, vocab in SHIPPED.items():
        built = Path(shakespeare_bpe(vocab, tmp_path / f"{name}.json")).read_bytes()
        assert built == shipped_path(name).read_bytes(), f"{name}: run scripts/build_bpe.py"


def test_shipped_bpe_has_its_vocabulary_and_round_trips_held_out_text():
    tok = build_tokenizer("shakespeare-bpe4096")
    assert tok.vocab_size == 4096 and tok.eos_id is not None
    _, val = shakespeare_split()
    sample = val[:20000]
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    assert max(ids) < 4096
    # a real compression of held-out text (bytes per token), not a byte-level fallback
    assert len(sample.encode()) / len(ids) > 2.5


def test_the_vocabulary_is_trained_on_the_training_plays_only():
    """shakespeare_bpe (what the rebuild test compares with the shipped file) sees every
    training play and no validation play."""
    from ebt_scaling.data.sources import shakespeare_training_plays
    plays = [b for _, b in shakespeare_plays()]
    training = shakespeare_training_plays()
    train, val = shakespeare_split()
    held_out = [p for p in plays if p not in training]
    assert held_out and len(training) + len(held_out) == len(plays)
    assert "\n".join(training) == train and "\n".join(held_out) == val


def test_a_spec_names_the_shipped_tokenizer():
    cfg = config_from_dict({"model": {"n_layers": 1, "d_model": 32, "n_heads": 2},
                            "data": {"source": "shakespeare", "tokenizer": "shakespeare-bpe4096", "seq_len": 32},
                            "train": {"steps": 1}})
    src = build_source(cfg.data)
    assert src.vocab_size == 4096
    batch = src.train_batch(0, 4, 32, 0)
    assert batch.shape == (4, 33) and int(batch.max()) < 4096


def test_the_tokenized_corpus_is_cached_once_and_read_back_equal(tmp_path, monkeypatch):
    """A BPE trial reads the plays' tokens from the cache the first trial wrote: equal
    arrays, no second encoding; the byte tokenizer writes nothing."""
    import numpy as np
    from ebt_scaling.config import DataConfig
    from ebt_scaling.data import sources
    cfg = DataConfig(source="shakespeare", tokenizer="shakespeare-bpe4096", cache_dir=str(tmp_path))
    tok = build_tokenizer(cfg.tokenizer)
    train, val = sources.shakespeare_tokens(cfg, tok)
    fresh = [np.asarray(tok.encode(t)) for t in shakespeare_split()]
    assert np.array_equal(train, fresh[0]) and np.array_equal(val, fresh[1])
    assert len(list((tmp_path / "shakespeare").glob("*.npy"))) == 2
    monkeypatch.setattr(sources, "_encode_array", lambda *a: (_ for _ in ()).throw(AssertionError("encoded again")))
    again = build_source(cfg)
    assert np.array_equal(again.train, train) and np.array_equal(again.val, val)
    monkeypatch.undo()
    sources.shakespeare_tokens(DataConfig(source="shakespeare", cache_dir=str(tmp_path / "b")), build_tokenizer("byte"))
    assert not (tmp_path / "b").exists()
