#!/usr/bin/env bash
# The GPU machines have torch, transformers and timm but no diffusers and no network. This
# downloads the pinned diffusers wheel into .gpu-wheels/ (gitignored; carry it along), and,
# run there with `--install DIR`, installs it without network into DIR for PYTHONPATH.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WHEELS="$ROOT/.gpu-wheels"
VERSION="$(grep -E '^diffusers==' "$ROOT/tools/torch_ref/requirements.txt" | cut -d= -f3)"
if [ "${1:-}" = "--install" ]; then
  python3 -m pip install --quiet --no-deps --no-index --target "${2:?target dir}" "$WHEELS"/diffusers-*.whl
  echo "installed diffusers $VERSION into $2 (add it to PYTHONPATH)"
else
  mkdir -p "$WHEELS"
  python3 -m pip download --quiet --no-deps "diffusers==$VERSION" -d "$WHEELS"
  ls -la "$WHEELS"
fi
