"""Helpers shared by the stages: atomic JSON output and the benchmark's text splits by role."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..data.io import document, load_split, read_template
from ..registry import benchmark_kind


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def texts(data_dir: str | Path, kind: str, name: str) -> list[str]:
    """The training text of every record of one split (``text``, or a TOFU question/answer pair in
    the folder's template: a ``QADocument``, whose question carries no loss)."""
    template = read_template(data_dir) if benchmark_kind(kind).qa_template else None
    return [document(r, template) for r in load_split(data_dir, kind, name)]


def forget_retain(data_dir: str | Path, kind: str) -> tuple[list[str], list[str]]:
    """The forget and retain texts that unlearning (and relearning) use (the kind's registry roles)."""
    roles = benchmark_kind(kind).roles
    return texts(data_dir, kind, roles["forget"]), texts(data_dir, kind, roles["retain"])


def training_texts(data_dir: str | Path, kind: str, role: str) -> list[str]:
    """Corpus a model is trained on: forget + all retain text (target) or retain only (retrain)."""
    forget, retain = forget_retain(data_dir, kind)
    # The kind's other retain-side files (MUSE's retain2; TOFU's utility sets, which stand for what a
    # pretrained model already knew). At paper scale both models come from the hub; this is not used.
    for name in benchmark_kind(kind).training_extra:
        retain = retain + texts(data_dir, kind, name)
    if role == "target":
        return forget + retain
    if role == "retrain":
        return retain
    raise ValueError(f"unknown model role {role!r}; expected 'target' or 'retrain'")
