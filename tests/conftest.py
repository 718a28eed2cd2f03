"""Shared fixtures: one smoke study run through Snakemake per session, reused by the tests that
read its results (end-to-end checks, partial reruns, determinism)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Tests run studies in self-contained folders so that they can edit code and config without touching
# the working tree; make_study is re-exported for the test modules.
from unlearning.studyfolder import make_study  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, configfile: Path | str | None = "configs/smoke.yaml",
              timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow of the study folder ``workdir`` (see make_study) inside it."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A completed smoke study (every stage) in a self-contained study folder; read-only for tests
    (use ``smoke_copy`` to change anything)."""
    work = make_study(tmp_path_factory.mktemp("smoke") / "study")
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> Path:
    """A private copy of the completed smoke study (code, config, results, Snakemake metadata)."""
    dst = tmp_path / "study"
    shutil.copytree(smoke_run, dst, symlinks=True)
    return dst
