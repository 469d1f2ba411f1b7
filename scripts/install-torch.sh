#!/usr/bin/env bash
# Install PyTorch into the environment of $PIP without dragging a multi-GB CUDA build
# onto a machine that has no NVIDIA GPU.
#   - torch already importable: keep it.
#   - TORCH_INDEX set: use it (e.g. https://download.pytorch.org/whl/cu124).
#   - no nvidia-smi: the CPU build (a wheel in PIP_FIND_LINKS is used first, else
#     PyTorch's CPU index).
#   - otherwise: PyPI's default build, which bundles CUDA.
set -euo pipefail
PIP=${PIP:-python3 -m pip}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PY=${PIP% -m pip}
if $PY -c "import torch" 2>/dev/null; then
  echo "torch $($PY -c 'import torch;print(torch.__version__)') already installed"; exit 0
fi
if [ -n "${TORCH_INDEX:-}" ]; then
  $PIP install -q "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  for d in ${PIP_FIND_LINKS:-} $(pip config get global.find-links 2>/dev/null || true); do
    if ls "$d"/torch-"${TORCH_VERSION}"+cpu-*.whl >/dev/null 2>&1; then
      echo "installing the CPU build of torch found in $d"
      $PIP install -q "$(ls "$d"/torch-"${TORCH_VERSION}"+cpu-*.whl | head -n 1)"; exit 0
    fi
  done
  echo "no GPU found: installing the CPU build of torch from download.pytorch.org"
  $PIP install -q "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu \
    --extra-index-url https://pypi.org/simple
else
  $PIP install -q "torch==${TORCH_VERSION}"
fi
