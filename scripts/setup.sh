#!/usr/bin/env bash
# Create .venv and install the project with the exact versions of requirements/test.lock (runtime +
# test extra; refreshed by scripts/lock.sh). Idempotent: a second run only checks.
# UNLEARNING_UNLOCKED=1 installs from pyproject.toml's ranges instead (newest versions that day).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=requirements/test.lock
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# torch first, at the lock's version, from this machine's CPU wheel, so that later requirements resolve
# to it instead of pulling a multi-GB CUDA build. On a GPU cluster install the torch you need first.
torch_pin=$(grep -i '^torch==' "$LOCK")
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q "$torch_pin"
fi
if [ -n "${UNLEARNING_UNLOCKED:-}" ]; then
    .venv/bin/pip install -q -e ".[test]"
else
    # Everything but torch at its locked version (a CUDA torch installed beforehand is kept), then the
    # project itself without resolving again.
    grep -v -i '^torch==' "$LOCK" | .venv/bin/pip install -q -r /dev/stdin
    .venv/bin/pip install -q --no-deps -e .
fi
.venv/bin/pip check
