#!/usr/bin/env bash
# GPU check of the training path, under 8 minutes on one H100/H200 (issue 12):
#   1. the gpu-marked tests;
#   2. bf16 training steps of T++, S1 and S2 at the paper's xxs size (B 32, V 50277,
#      context 256): tokens/s, MFU on flops.py's FLOPs, peak memory against memory.py;
#      T++ again with train.compile;
#   3. four T++ trials packed on one GPU at once, their aggregate tokens/s;
#   4. a 2-GPU data-parallel run (torchrun) when two GPUs exist.
# Writes benchmarks/RESULTS-gpu.md. Usage: bash scripts/gpu-check.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python}}
OUT=$(mktemp -d)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu-check: no CUDA device")'
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
step() { timeout 150 "$PY" benchmarks/gpu_check.py step "$@"; }

echo "== 1. gpu-marked tests"
timeout 120 "$PY" -m pytest -q -m gpu tests/ 2>&1 | tail -3 | tee "$OUT/notes.txt"
sed -i '1s/^/gpu-marked tests: /' "$OUT/notes.txt"

echo "== 2. one trial at a time"
for fam in transformer_pp ebt_s1 ebt_s2; do
  step --family "$fam" --steps 8 --json "$OUT/1-$fam.json" || echo "$fam failed (rc $?)" >> "$OUT/notes.txt"
done
step --family transformer_pp --steps 8 --warmup 4 --compile --tag compiled --json "$OUT/2-tpp-compiled.json" \
  || echo "compiled T++ failed" >> "$OUT/notes.txt"
step --family ebt_s2 --micro 8 --steps 6 --tag micro8 --json "$OUT/2-s2-micro8.json" || true

echo "== 3. four T++ trials packed on one GPU"
pids=()
for i in 1 2 3 4; do
  step --family transformer_pp --steps 12 --tag "packed$i" --json "$OUT/3-packed$i.json" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "a packed trial failed" >> "$OUT/notes.txt"; done

if [ "$NGPU" -ge 2 ]; then
  echo "== 4. 2-GPU data-parallel (torchrun)"
  for fam in transformer_pp ebt_s2; do
    timeout 200 "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/gpu_check.py step \
      --family "$fam" --batch 64 --steps 8 --tag ddp2 --json "$OUT/4-ddp-$fam.json" \
      || echo "DDP $fam failed" >> "$OUT/notes.txt"
  done
else
  echo "only $NGPU GPU: no data-parallel run" >> "$OUT/notes.txt"
fi

"$PY" benchmarks/gpu_check.py report "$OUT"
echo "wrote benchmarks/RESULTS-gpu.md ($OUT)"
