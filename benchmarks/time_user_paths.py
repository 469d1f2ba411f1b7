"""Wall-clock time of what a new user runs, beside what `ebt-sweep plan` said beforehand:
`make demo` (the depth sweep and its fit, into a fresh folder), the two tiny examples,
and each cpu spec of a study run (read from scripts/run-study.sh's log lines
`study: NAME  S s`). Prints one markdown table; run it on a quiet machine.

    python benchmarks/time_user_paths.py --study-log study.log          # everything
    python benchmarks/time_user_paths.py --study-log study.log --no-demo

Latest figures: benchmarks/RESULTS.md ("Timings a new user sees").
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EBT = [sys.executable, "-m", "ebt_scaling.cli"]
DUR = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(\d+)s")


def seconds(text: str) -> float:
    h, m, s = DUR.fullmatch(text).groups()
    return int(h or 0) * 3600 + int(m or 0) * 60 + int(s)


def planned(spec: str) -> float:
    """The wall time on this machine that `ebt-sweep plan SPEC --scale cpu` estimates."""
    out = subprocess.run([*EBT, "plan", spec, "--scale", "cpu"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    line = next(x for x in out.splitlines() if x.startswith("total:"))
    return seconds(re.search(r"about (\S+) on this machine", line).group(1))


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study-log", help="output of scripts/run-study.sh (its `study:` lines)")
    ap.add_argument("--no-demo", action="store_true", help="skip `make demo`")
    args = ap.parse_args()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="time_user_paths-"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for ex in ("examples/tiny.yaml", "examples/tiny_ebt.yaml"):
        rows.append((f"`ebt-sweep train {ex}`", timed([*EBT, "train", ex, "--out", str(work / Path(ex).stem)],
                                                      env=env), None))
    if not args.no_demo:
        rows.append(("`make demo` (depth sweep + fit, fresh folder)",
                     timed(["make", "demo", f"DEMO_DIR={work / 'demo'}"], env=env), planned("sweeps/depth.yaml")))
    if args.study_log:
        for line in Path(args.study_log).read_text().splitlines():
            m = re.match(r"study: (\S+)\s+(\d+) s", line)
            if m and (ROOT / "sweeps" / f"{m.group(1)}.yaml").exists():
                if int(m.group(2)) < 30:      # resumed: its trials were done already
                    continue
                rows.append((f"`launch sweeps/{m.group(1)}.yaml` (in the study)", float(m.group(2)),
                             planned(f"sweeps/{m.group(1)}.yaml")))
    print("| what | measured wall | plan's estimate (this machine) | measured / estimate |\n|---|---|---|---|")
    for what, got, est in rows:
        ratio = f"{got / est:.2f}" if est else "-"
        print(f"| {what} | {got:.0f} s | {f'{est:.0f} s' if est else '-'} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
