#!/usr/bin/env bash
# The CPU-scale study (README "What the CPU-scale study shows"): every shipped sweep at
# cpu scale through `ebt-sweep launch` (default backend), System-2 evaluation of the
# thinking sweep's points, then `ebt-sweep fit results/`. Resumable: run it again and
# finished trials are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
EBT=${EBT:-ebt-sweep}
for spec in depth width data batch params flops thinking; do
  $EBT launch "sweeps/$spec.yaml" --scale cpu --results results
done
for ck in results/thinking/_state/ckpt/*/last.pt; do
  id=$(basename "$(dirname "$ck")")
  out="results/thinking/think/$id.parquet"
  [ -f "$out" ] || $EBT think "$ck" --out "$out" --sweep thinking
done
$EBT fit results/ --out analysis/
