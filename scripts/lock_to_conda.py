"""Write the conda environment of the rules (envs/unlearning.yaml) from the runtime lock file, so that
clusters running `snakemake --sdm conda` install exactly the versions the local install uses.

Usage: python scripts/lock_to_conda.py requirements/runtime.lock envs/unlearning.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
# Conda environment for the rules under `snakemake --sdm conda` (e.g. a cluster without the project's
# .venv). Generated from requirements/runtime.lock by scripts/lock.sh: the same exact versions as the
# local install (tests/test_envs.py checks). Edit pyproject.toml's ranges and rerun scripts/lock.sh.
# The project's own package (the `unlearning` command the rules run) is installed by
# unlearning.post-deploy.sh, which Snakemake runs after creating the env.
# torch comes from PyPI: on Linux its default wheel is the CUDA build the GPU rules need, which brings
# its own nvidia-* runtime packages (not pinned here; they follow torch's pin).
name: unlearning
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def pins(lock: Path) -> list[str]:
    """The `name==version` lines of a lock file, comments and blanks dropped."""
    return [ln.strip() for ln in lock.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def main(lock: str, out: str) -> None:
    body = "".join(f'      - "{p}"\n' for p in pins(Path(lock)))
    Path(out).write_text(HEADER + body)


if __name__ == "__main__":
    main(*sys.argv[1:])
