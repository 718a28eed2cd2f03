#!/usr/bin/env bash
# Set up the environment, lint, start the single-node SLURM cluster the `slurm` tests need, run the
# whole test suite (fast and slow tiers), stop the daemons this script started. README's test command;
# .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# setup.sh re-checks every locked requirement with pip (~20 s) even when nothing changed: skip it when the
# venv was installed from this very lock, pyproject.toml and setup.sh (a clean clone always installs).
stamp=.venv/.installed-by-test-sh
want=$(cat requirements/test.lock pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)${UNLEARNING_UNLOCKED:+-unlocked}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    bash scripts/setup.sh
    echo "$want" > "$stamp"
fi
cluster=0
if bash scripts/slurm/start.sh; then
    cluster=1
elif [ -n "${CI:-}" ]; then
    echo "error: could not start the SLURM test cluster (scripts/slurm/start.sh); CI needs it" >&2
    exit 1
else
    echo "warning: SLURM test cluster not started; tests marked 'slurm' will be skipped" >&2
fi
cleanup() { if [ "$cluster" = 1 ]; then bash scripts/slurm/stop.sh || true; fi; }
trap cleanup EXIT
# Lint (seconds; configuration in pyproject.toml): Snakemake's linter on the default study, ruff on the
# Python code, snakefmt on the Snakefile and the rule files. Each exits non-zero on a finding. After the
# cluster's start: every Snakemake start imports the SLURM plugin, which asks `scontrol show config`, and
# without a controller that waits 9 s.
.venv/bin/snakemake --lint --cores 1
.venv/bin/ruff check .
.venv/bin/snakefmt --check Snakefile workflow/
# Both tiers (docs/extending/tests.md): -m "" lifts pyproject.toml's default -m "not slow" (the last -m wins, so
# `bash scripts/test.sh -m slurm` still selects); the 20 slowest tests are listed to keep the suite in budget.
# Two pytest-xdist workers, each taking whole files (module fixtures stay computed once) in collection order
# (--no-loadscope-reorder: tests/conftest.py puts the longest files first and shares one smoke study): most
# of the slow tier waits on Snakemake's start, SLURM's status checks and job starts, which the other
# worker's tests fill. TEST_WORKERS=0 runs serially.
.venv/bin/python -m pytest -m "" --durations=20 -n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
