"""docs/guides/reproducibility.md's table of the main packages' versions, read from the committed lock
file (requirements/test.lock, written by scripts/lock.sh), so that the page follows a re-lock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

LOCK = Path("requirements") / "test.lock"
# The packages the page names (the ones a study's numbers depend on), and a note shown beside some.
PACKAGES = {"torch": "CPU wheel", "transformers": "", "tokenizers": "", "bitsandbytes": "", "accelerate": "",
            "datasets": "", "snakemake": "", "snakemake-executor-plugin-slurm": "", "lm_eval": "tests",
            "numpy": "", "pandas": "", "scikit-learn": ""}


def locked(root: Path) -> tuple[str, dict[str, str]]:
    """The lock file's header line and its ``name==version`` pins (names as written there)."""
    text = (root / LOCK).read_text(encoding="utf-8")
    header = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M))
    return header, pins


def versions_block(root: Path) -> str:
    """The versions of ``PACKAGES`` in the lock file, two packages per row."""
    header, pins = locked(root)
    missing = [p for p in PACKAGES if p not in pins]
    if missing:
        raise ValueError(f"{LOCK}: no pin for {', '.join(missing)}")
    cells = [(f"{p} ({note})" if note else p, pins[p]) for p, note in PACKAGES.items()]
    half = -(-len(cells) // 2)
    made = header.rstrip(".").replace("; do not edit", "")
    lines = [f"From `{LOCK}` ({made[:1].lower() + made[1:]}).", "",
             "| package | version | | package | version |", "|---|---|---|---|---|"]
    for (a, va), right in zip(cells[:half], cells[half:] + [("", "")] * (2 * half - len(cells))):
        lines.append(f"| {a} | {va} | | {right[0]} | {right[1]} |")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Path], str]] = {"locked-versions": versions_block}
