#!/usr/bin/env bash
# The CPU-scale study (README "What the CPU-scale study shows"): every shipped sweep at
# cpu scale through `ebt-sweep launch` (default backend), System-2 evaluation of the
# thinking sweep's EBT, then `ebt-sweep fit results/`. Resumable: run it again and
# finished trials (and finished think files) are skipped. Prints each step's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
EBT=${EBT:-ebt-sweep}
RESULTS=${RESULTS:-results}
ANALYSIS=${ANALYSIS:-analysis}
SPECS=${SPECS:-"depth width data batch params flops thinking data_bpe params_bpe"}
start=$(date +%s)
step() {   # step NAME COMMAND...: run it and say how long it took
  local name=$1 t0; shift; t0=$(date +%s)
  "$@"
  printf 'study: %-12s %4d s  (total %d s)\n' "$name" $(( $(date +%s) - t0 )) $(( $(date +%s) - start ))
}
for spec in $SPECS; do
  step "$spec" $EBT launch "sweeps/$spec.yaml" --scale cpu --results "$RESULTS"
done
think_all() {
  for ck in "$RESULTS"/thinking/_state/ckpt/*/last.pt; do
    [ -f "$ck" ] || continue
    id=$(basename "$(dirname "$ck")")
    out="$RESULTS/thinking/think/$id.parquet"
    [ -f "$out" ] || $EBT think "$ck" --out "$out" --sweep thinking
  done
}
step think think_all
step fit $EBT fit "$RESULTS" --out "$ANALYSIS" --latex
