"""Atomic writes: a reader never sees a half-written table, text or figure."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def atomic_csv(df: pd.DataFrame, out: str | Path) -> None:
    """Write ``df`` to ``out`` (CSV, no index) through a temporary file renamed into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out)


def atomic_text(text: str, out: str | Path) -> None:
    """Write ``text`` (UTF-8) to ``out`` through a temporary file renamed into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
