import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ebt_scaling.config import ConfigError, DataConfig
from ebt_scaling.data.sources import build_source, unigram_entropy
from ebt_scaling.data.tokenizers import build_tokenizer

TEXT = ["To be, or not to be, that is the question.", "Whether 'tis nobler in the mind to suffer",
        "The slings and arrows of outrageous fortune,"] * 40


def _check(src, n_docs=len(TEXT)):
    allbytes = np.concatenate([np.asarray(src.train), np.asarray(src.val)])
    text = bytes(allbytes.astype(np.uint8)).decode()
    assert text.count("question") == n_docs // 3
    assert isinstance(src.train, np.memmap)              # read from the on-disk cache, not RAM
    assert len(src.val) == pytest.approx(0.1 * len(allbytes), abs=2)
    b = src.train_batch(0, 4, 16, 0)
    assert b.shape == (4, 17) and int(b.max()) < 256


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet"])
def test_local_file_sources(tmp_path, fmt):
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "txt":
        path.write_text("\n\n".join(TEXT))
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"body": t}) for t in TEXT))
    else:
        pq.write_table(pa.table({"body": TEXT}), path)
    cfg = DataConfig(source="file", path=str(path), text_column="body", cache_dir=str(tmp_path / "cache"))
    src = build_source(cfg)
    _check(src)
    assert list((tmp_path / "cache").iterdir())          # tokenized once into the cache
    again = build_source(cfg)
    assert (np.asarray(again.val) == np.asarray(src.val)).all()


def test_missing_text_column_is_named(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "hi"}) + "\n")
    with pytest.raises(ConfigError, match="no key 'body'.*data.text_column"):
        build_source(DataConfig(source="file", path=str(path), text_column="body", cache_dir=str(tmp_path)))


def test_an_unloadable_hf_tokenizer_gives_a_clear_error(tmp_path):
    for name in ("no-such-org-ebt/no-such-tokenizer", str(tmp_path / "missing.json")):
        with pytest.raises(ConfigError) as e:
            build_tokenizer(name)
        msg = str(e.value)
        assert "data.tokenizer" in msg and name in msg and ("ebt-scaling[hf]" in msg or "network" in msg)


def test_unigram_entropy_of_a_uniform_stream():
    arr = np.tile(np.arange(8), 100)
    assert unigram_entropy(arr, 256) == pytest.approx(np.log(8))
