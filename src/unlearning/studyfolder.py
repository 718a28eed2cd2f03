"""Self-contained study folders: the workflow and the library copied next to their results.

Tests and benchmarks run studies in such folders so that they can change code and config without
touching the checkout, and so that a whole folder (results and Snakemake metadata included) can be
copied. Needs a source checkout (the repository around this package).
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a study folder needs of the repository.
STUDY_FILES = ["Snakefile", "config.yaml", "workflow", "src", "configs", "envs", "profiles"]


def make_study(dst: str | Path, repo: Path = REPO) -> Path:
    """Copy the workflow and library of ``repo`` into ``dst`` (created if missing); return it."""
    dst = Path(dst)
    if not (repo / "Snakefile").exists():
        raise FileNotFoundError(f"{repo}: not a checkout of this project (no Snakefile)")
    dst.mkdir(parents=True, exist_ok=True)
    for name in STUDY_FILES:
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst / name)
    return dst
