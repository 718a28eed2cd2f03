"""The paper's TOFU table from a TOFU benchmark's tidy table: rows Original (target), Retrain, then
each method / optimizer; columns forget probability, forget ROUGE-L, model utility (the paper's)
and Forget Quality; mean and 95% CI over seeds, without attack. CSV + markdown."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path

import pandas as pd

from ..commands import Stage
from .files import atomic_csv, atomic_text
from .stats import fmt, summarise
from .tidy import row_keys, row_label

# The paper's columns (Prob. / ROUGE / Model utility), then TOFU's Forget Quality.
COLUMNS = {"tofu_prob_f": "Forget prob. (x100)", "tofu_rouge_f": "Forget ROUGE-L (x100)",
           "model_utility": "Model utility (x100)", "forget_quality": "Forget Quality (KS p)"}


def _fq(m: float, h: float) -> str:
    """p-values span many decades: two significant digits."""
    if m != m:
        return ""
    return f"{m:.2g}" + (f" ± {h:.2g}" if h == h else "")


def tofu_table(df: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per reference model and (method, optimizer); per column of ``COLUMNS``
    the mean over seeds and the 95% CI half-width (``_ci95``, NaN with one seed); ``n`` seeds."""
    missing = [m for m in COLUMNS if m not in set(df.metric)]
    if missing:
        raise ValueError(f"not a TOFU table: metrics {missing} missing")
    # the paper's rows: not the attacks' positive control (report.findings.POSITIVE)
    d = df[(df.attack == "none") & df.metric.isin(list(COLUMNS)) & (df.optimizer != "control")]
    s = summarise(d, ["method", "optimizer", "metric"]).set_index(["method", "optimizer", "metric"])
    grades = dict(zip(df.optimizer, df.grade))
    rows = []
    for method, opt in row_keys(d):
        row = {"row": row_label(method, opt), "method": method, "optimizer": opt, "grade": grades[opt]}
        for m in COLUMNS:
            hit = s.loc[(method, opt, m)] if (method, opt, m) in s.index else None
            row[f"{m}_mean"] = float(hit["mean"]) if hit is not None else float("nan")
            row[f"{m}_ci95"] = float(hit["ci95"]) if hit is not None else float("nan")
            row["n"] = int(hit["n"]) if hit is not None else 0
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, bench: str) -> str:
    """The table as markdown (mean ± 95% CI half-width over seeds)."""
    head = ["Model", *COLUMNS.values(), "seeds"]
    lines = [f"### TOFU forget10: {bench} (no attack; mean ± 95% CI over seeds)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [fmt(r[f"{m}_mean"], r[f"{m}_ci95"]) if m != "forget_quality"
                 else _fq(r[f"{m}_mean"], r[f"{m}_ci95"]) for m in COLUMNS]
        lines.append("| " + " | ".join([r["row"], *cells, str(r["n"])]) + " |")
    return "\n".join(lines) + "\n"


def write(table_csv: str | Path, out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """Read a TOFU benchmark's tidy table; write its paper-style table as CSV and markdown."""
    df = pd.read_csv(table_csv)
    table = tofu_table(df)
    atomic_csv(table, out_csv)
    atomic_text(markdown(table, str(df.benchmark.iloc[0])), out_md)
    return table


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--table", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)


STAGE = Stage(_arguments, lambda a: write(a.table, a.csv, a.md), needs_torch=False)
