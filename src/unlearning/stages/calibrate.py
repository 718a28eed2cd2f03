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


def _metric(path: str | Path, name: str) -> float:
    rec = json.loads(Path(path).read_text(encoding="utf-8"))
    if name not in rec["metrics"]:
        raise ValueError(f"{path}: no metric {name} (the calibration's criterion reads it)")
    return float(rec["metrics"][name])


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
    grid = []
    for scale in sorted(by_scale):
        paths = by_scale[scale]
        grid.append({
            "scale": scale,
            "forget": _mean([_metric(p, forget_name) for p in paths]),
            "utility": _mean([_metric(p, utility_name) for p in paths]),
            "seeds": [json.loads(Path(p).read_text(encoding="utf-8"))["seed"] for p in paths],
        })
    retrain_forget = _mean([_metric(p, forget_name) for p in retrain])
    target_forget = _mean([_metric(p, forget_name) for p in target])
    ceiling = C.threshold(params, retrain_forget)
    choice = C.choose(grid, ceiling)
    for p in grid:
        p["qualifies"] = p["forget"] <= ceiling
    record = {
        **meta,
        "criterion": params["criterion"],
        "margin": params.get("margin"),
        "forget_metric": forget_name,
        "utility_metric": utility_name,
        "retrain_forget": retrain_forget,
        "retrain_utility": _mean([_metric(p, utility_name) for p in retrain]),
        "target_forget": target_forget,
        "target_utility": _mean([_metric(p, utility_name) for p in target]),
        "threshold": ceiling,
        **choice,
        "points": grid,
    }
    write_json(out, record)
    log.info("%s: multiplier %g (%s; %s %.1f vs ceiling %.1f)", meta, choice["scale"], C.status(choice),
             forget_name, choice["gap"] + ceiling, ceiling)
    return record
