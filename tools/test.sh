#!/usr/bin/env bash
# All tests, on a fresh machine with a Rust toolchain and python3/pip: every crate's unit and
# integration tests, every CUDA kernel compiled by NVRTC for sm_80 and sm_90a (no GPU needed;
# NVRTC comes from PyPI into .cuda/), every CUDA parity case and whole model graphs on the CUDA
# path run by the CPU emulator (tools/cuda-emu, with g++ or clang++), and the demo as a smoke
# test of the CLI path.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
NVRTC_LIB="$(tools/setup-nvrtc.sh)"
LD_LIBRARY_PATH="$NVRTC_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  cargo run -q -p focus-cli -- kernels --check --arch sm_80,sm_90a > target/kernels-check.txt
echo "kernels --check: ok ($(grep -c . target/kernels-check.txt) lines in target/kernels-check.txt)"
# Every CUDA parity case on the CPU emulator (tools/cuda-emu), when a C++ compiler exists.
if command -v "${CXX:-g++}" > /dev/null 2>&1 || command -v clang++ > /dev/null 2>&1; then
  cargo test -q -p focus-kernels --test emu -- --ignored --nocapture > target/cuda-emu.txt 2>&1 || {
    grep -v '^ok ' target/cuda-emu.txt | tail -n 80
    echo "cuda-emu: FAILED (full log in target/cuda-emu.txt)"
    exit 1
  }
  grep '^cuda-emu: [0-9]' target/cuda-emu.txt
  # Whole model graphs through the engine's CUDA planning, step by step on the emulator.
  cargo test -q -p focus-kernels --test emu_plan -- --ignored --nocapture > target/cuda-emu-plans.txt 2>&1 || {
    grep -E '^(FAIL|ok)|panicked' -A3 target/cuda-emu-plans.txt | tail -n 60
    echo "cuda-emu plans: FAILED (full log in target/cuda-emu-plans.txt)"
    exit 1
  }
  grep '^cuda-emu plans:' target/cuda-emu-plans.txt
else
  echo "cuda-emu: skipped: no C++ compiler (g++, clang++ or \$CXX)"
fi
cargo run -q -p focus-cli -- demo --tokens 4 > /dev/null
cargo run -q -p focus-cli -- demo --tokens 2 --dtype bf16 > /dev/null
echo "demo: ok"
cargo run -q -p focus-cli -- generate --steps 3 --out target/generate.png > /dev/null
cargo run -q -p focus-cli -- generate --steps 2 --dtype bf16 > /dev/null
test -s target/generate.png
echo "generate: ok"
cargo run -q -p focus-cli -- edit --steps 2 --out target/edit.png --mask-out target/edit-mask.png > /dev/null
test -s target/edit.png && test -s target/edit-mask.png
echo "edit: ok"
cargo run -q -p focus-cli -- profile qwen2 --size 5 --trace target/profile-trace.json > /dev/null
python3 -c "import json; n = len(json.load(open('target/profile-trace.json'))['traceEvents']); assert n > 10, n"
echo "profile: ok"
