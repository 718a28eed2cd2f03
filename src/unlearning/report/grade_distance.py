"""The grade-distance check as markdown: for each pair of optimizers of different grades, how far
apart their unlearned weights landed (results/tables/grade_distance.csv, written by the
grade-distance stage; see ``unlearning.weight_distance`` for the metrics), mean over seeds. A grade that
collapses onto another shows as a small relative distance and a large share of identical weights."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Columns shown, in order, with their headers.
SHOWN = {"rel_distance": "relative distance", "update_cosine": "update cosine",
         "identical_share": "identical weights (%)"}


def table(csv: str | Path) -> pd.DataFrame:
    """Mean over seeds per benchmark, method and optimizer pair, one column per metric in ``SHOWN``
    (``identical_share`` in percent)."""
    df = pd.read_csv(csv)
    keys = ["benchmark", "method", "optimizer_a", "grade_a", "optimizer_b", "grade_b"]
    if df.empty:
        return pd.DataFrame(columns=[*keys, *SHOWN])
    wide = df[df.metric.isin(list(SHOWN))].pivot_table(index=keys, columns="metric", values="value", aggfunc="mean")
    wide["identical_share"] = 100.0 * wide["identical_share"]
    return wide[list(SHOWN)].reset_index()


def markdown(csv: str | Path) -> str:
    """The pairs of ``table(csv)`` as a markdown table (empty text when there are no pairs)."""
    t = table(csv)
    if t.empty:
        return ""
    lines = ["| benchmark | method | optimizer (grade) | vs optimizer (grade) | " + " | ".join(SHOWN.values()) + " |",
             "|---|---|---|---|" + "---:|" * len(SHOWN)]
    for _, r in t.iterrows():
        cells = " | ".join(f"{r[m]:.3f}" if m != "identical_share" else f"{r[m]:.1f}" for m in SHOWN)
        lines.append(f"| {r.benchmark} | {r.method} | {r.optimizer_a} ({r.grade_a}) | {r.optimizer_b} ({r.grade_b}) "
                     f"| {cells} |")
    return "\n".join(lines)
