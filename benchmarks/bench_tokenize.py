"""Tokenization throughput of the token store's path: a BPE tokenizer trained here with
the `tokenizers` library on the embedded corpus, then tokens/s of

  * `encode_docs` in one process (the Rust tokenizer's own threads off, then on),
  * `tokenize_batches` over N worker processes (what `ebt-sweep prepare` runs),
  * a whole `prepare` of a local parquet dataset read through `datasets` (streaming,
    tokenizing, writing train.bin), the figure a user sees.

    python benchmarks/bench_tokenize.py                 # vocabulary 16384, corpus x8, 2 processes,
                                                        # documents of ~4500 characters
    python benchmarks/bench_tokenize.py --repeat 2      # quicker

Latest figures: benchmarks/RESULTS.md ("Tokenization").
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from ebt_scaling.data.tokenizers import train_bpe


def group(paras, chars: int) -> list[str]:
    """Paragraphs joined into documents of about `chars` characters (0: one per paragraph)."""
    if chars <= 0:
        return paras
    docs, cur, n = [], [], 0
    for p in paras:
        cur.append(p)
        n += len(p)
        if n >= chars:
            docs.append("\n\n".join(cur))
            cur, n = [], 0
    return docs + (["\n\n".join(cur)] if cur else [])


def batched(docs, n):
    for i in range(0, len(docs), n):
        yield docs[i:i + n], None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=8, help="corpus copies to tokenize (8: about 11M tokens)")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--batch-docs", type=int, default=200, help="documents per tokenizer call")
    ap.add_argument("--doc-chars", type=int, default=4500,
                    help="join paragraphs into documents of about this many characters (default 4500: about "
                         "1000 tokens, FineWeb-Edu's mean document; 0: one document per paragraph)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from ebt_scaling.config import DataConfig
    from ebt_scaling.data import store
    from ebt_scaling.data.parallel import encode_docs, tokenize_batches
    from ebt_scaling.data.sources import shakespeare_plays
    from ebt_scaling.data.tokenizers import build_tokenizer

    paras = [p for _, body in shakespeare_plays() for p in body.split("\n\n") if p.strip()]
    docs = group(paras, args.doc_chars)
    work = Path(tempfile.mkdtemp(prefix="bench_tokenize-"))
    t = time.perf_counter()
    tok_path = train_bpe(paras, args.vocab, work / "bpe.json")
    print(f"trained BPE (vocab {args.vocab}) on the corpus's {len(paras):,} paragraphs, "
          f"{sum(map(len, paras)) / 1e6:.2f} MB, in {time.perf_counter() - t:.1f} s")
    data = docs * args.repeat
    print(f"corpus: {len(data):,} documents, {sum(map(len, data)) / 1e6:.1f} MB, cpus {os.cpu_count()}")

    def cpu_seconds() -> float:
        self_, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return self_.ru_utime + self_.ru_stime + kids.ru_utime + kids.ru_stime

    def report(label, fn):
        t, c = time.perf_counter(), cpu_seconds()
        n = fn()
        dt, dc = time.perf_counter() - t, cpu_seconds() - c
        print(f"| {label} | {n:,} | {dt:.2f} | {n / dt / 1e6:.2f} | {dc:.2f} | {n / dc / 1e6:.2f} |", flush=True)

    # wall-clock rate, and tokens per CPU-second (this process and its finished workers):
    # on a shared machine the second says what a core does when it gets to run
    print("| path | tokens | wall s | M tokens/s | CPU s | M tokens per CPU-s |\n|---|---|---|---|---|---|")
    for parallel in ("false", "true"):
        os.environ["TOKENIZERS_PARALLELISM"] = parallel
        tok = build_tokenizer(tok_path)     # the setting is read when the Rust pool first runs
        report(f"encode_docs, 1 process, Rust threads {'on' if parallel == 'true' else 'off'}",
               lambda: sum(len(encode_docs(tok, b)) for b, _ in batched(data, args.batch_docs)))
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tok = build_tokenizer(tok_path)
    report(f"tokenize_batches, {args.procs} processes",
           lambda: sum(len(x) for x, _ in tokenize_batches(batched(data, args.batch_docs), tok, args.procs)))

    import pyarrow as pa
    import pyarrow.parquet as pq
    (work / "ds").mkdir()
    for s in range(4):
        pq.write_table(pa.table({"text": data[s::4]}), work / "ds" / f"train-{s:05d}.parquet")
    cfg = DataConfig(source="hf", hf_dataset=str(work / "ds"), tokenizer=tok_path, val_tokens=1 << 20,
                     cache_dir=str(work / "cache"), num_proc=args.procs)
    report(f"prepare (datasets stream -> train.bin), {args.procs} processes",
           lambda: (lambda s: len(s.train) + len(s.val))(store.ensure(cfg, 1 << 40)))


if __name__ == "__main__":
    main()
