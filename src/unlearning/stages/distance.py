"""Stage grade-distance: how far apart the unlearned weights of optimizers of different grades are."""

from __future__ import annotations

import os
from pathlib import Path

COLUMNS = ["benchmark", "method", "seed", "optimizer_a", "grade_a", "optimizer_b", "grade_b", "metric", "value"]


def grade_distance(runs: list[dict], out: str | Path) -> int:
    """Write a tidy CSV (``COLUMNS``) with ``weight_distance.METRICS`` for every pair of runs of
    different grades on the same benchmark, method and seed; return the number of pairs.

    ``runs``: dicts with benchmark, method, optimizer, grade, seed, path (the unlearned model's
    folder) and target (the target it was unlearned from; a pair shares it). Each model is read once
    per pair.
    """
    import pandas as pd

    from ..weight_distance import METRICS, grade_pairs, model_distance

    missing = sorted({r["path"] for r in runs if not r.get("target")})
    if missing:
        raise ValueError(f"grade-distance: no target model given for run(s) {', '.join(missing)}")
    rows, n = [], 0
    for a, b in grade_pairs(runs):
        if a["target"] != b["target"]:
            raise ValueError(f"grade-distance: {a['path']} and {b['path']} were unlearned from different "
                             f"targets ({a['target']}, {b['target']})")
        d = model_distance(a["path"], b["path"], a["target"])
        n += 1
        for metric in METRICS:
            rows.append([a["benchmark"], a["method"], int(a["seed"]), a["optimizer"], a["grade"], b["optimizer"],
                         b["grade"], metric, d[metric]])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False)
    os.replace(tmp, out)
    return n
