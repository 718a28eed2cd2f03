"""Stage calibrate: one benchmark x method x optimizer entry's learning-rate choice from its grid points."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from .. import calibration as C
from .common import write_json

log = logging.getLogger(__name__)


def _levels(paths: Sequence[str | Path], names: Sequence[str]) -> tuple[list[dict], dict[str, float | None]]:
    """The evaluation records of ``paths`` (each read once) and the mean of each metric of ``names``
    over them (None for no paths); a record without one of them is an error naming the file."""
    recs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    for path, rec in zip(paths, recs):
        missing = [n for n in names if n not in rec["metrics"]]
        if missing:
            raise ValueError(f"{path}: no metric {missing[0]} (the calibration's criterion reads it)")
    return recs, {n: _mean([float(r["metrics"][n]) for r in recs]) for n in names}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def calibrate(points: Sequence[str], retrain: Sequence[str], target: Sequence[str], kind: str, params: dict,
              meta: dict, out: str | Path) -> dict:
    """Read every grid point's evaluation (``SCALE=path``, one per calibration seed), average each
    multiplier over the seeds, apply the criterion of ``params`` (config `calibration`) and write the
    choice with every point's metrics to ``out``."""
    forget_name, utility_name = C.CRITERION_METRICS[kind]
    by_scale: dict[float, list[str]] = defaultdict(list)
    for item in points:
        scale, _, path = item.partition("=")
        if not path:
            raise ValueError(f"calibrate --points: expected SCALE=PATH, got {item!r}")
        by_scale[float(scale)].append(path)
    names = (forget_name, utility_name)
    grid = []
    for scale in sorted(by_scale):
        recs, level = _levels(by_scale[scale], names)
        grid.append({"scale": scale, "forget": level[forget_name], "utility": level[utility_name],
                     "seeds": [r["seed"] for r in recs]})
    retrain_level = _levels(retrain, names)[1]
    target_level = _levels(target, names)[1]
    ceiling = C.threshold(params, retrain_level[forget_name])
    choice = C.choose(grid, ceiling)
    for p in grid:
        p["qualifies"] = p["forget"] <= ceiling
    record = {
        **meta,
        "criterion": params["criterion"],
        "margin": params.get("margin"),
        "forget_metric": forget_name,
        "utility_metric": utility_name,
        "retrain_forget": retrain_level[forget_name],
        "retrain_utility": retrain_level[utility_name],
        "target_forget": target_level[forget_name],
        "target_utility": target_level[utility_name],
        "threshold": ceiling,
        **choice,
        "points": grid,
    }
    write_json(out, record)
    log.info("%s: multiplier %g (%s; %s %.1f vs ceiling %.1f)", meta, choice["scale"], C.status(choice),
             forget_name, choice["gap"] + ceiling, ceiling)
    return record
