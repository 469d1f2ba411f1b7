"""Rebuild the shipped BPE tokenizer ebt_scaling/data/corpus/shakespeare-bpe4096.json.

It is trained with the `tokenizers` library on the embedded corpus's training plays
(the validation plays are left out), deterministically: running this again writes the
same file byte for byte (tests/test_tokenizers.py checks it).

Usage:  python scripts/build_bpe.py            # rewrite the shipped file
        python scripts/build_bpe.py --check    # exit 1 if a rebuild differs from it
"""
import argparse
import sys
import tempfile
from pathlib import Path

from ebt_scaling.data.tokenizers import SHIPPED, shakespeare_bpe, shipped_path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    status = 0
    for name, vocab in SHIPPED.items():
        with tempfile.TemporaryDirectory() as d:
            built = Path(shakespeare_bpe(vocab, Path(d) / "tok.json")).read_bytes()
        target = shipped_path(name)
        if args.check:
            same = target.exists() and target.read_bytes() == built
            print(f"{name}: {'identical' if same else 'DIFFERS'}")
            status |= 0 if same else 1
        else:
            target.write_bytes(built)
            print(f"{name}: wrote {target} ({len(built):,} bytes)")
    return status


if __name__ == "__main__":
    sys.exit(main())
