#!/usr/bin/env bash
# Installs NVRTC and the CUDA headers (pinned 13.0, PyPI wheels, no GPU or toolkit needed) into
# .cuda/ so `focus kernels --check` can compile every kernel on any machine. Idempotent.
# Prints the library directory to put on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
NVRTC=13.0.88
RUNTIME=13.0.96
STAMP=".cuda/.installed-$NVRTC-$RUNTIME"
if [ ! -f "$STAMP" ]; then
  rm -rf .cuda
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target .cuda \
    "nvidia-cuda-nvrtc==$NVRTC" "nvidia-cuda-runtime==$RUNTIME" >&2
  touch "$STAMP"
fi
echo "$PWD/.cuda/nvidia/cu13/lib"
