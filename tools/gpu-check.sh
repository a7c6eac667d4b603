#!/usr/bin/env bash
# The GPU session's one script (no Rust toolchain or network there). Prepare here:
#   cargo build --release -p focus-cli && tools/torch_ref/gpu-wheels.sh
# then run on the device machine with carry ["target/release/focus", ".gpu-wheels"]:
#   tools/gpu-check.sh            (results under $OUT, default ./out)
# Steps: device info; NVRTC build of every kernel for the device's arch (the machine's own
# CUDA 13.0 NVRTC); every CUDA kernel vs the CPU kernels; compute-sanitizer memcheck over the
# same checks; PyTorch baselines of the paper-size components (eager) for later ratios.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out}"
mkdir -p "$OUT"
FOCUS="${FOCUS:-target/release/focus}"
CUDA_LIB="${CUDA_LIB:-/usr/local/cuda/lib64}"
export LD_LIBRARY_PATH="$CUDA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FOCUS_CUDA_INCLUDE="${FOCUS_CUDA_INCLUDE:-/usr/local/cuda/include}"
export FOCUS_KERNEL_CACHE="$OUT/kernel-cache"
status=0
step() { echo "== $1"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/device.txt"
CC="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
ARCH="sm_${CC}"; [ "$CC" = "90" ] && ARCH=sm_90a

step "kernels --check --arch $ARCH"
timeout 120 "$FOCUS" kernels --check --arch "$ARCH" | tee "$OUT/kernels-check.txt" || status=1

step "gpu-check (CUDA kernels vs CPU)"
timeout 180 "$FOCUS" gpu-check --out "$OUT/gpu-check.json" | tee "$OUT/gpu-check.txt" || status=1

step "compute-sanitizer memcheck"
if command -v compute-sanitizer >/dev/null; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$FOCUS" gpu-check > "$OUT/memcheck.txt" 2>&1 || status=1
  tail -3 "$OUT/memcheck.txt"
fi

step "PyTorch baselines (eager, paper configs)"
PYLIB="$(mktemp -d)"
if ls .gpu-wheels/diffusers-*.whl >/dev/null 2>&1; then tools/torch_ref/gpu-wheels.sh --install "$PYLIB" >/dev/null; fi
for c in convnext qwen2vl_vit qwen25vl_vit; do
  (cd tools && PYTHONPATH="$PYLIB:." timeout 120 python3 -m torch_ref.bench --component "$c" --config paper --device cuda \
     > "../$OUT/torch-bench-$c.json" 2> "../$OUT/torch-bench-$c.err") && echo "$c: $(grep -o '"median_ms": {[^}]*}' "$OUT/torch-bench-$c.json")"
done
echo "== done (status $status); results in $OUT"
exit $status
