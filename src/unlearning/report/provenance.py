"""Where the study's numbers were made: the distinct ``env`` blocks of the evaluation JSON files
(library versions, device, torch's CPU capability, bitsandbytes' 4-bit CPU path; see
``unlearning.provenance``), with how many evaluations each covers. One table for the whole study, shown
once by the summary and the findings."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..commands import Stage
from .files import atomic_csv

COUNT = "evaluations"


def collect(evals: Sequence[str | Path]) -> pd.DataFrame:
    """One row per distinct ``env`` block among ``evals`` (JSON files), with its count."""
    rows = []
    for path in evals:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        if "env" not in rec:
            raise ValueError(f"{path}: no 'env' block (evaluated by an older version; rerun its evaluation)")
        rows.append(rec["env"])
    if not rows:
        raise ValueError("provenance: no evaluation files given")
    df = pd.DataFrame(rows).astype(str)
    cols = list(df.columns)
    return df.value_counts(cols, sort=False).rename(COUNT).reset_index().sort_values(cols, kind="stable")


def write(evals: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """Write ``collect(evals)`` to ``out`` (CSV)."""
    df = collect(evals)
    atomic_csv(df, out)
    return df


def markdown(table: str | Path) -> str:
    """The provenance table as markdown lines, headed by a note when several environments mixed."""
    df = pd.read_csv(table, dtype=str)
    cols = [c for c in df.columns if c != COUNT]
    lines = ["| " + " | ".join([*cols, COUNT]) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += ["| " + " | ".join(str(r[c]) for c in [*cols, COUNT]) + " |" for _, r in df.iterrows()]
    if len(df) > 1:
        lines = [f"Note: the evaluations ran in {len(df)} different environments; numbers that depend on "
                 "the CPU or the library versions may differ between them.", "", *lines]
    return "\n".join(lines)


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True, help="evaluation JSON files")
    p.add_argument("--out", required=True)


STAGE = Stage(_arguments, lambda a: write(a.inputs, a.out), needs_torch=False)
