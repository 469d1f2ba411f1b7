"""Measure the calibration of `ebt-sweep fit`'s comparisons on planted data (prints rates).

    .venv/bin/python benchmarks/calibrate_fit.py [--n 4000] [--n-saturating 400] [--seed S]

Uses the planted-data generators of tests/test_fit_calibration.py (two families, 3-5
distinct x per line, 2-3 seeds per x, with or without a deviation shared by the seeds of
one x) and prints, per number of distinct x and overall: the rate of p < 0.05 under the
null (true gain 0), and the 95% intervals' coverage of the gain, both slopes and the
crossover; then the saturating law's coverage of a planted floor E. The tests assert the
same quantities against the issue's bounds; this script records the figures
(benchmarks/RESULTS-fit.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fit_calibration as cal  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4000, help="datasets per condition")
    p.add_argument("--n-saturating", type=int, default=400)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    seed = a.seed if a.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    for n_x in ((3, 4), (4, 5), (5, 6), (3, 6)):
        label = f"{n_x[0]}-{n_x[1] - 1} x" if n_x[1] - n_x[0] > 1 else f"{n_x[0]} x"
        t0 = time.perf_counter()
        null = cal.comparisons(rng, a.n, tau=cal.TAU, n_x=n_x)
        fpr = np.mean([c.p_value < 0.05 for c in null])
        faster = np.mean([c.verdict == "faster" for c in null])
        line = f"{label:>6}: null p<0.05 {fpr:.3f} (verdict 'faster' {faster:.3f})"
        for tau in (0.0, cal.TAU):
            fam, base = (2.0 + 0.1 * 5.6, -0.3), (2.0, -0.2)
            comps = cal.comparisons(rng, a.n, tau=tau, fam=fam, base=base, n_x=n_x)
            rep = [c for c in comps if c.gain_reported]
            cov = (np.mean([c.gain.contains(0.5) for c in rep]),
                   np.mean([c.slope_family.contains(-0.3) for c in comps]),
                   np.mean([c.slope_baseline.contains(-0.2) for c in comps]),
                   np.mean([c.crossover.x.contains(10 ** 5.6) for c in comps]))
            line += (f"; tau={tau:g}: coverage gain {cov[0]:.3f} (reported {len(rep) / a.n:.2f}), "
                     f"slopes {cov[1]:.3f}/{cov[2]:.3f}, crossover {cov[3]:.3f}")
        print(line + f"  [{time.perf_counter() - t0:.0f} s]")
    for n_x, seeds in ((8, 1), (5, 2)):
        t0 = time.perf_counter()
        cov = cal._saturating_coverage(a.n_saturating, rng, n_x, seeds)
        print(f"saturating E=2 + 300 x^-0.3, {n_x} x x {seeds} seed(s), noise 0.3%: coverage E {cov['E']:.3f}, "
              f"alpha {cov['alpha']:.3f}  [{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
