#!/usr/bin/env bash
# All tests, on a fresh machine with only a Rust toolchain: every crate's unit and integration
# tests, then the demo as a smoke test of the CLI path.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
cargo run -q -p focus-cli -- demo --size 64 --reps 1 > /dev/null
echo "demo: ok"
