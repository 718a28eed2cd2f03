"""The per-benchmark figures by name; each is drawn by its own module (``{name}_plot``), imported
only when asked for, so that one figure's job runs (and is replanned for) that module alone."""

from __future__ import annotations

import importlib
from argparse import ArgumentParser
from pathlib import Path
from typing import Sequence

from ..commands import Stage

FIGURES = ("quantization", "relearning", "tradeoff")


def figures(table: str | Path, out_dir: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """Draw the figures ``names`` (default: all of FIGURES) of a tidy table as ``out_dir/{name}.png``
    and ``.svg``."""
    import pandas as pd

    names = FIGURES if names is None else names
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {list(FIGURES)}")
    df = pd.read_csv(table)
    out = Path(out_dir)
    written = []
    for name in names:
        draw = getattr(importlib.import_module(f"{__package__}.{name}_plot"), f"{name}_figure")
        draw(df, out / f"{name}.png", out / f"{name}.svg")
        written += [out / f"{name}.png", out / f"{name}.svg"]
    return written


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--table", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--only", nargs="+", choices=list(FIGURES), default=None,
                   help="draw only these figures (default: all three)")


STAGE = Stage(_arguments, lambda a: figures(a.table, a.out, a.only or None), needs_torch=False)
