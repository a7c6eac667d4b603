#!/usr/bin/env bash
# Creates .venv-torch-ref/ at the repository root with the pinned versions from
# requirements.txt, then runs the reference's pytest suite.
#   tools/torch_ref/setup.sh            # create/update venv + run tests
#   SKIP_TESTS=1 tools/torch_ref/setup.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/.venv-torch-ref"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
if [ "${SKIP_TESTS:-0}" != "1" ]; then
  cd "$ROOT/tools"
  "$VENV/bin/python" -m pytest -q torch_ref/tests "$@"
fi
