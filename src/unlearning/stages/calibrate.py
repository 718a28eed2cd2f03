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


def _point(scale: float, recs: Sequence[dict], ceils: dict[str, float], forget: Sequence[str], utility: str) -> dict:
    """One grid point (or ladder rung): the mean of the criterion's metrics over ``recs``."""
    level = _level(recs, [*forget, utility])
    levels = {n: level[n] for n in forget}
    return {"scale": scale, "forget": level[forget[0]], "utility": level[utility], "levels": levels,
            "excess": C.excess(levels, ceils), "seeds": [r["seed"] for r in recs]}


def _choice(by_scale: dict[float, list[dict]], retrain: Sequence[dict], target: Sequence[dict],
            names: Sequence[str], params: dict, top: float | None = None) -> dict:
    """The criterion applied to grid points (SCALE -> evaluation records, averaged over them) against
    the reference records' mean levels: the choice, its ceiling(s) and every point. With ``top`` the
    points are the rungs of an early-stopped ladder (records from the runs' ``early_stop``, each with
    ``reached`` and ``overshot``) and ``C.choose_ladder`` picks; else ``C.choose``."""
    *forget, utility = names
    retrain_level, target_level = _level(retrain, names), _level(target, names)
    ceils = C.ceilings(params, retrain_level, forget)
    grid = [_point(scale, by_scale[scale], ceils, forget, utility) for scale in sorted(by_scale)]
    if top is None:
        choice = C.choose(grid, ceils[forget[0]])
        for p in grid:
            p["qualifies"] = p["excess"] <= C.TOLERANCE
    else:
        for p in grid:
            recs = by_scale[p["scale"]]
            p["reached"] = p["qualifies"] = all(r["reached"] for r in recs)
            p["overshot"] = any(r["overshot"] for r in recs)
            p["stop_step"] = [r["stop_step"] for r in recs]
        choice = C.choose_ladder(grid, top)
    return {
        "retrain_forget": retrain_level[forget[0]],
        "retrain_utility": retrain_level[utility],
        "target_forget": target_level[forget[0]],
        "target_utility": target_level[utility],
        "threshold": ceils[forget[0]],
        "ceilings": ceils,
        "retrain_levels": {n: retrain_level[n] for n in forget},
        **choice,
        "points": grid,
    }


def run_records(runs: Sequence[str]) -> dict[float, list[dict]]:
    """SCALE -> the early-stop records of the runs ``SCALE=FOLDER`` (each folder's unlearning.json):
    ``seed``, ``metrics`` (the criterion's at the saved state), ``reached``, ``overshot``, ``stop_step``."""
    out: dict[float, list[dict]] = defaultdict(list)
    for item in runs:
        scale, _, folder = item.partition("=")
        path = Path(folder) / "unlearning.json"
        info = json.loads(path.read_text(encoding="utf-8"))
        if "early_stop" not in info:
            raise ValueError(f"{path}: no early_stop record (the run was not early-stopped)")
        es = info["early_stop"]
        out[float(scale)].append({"seed": info["seed"], "metrics": es["metrics"], "reached": es["reached"],
                                  "overshot": es["overshot"], "stop_step": es["stop_step"]})
    return out


def _own(records: Sequence[dict], seed: int, role: str) -> list[dict]:
    """A seed's own reference record: the one trained with that seed, or the one model all seeds share."""
    own = [r for r in records if int(r["seed"]) == seed]
    if own or len(records) <= 1:
        return own or list(records)
    raise ValueError(f"calibrate: no {role} evaluation of seed {seed} among "
                     f"{sorted(int(r['seed']) for r in records)}")


