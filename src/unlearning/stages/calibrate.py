"""Stage calibrate: one benchmark x method x optimizer entry's learning-rate choice from its grid points."""

from __future__ import annotations

import json
import logging
from argparse import ArgumentParser, Namespace
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from .. import calibration as C
from ..commands import KINDS, Stage, json_arg
from .common import write_json

log = logging.getLogger(__name__)


def _records(paths: Sequence[str | Path], names: Sequence[str]) -> list[dict]:
    """The evaluation records of ``paths``, each read once; a record without one of the metrics of
    ``names`` is an error naming the file."""
    recs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    for path, rec in zip(paths, recs):
        missing = [n for n in names if n not in rec["metrics"]]
        if missing:
            raise ValueError(f"{path}: no metric {missing[0]} (the calibration's criterion reads it)")
    return recs


def _level(records: Sequence[dict], names: Sequence[str]) -> dict[str, float | None]:
    """Each metric of ``names`` averaged over ``records`` (None for no records)."""
    return {n: sum(float(r["metrics"][n]) for r in records) / len(records) if records else None for n in names}


def _choice(by_scale: dict[float, list[dict]], retrain: Sequence[dict], target: Sequence[dict],
            names: tuple[str, str], params: dict) -> dict:
    """The criterion applied to grid points (SCALE -> evaluation records, averaged over them) against
    the reference records' mean levels: the choice, its ceiling and every point."""
    forget_name, utility_name = names
    grid = []
    for scale in sorted(by_scale):
        level = _level(by_scale[scale], names)
        grid.append({"scale": scale, "forget": level[forget_name], "utility": level[utility_name],
                     "seeds": [r["seed"] for r in by_scale[scale]]})
    retrain_level, target_level = _level(retrain, names), _level(target, names)
    ceiling = C.threshold(params, retrain_level[forget_name])
    choice = C.choose(grid, ceiling)
    for p in grid:
        p["qualifies"] = C.qualifies(p["forget"], ceiling)
    return {
        "retrain_forget": retrain_level[forget_name],
        "retrain_utility": retrain_level[utility_name],
        "target_forget": target_level[forget_name],
        "target_utility": target_level[utility_name],
        "threshold": ceiling,
        **choice,
        "points": grid,
    }


def _own(records: Sequence[dict], seed: int, role: str) -> list[dict]:
    """A seed's own reference record: the one trained with that seed, or the one model all seeds share."""
    own = [r for r in records if int(r["seed"]) == seed]
    if own or len(records) <= 1:
        return own or list(records)
    raise ValueError(f"calibrate: no {role} evaluation of seed {seed} among "
                     f"{sorted(int(r['seed']) for r in records)}")


def calibrate(points: Sequence[str], retrain: Sequence[str], target: Sequence[str], kind: str, params: dict,
              meta: dict, out: str | Path) -> dict:
    """Read every grid point's evaluation (``SCALE=path``, one per calibration seed) and apply the
    criterion of ``params`` (config `calibration`): to each multiplier's mean over the seeds, or with
    ``per_seed`` to each seed's own points against its own reference models. Writes the choice (or
    one per seed, under ``by_seed``) with every point's metrics to ``out``."""
    names = C.CRITERION_METRICS[kind]
    forget_name = names[0]
    paths: dict[float, list[str]] = defaultdict(list)
    for item in points:
        scale, _, path = item.partition("=")
        if not path:
            raise ValueError(f"calibrate --points: expected SCALE=PATH, got {item!r}")
        paths[float(scale)].append(path)
    by_scale = {scale: _records(ps, names) for scale, ps in paths.items()}
    retrain_recs, target_recs = _records(retrain, names), _records(target, names)
    record = {**meta, "criterion": params["criterion"], "margin": params.get("margin"),
              "forget_metric": forget_name, "utility_metric": names[1]}
    if params.get("per_seed"):
        seeds = sorted({int(r["seed"]) for recs in by_scale.values() for r in recs})
        record["by_seed"] = {}
        for seed in seeds:
            own = {scale: [r for r in recs if int(r["seed"]) == seed] for scale, recs in by_scale.items()}
            missing = [f"x{scale:g}" for scale, recs in own.items() if not recs]
            if missing:
                raise ValueError(f"calibrate: seed {seed} has no grid point at {', '.join(missing)}")
            record["by_seed"][str(seed)] = _choice(own, _own(retrain_recs, seed, "retrain"),
                                                   _own(target_recs, seed, "target"), names, params)
    else:
        record.update(_choice(by_scale, retrain_recs, target_recs, names, params))
    write_json(out, record)
    for g in C.groups(record):
        log.info("%s seed %s: multiplier %g (%s; %s %.1f vs ceiling %.1f)", meta, g["seed"], g["scale"],
                 C.status(g), forget_name, g["gap"] + g["threshold"], g["threshold"])
    return record


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--points", nargs="+", required=True,
                   help="SCALE=JSON: each grid point's unattacked evaluation (one per calibration seed)")
    p.add_argument("--retrain", nargs="*", default=[], help="the retrain model's unattacked evaluations")
    p.add_argument("--target", nargs="*", default=[], help="the target model's unattacked evaluations")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--params", type=json_arg, required=True, help="the calibration config entry")
    p.add_argument("--meta", type=json_arg, required=True, help="benchmark/method/optimizer/grade")
    p.add_argument("--out", required=True, help="choice JSON")


def _run(a: Namespace) -> None:
    calibrate(a.points, a.retrain, a.target, a.kind, a.params, a.meta, a.out)


STAGE = Stage(_arguments, _run, needs_torch=False)  # reads evaluation JSON files only
