"""Shared fixtures: one smoke study run through Snakemake per session, reused by the tests that
read its results (end-to-end checks, partial reruns, determinism)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: int = 900,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` on ``configs/smoke.yaml`` (or ``configfile``)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(configfile or ROOT / "configs" / "smoke.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A completed smoke study (every stage); tests must not modify it (copy it first)."""
    work = tmp_path_factory.mktemp("smoke")
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> Path:
    """A private copy of the completed smoke study that a test may change."""
    dst = tmp_path / "study"
    shutil.copytree(smoke_run, dst, symlinks=True)
    return dst
