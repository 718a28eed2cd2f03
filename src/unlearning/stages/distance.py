"""Stage grade-distance: how far apart the unlearned weights of optimizers of different grades are."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..commands import Stage, json_arg

COLUMNS = ["benchmark", "method", "seed", "optimizer_a", "grade_a", "optimizer_b", "grade_b", "metric", "value"]


def grade_distance(runs: list[dict], out: str | Path, device: str = "cpu", workers: int | None = None) -> int:
    """Write a tidy CSV (``COLUMNS``) with ``weight_distance.METRICS`` for every pair of runs of
    different grades on the same benchmark, method and seed; return the number of pairs.

    ``runs``: dicts with benchmark, method, optimizer, grade, seed, path (the unlearned model's
    folder) and target (the target it was unlearned from; a pair shares it). Each model is read once:
    the pairs of one benchmark, method and seed are streamed together
    (``weight_distance.group_distances``, on ``device``); the rows keep ``grade_pairs``' order.
    On the CPU up to ``workers`` groups (default: torch's thread count, the job's ``--threads``) run
    at once, each in one thread with single-threaded torch ops, so the sums are reduced exactly as
    in a one-thread run whatever the thread count (bit-identical numbers); on a GPU groups run in turn.
    """
    import pandas as pd

    from ..weight_distance import METRICS, grade_pairs, group_distances

    missing = sorted({r["path"] for r in runs if not r.get("target")})
    if missing:
        raise ValueError(f"grade-distance: no target model given for run(s) {', '.join(missing)}")
    pairs = list(grade_pairs(runs))
    # one group per benchmark, method and seed (its models share the target); memory grows with a group
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for a, b in pairs:
        if a["target"] != b["target"]:
            raise ValueError(f"grade-distance: {a['path']} and {b['path']} were unlearned from different "
                             f"targets ({a['target']}, {b['target']})")
        groups.setdefault((a["target"], a["benchmark"], a["method"], a["seed"]), []).append((a, b))

    def one(key: tuple) -> list[dict[str, float]]:
        group = groups[key]
        paths = sorted({r["path"] for pair in group for r in pair})
        idx = [(paths.index(a["path"]), paths.index(b["path"])) for a, b in group]
        return group_distances(paths, key[0], idx, device=device)

    import torch

    threads = torch.get_num_threads()
    workers = 1 if device != "cpu" else max(1, min(workers or threads, len(groups)))
    if workers > 1:
        torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(zip(groups, pool.map(one, groups)))
    finally:
        torch.set_num_threads(threads)
    found = {(a["path"], b["path"]): d for key, ds in results.items() for (a, b), d in zip(groups[key], ds)}
    rows, n = [], 0
    for a, b in pairs:
        d = found[a["path"], b["path"]]
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


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--runs", type=json_arg, required=True,
                   help="JSON list of {benchmark, method, optimizer, grade, seed, path, target}")
    p.add_argument("--out", required=True, help="CSV")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the sums run (cpu: bit-identical to one thread; cuda: equal to rounding)")


STAGE = Stage(_arguments, lambda a: grade_distance(a.runs, a.out, device=a.device), needs_torch=True)
