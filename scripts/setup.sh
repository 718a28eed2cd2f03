#!/usr/bin/env bash
# Create .venv and install the project. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# torch first, pinned to the CPU wheel this range admits, so later requirements resolve to it
# instead of pulling a CUDA build. On a GPU cluster install the torch you need before this script.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q "torch>=2.4,<2.14"
fi
.venv/bin/pip install -q -e ".[test]"