def calibrate(points: Sequence[str], retrain: Sequence[str], target: Sequence[str], kind: str, params: dict,
              meta: dict, out: str | Path, runs: Sequence[str] = (), top: float | None = None) -> dict:
    """Read every grid point's evaluation (``SCALE=path``, one per calibration seed) and apply the
    criterion of ``params`` (config `calibration`): to each multiplier's mean over the seeds, or with
    ``per_seed`` to each seed's own points against its own reference models. Under early stopping
    ``runs`` (``SCALE=FOLDER``, the ladder's walked runs) replace ``points`` and ``top`` is the
    ladder's highest multiplier. Writes the choice (or one per seed, under ``by_seed``) with every
    point's metrics to ``out``."""
    names = C.CRITERION_METRICS[kind]
    forget_name = names[0]
    if runs:
        by_scale = run_records(runs)
        for recs in by_scale.values():
            for r in recs:
                missing = [n for n in names if n not in r["metrics"]]
                if missing:
                    raise ValueError(f"calibrate: a run of seed {r['seed']} recorded no {missing[0]}")
    else:
        paths: dict[float, list[str]] = defaultdict(list)
        for item in points:
            scale, _, path = item.partition("=")
            if not path:
                raise ValueError(f"calibrate --points: expected SCALE=PATH, got {item!r}")
            paths[float(scale)].append(path)
        by_scale = {scale: _records(ps, names) for scale, ps in paths.items()}
    if not by_scale:
        raise ValueError("calibrate: no grid points (--points) and no early-stopped runs (--runs)")
    retrain_recs, target_recs = _records(retrain, names), _records(target, names)
    record = {**meta, "criterion": params["criterion"], "margin": params.get("margin"),
              "forget_metric": forget_name, "forget_metrics": list(names[:-1]), "utility_metric": names[-1],
              "early_stop": bool(runs)}
    if params.get("per_seed"):
        seeds = sorted({int(r["seed"]) for recs in by_scale.values() for r in recs})
        record["by_seed"] = {}
        for seed in seeds:
            own = {scale: [r for r in recs if int(r["seed"]) == seed] for scale, recs in by_scale.items()}
            if runs:  # a seed's ladder stops where it reached: rungs above it have none of its runs
                own = {scale: recs for scale, recs in own.items() if recs}
            missing = [f"x{scale:g}" for scale, recs in own.items() if not recs]
            if missing:
                raise ValueError(f"calibrate: seed {seed} has no grid point at {', '.join(missing)}")
            record["by_seed"][str(seed)] = _choice(own, _own(retrain_recs, seed, "retrain"),
                                                   _own(target_recs, seed, "target"), names, params, top)
    else:
        record.update(_choice(by_scale, retrain_recs, target_recs, names, params, top))
    write_json(out, record)
    for g in C.groups(record):
        log.info("%s seed %s: multiplier %g (%s; %s %.1f vs ceiling %.1f)", meta, g["seed"], g["scale"],
                 C.status(g), forget_name, g["gap"] + g["threshold"], g["threshold"])
    return record


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--points", nargs="*", default=[],
                   help="SCALE=JSON: each grid point's unattacked evaluation (one per calibration seed)")
    p.add_argument("--runs", nargs="*", default=[],
                   help="SCALE=FOLDER: each early-stopped ladder run (its unlearning.json), instead of --points")
    p.add_argument("--top", type=float, default=None, help="the ladder's highest multiplier (with --runs)")
    p.add_argument("--retrain", nargs="*", default=[], help="the retrain model's unattacked evaluations")
    p.add_argument("--target", nargs="*", default=[], help="the target model's unattacked evaluations")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--params", type=json_arg, required=True, help="the calibration config entry")
    p.add_argument("--meta", type=json_arg, required=True, help="benchmark/method/optimizer/grade")
    p.add_argument("--out", required=True, help="choice JSON")


def _run(a: Namespace) -> None:
    calibrate(a.points, a.retrain, a.target, a.kind, a.params, a.meta, a.out, runs=a.runs, top=a.top)


STAGE = Stage(_arguments, _run, needs_torch=False)  # reads evaluation JSON files only
