#!/usr/bin/env bash
# The GPU session's one script (no Rust toolchain or network there). Prepare here:
#   cargo build --release -p focus-cli && tools/torch_ref/gpu-wheels.sh
# then run on the device machine with carry ["target/release/focus", ".gpu-wheels"]:
#   tools/gpu-check.sh            (results under $OUT, default ./out; ~8 min on an H100)
# Steps, each time-boxed so one hang cannot eat the session: device info; NVRTC build of every
# kernel for the device's arch (the machine's own CUDA 13.0 NVRTC); every CUDA op vs the CPU
# kernels and whole small model plans vs CPU plans, decode steps also as CUDA-graph replays
# (gpu-check); compute-sanitizer memcheck over the op checks and racecheck over the
# attention ones; every PyTorch parity fixture run on the GPU (f32; bf16 for the perception
# path); our op benchmarks and PyTorch's at the same shapes; paper-size perception models (ours,
# then PyTorch's); then, as the budget allows, `focus generate` / `focus edit` on the GPU and the
# paper-size decoders (MoVQ, VAE, Mask2Former, UNet; ours, then PyTorch's); a side-by-side report
# (tools/gpu_report.py) printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out}"
mkdir -p "$OUT"
FOCUS="${FOCUS:-target/release/focus}"
CUDA_LIB="${CUDA_LIB:-/usr/local/cuda/lib64}"
export LD_LIBRARY_PATH="$CUDA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FOCUS_CUDA_INCLUDE="${FOCUS_CUDA_INCLUDE:-/usr/local/cuda/include}"
export FOCUS_KERNEL_CACHE="$OUT/kernel-cache"
BUDGET="${BUDGET:-540}"   # seconds for the whole script; later steps shrink or are skipped
status=0
step() { echo "== $1 (t=${SECONDS}s)"; }
# tb SECONDS CMD...: timeout of SECONDS, cut to what is left of the budget.
tb() {
  local t=$1 left=$(( BUDGET - SECONDS )); shift
  if [ "$left" -lt 15 ]; then echo "skipped: out of budget" >&2; return 124; fi
  timeout $(( t < left ? t : left )) "$@"
}

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/device.txt"
CC="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
ARCH="sm_${CC}"; [ "$CC" = "90" ] && ARCH=sm_90a

step "gpu-check (NVRTC build for $ARCH with the machine's NVRTC, every CUDA op vs the CPU kernel, whole plans vs CPU plans)"
tb 210 "$FOCUS" gpu-check --out "$OUT/gpu-check.json" > "$OUT/gpu-check.txt" 2>&1 || status=1
grep -E "FAIL|ERROR" "$OUT/gpu-check.txt" | head -40; tail -1 "$OUT/gpu-check.txt"

