"""Calibrate the planner's time estimates from trials that ran: writes
ebt_scaling/sweep/rates.json, which `ebt-sweep plan` reads.

    python benchmarks/calibrate_rates.py results/ --scale cpu --note "..."

For each family, a least-squares line through the finished trials'
    wall time = overhead + steps x step cost + work / rate + tokens x V x element cost
(work: training plus evaluation FLOPs, sweep/plan.py:work_flops; tokens x V:
sweep/plan.py:vocab_elements; both from each trial's own config), fitted in relative error so that small and large trials count alike, gives the effective FLOP/s and the per-trial overhead. Trials that ran side by
side on shared cores measure a shared machine: say so in --note. The file also keeps
the median relative error of the fitted estimate over the trials it was fitted to, so
`plan`'s figure comes with how far off it was on the runs behind it (per trial, and
summed over all of them). Re-run after a
study on a new machine (or with --scale paper after GPU runs) to recalibrate.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebt_scaling.api import load_results  # noqa: E402
from ebt_scaling.config import config_from_dict  # noqa: E402
from ebt_scaling.sweep.plan import vocab_elements, work_flops  # noqa: E402

RATES = Path(__file__).resolve().parents[1] / "ebt_scaling" / "sweep" / "rates.json"


def calibrate(source, min_trials: int = 4) -> dict:
    rows = load_results(source)
    final = rows[(rows["kind"] == "final") & (rows["status"] == "ok")].drop_duplicates("trial_id")
    out = {}
    for family, g in final.groupby("family"):
        cfgs = [config_from_dict(json.loads(c), "rates") for c in g["config_json"]]
        work = np.array([work_flops(c)[1] for c in cfgs])
        steps = np.array([c.total_steps for c in cfgs], dtype=float)
        wall = g["wall_time"].to_numpy(float)
        if len(g) < min_trials:
            continue
        # least squares in relative error, (overhead + steps * step_s + work / rate - wall) / wall,
        # so that small and large trials count alike; terms that come out negative are dropped
        elements = np.array([vocab_elements(c) for c in cfgs])
        terms = {"overhead_s": np.ones_like(wall), "step_s": steps, "inv_rate": work, "vocab_element_s": elements}
        while True:
            A = np.stack([v / wall for v in terms.values()], axis=1)
            coef, *_ = np.linalg.lstsq(A, np.ones_like(wall), rcond=None)
            bad = [k for k, c in zip(terms, coef) if c < 0 and k != "inv_rate"]
            if not bad:
                break
            del terms[bad[0]]
        fitted = dict(zip(terms, coef))
        if fitted["inv_rate"] <= 0:
            continue
        pred = A @ coef * wall
        err = np.abs(pred - wall) / wall
        out[family] = {"flops_per_s": float(f"{1 / fitted['inv_rate']:.3g}"),
                       "step_s": float(f"{fitted.get('step_s', 0.0):.3g}"),
                       "overhead_s": round(float(fitted.get("overhead_s", 0.0)), 2),
                       "vocab_element_s": float(f"{fitted.get('vocab_element_s', 0.0):.3g}"),
                       "n_trials": int(len(g)), "median_rel_error": round(float(np.median(err)), 2),
                       "sum_estimated_over_measured": round(float(pred.sum() / wall.sum()), 2),
                       "devices": sorted(set(g["device"].astype(str)))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="results folder of finished trials (e.g. results/)")
    ap.add_argument("--scale", default="cpu", help="which preset's rates to replace (cpu or paper)")
    ap.add_argument("--note", default="", help="how the trials ran (machine, trials at once)")
    ap.add_argument("--dry-run", action="store_true", help="print, do not write rates.json")
    args = ap.parse_args(argv)
    families = calibrate(args.source)
    if not families:
        print(f"{args.source}: no family has >= 4 finished trials to calibrate on", file=sys.stderr)
        return 2
    fallback = "transformer_pp" if "transformer_pp" in families else sorted(families)[0]
    entry = {"families": families, "fallback": fallback,
             "note": f"measured on {args.source.rstrip('/')}/" + (f", {args.note}" if args.note else ""),
             "command": "python benchmarks/calibrate_rates.py " + shlex.join(argv or sys.argv[1:]),
             "date": datetime.date.today().isoformat()}
    print(json.dumps({args.scale: entry}, indent=1))
    if not args.dry_run:
        data = json.loads(RATES.read_text()) if RATES.exists() else {}
        for keep in ("launch_overhead_s", "launch_overhead_note"):     # measured from sweep wall times, not trials
            if keep in data.get(args.scale, {}):
                entry[keep] = data[args.scale][keep]
        data[args.scale] = entry
        RATES.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {RATES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