step "parity fixtures on the GPU (PyTorch references)"
# f32 for every fixture; bf16 for the perception path's (discrete decisions elsewhere, e.g. VQ
# codes and attention-mask thresholds, may flip in bf16 on any backend).
for fx in tests/fixtures/torch_ref/*.safetensors; do
  dts=f32
  case "$(basename "$fx")" in convnext*|qwen2*|perception*|fusion*|adapter*) dts="f32 bf16";; esac
  for dt in $dts; do
    r="$(tb 30 "$FOCUS" parity "$fx" --device cuda --dtype "$dt" 2>&1)"; rc=$?
    # Components without an engine implementation are listed, not failed.
    if echo "$r" | grep -q "no engine implementation"; then continue; fi
    [ $rc -ne 0 ] && status=1
    echo "$r" >> "$OUT/parity-cuda.txt"
    echo "$(basename "$fx") $dt: $([ $rc -eq 0 ] && echo ok || echo FAIL) $(echo "$r" | grep -o 'rel-L2 [0-9.e+-]*' | sort -t' ' -k2 -g | tail -1)"
  done
done

step "focus demo on the GPU (perception path, bf16, decode as a CUDA graph)"
tb 60 "$FOCUS" demo --device cuda --dtype bf16 --tokens 16 > "$OUT/demo-cuda.txt" 2>&1 || status=1
tail -4 "$OUT/demo-cuda.txt"

step "focus gpu-bench (our ops at the PyTorch shapes)"
tb 120 "$FOCUS" gpu-bench --out "$OUT/focus-gpu-bench.json" > "$OUT/focus-gpu-bench.txt" 2>&1 || status=1
tail -3 "$OUT/focus-gpu-bench.txt"

step "focus bench (paper-size models, bf16, random weights)"
fb() { name="$1"; shift; tb 90 "$FOCUS" bench "$@" --device cuda --dtype bf16 --json "$OUT/focus-bench-$name.json" \
         > "$OUT/focus-bench-$name.txt" 2>&1 || status=1; tail -1 "$OUT/focus-bench-$name.txt"; }
fb qwen2-tiny-decode qwen2 --config tiny --size 1 --reps 200 --graph   # launch overhead: CUDA graph vs plain launches
fb convnext-768 convnext --config large --size 768 --reps 10 --graph
fb qwen2vl-252 qwen2vl_vit --config 600m --size 252 --reps 10 --graph
fb qwen25vl-252 qwen25vl_vit --config 3b --size 252 --reps 10
fb qwen2-prefill-1024 qwen2 --config 3b --size 1024 --reps 5
fb qwen2-decode qwen2 --config 3b --size 1 --reps 50 --graph

step "PyTorch baselines: ops + Qwen2.5-3B (torch_ref.gpu_bench), components (torch_ref.bench)"
PYLIB="$(mktemp -d)"
if ls .gpu-wheels/diffusers-*.whl >/dev/null 2>&1; then tools/torch_ref/gpu-wheels.sh --install "$PYLIB" >/dev/null; fi
(cd tools && export PYTHONPATH="$PYLIB:." && tb 200 python3 -m torch_ref.gpu_bench --device cuda --llm-budget 100 \
   --out "../$OUT/torch-gpu-bench.json" > "../$OUT/torch-gpu-bench.txt" 2>&1); tail -3 "$OUT/torch-gpu-bench.txt"
tbench() {
  for c in "$@"; do
    (cd tools && export PYTHONPATH="$PYLIB:." && tb 45 python3 -m torch_ref.bench --component "$c" --config paper \
       --device cuda > "../$OUT/torch-bench-$c.json" 2> "../$OUT/torch-bench-$c.err")
  done
}
tbench convnext qwen2vl_vit qwen25vl_vit

step "compute-sanitizer (memcheck over the op checks, racecheck over attention)"
if command -v compute-sanitizer >/dev/null; then
  tb 90 compute-sanitizer --tool memcheck --error-exitcode 3 "$FOCUS" gpu-check --no-plans > "$OUT/memcheck.txt" 2>&1 || status=1
  tail -2 "$OUT/memcheck.txt"
  tb 45 compute-sanitizer --tool racecheck --error-exitcode 3 "$FOCUS" gpu-check --no-plans --filter "attention" > "$OUT/racecheck.txt" 2>&1 || status=1
  tail -2 "$OUT/racecheck.txt"
fi

step "later components (a tight budget drops these): the decoders and the pipelines on the GPU, then PyTorch's decoders"
tb 60 "$FOCUS" generate --device cuda --dtype bf16 --steps 20 --out "$OUT/generate.png" > "$OUT/generate-cuda.txt" 2>&1 || status=1
tail -3 "$OUT/generate-cuda.txt"

tb 60 "$FOCUS" edit --device cuda --dtype bf16 --steps 20 --out "$OUT/edit.png" --mask-out "$OUT/edit-mask.png" \
  > "$OUT/edit-cuda.txt" 2>&1 || status=1
tail -5 "$OUT/edit-cuda.txt"

fb movq-decoder-256 movq_decoder --config illume --size 256 --reps 5 --graph
fb vae-decoder-1024 vae_decoder --config sdxl --size 1024 --reps 3
fb m2f-pixel-768 m2f_pixel_decoder --config paper --size 768 --reps 10 --graph
fb m2f-decoder-768 m2f_transformer_decoder --config paper --size 768 --reps 10 --graph
fb unet-1024 unet --config sdxl --size 1024 --reps 3 --graph
tbench movq_decoder vae_decoder m2f_pixel_decoder m2f_transformer_decoder unet

step "report"
python3 tools/gpu_report.py "$OUT" | tee "$OUT/report.txt"
echo "== done (status $status); results in $OUT"
exit $status
