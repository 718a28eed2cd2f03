"""Learning-rate calibration: which multiplier of an optimizer entry's learning rate the study runs.

Each benchmark x method x optimizer entry unlearns at the multipliers of its grid (config
`calibration`); the criterion reads the unattacked forget and utility metrics of those runs and picks
one (``choose``). Under `calibration.early_stop` every run stops at the first check that matches the
retrain model (``meets``) and the grid is a ladder walked upward only while a rung never got there
(``walk``, ``choose_ladder``). Torch-free: the workflow imports it to name files and to read the choices.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

from .registry import BENCHMARK_KINDS


def forget_metrics(kind: str) -> tuple[str, ...]:
    """The forget metrics the criterion bounds for benchmark ``kind`` (lower is more forgotten): the
    registry's criterion metric first (the one tables and figures show), then ``criterion_also``."""
    k = BENCHMARK_KINDS[kind]
    return (k.criterion[0], *k.criterion_also)


def utility_metric(kind: str) -> str:
    """The utility metric the criterion maximises for benchmark ``kind`` (higher is better)."""
    return BENCHMARK_KINDS[kind].criterion[1]


# Every metric the criterion reads, per benchmark kind: its forget metrics, then its utility metric.
# They are what the calibration evaluation (or an early-stopped run's last check) computes.
CRITERION_METRICS: dict[str, tuple[str, ...]] = {
    kind: (*forget_metrics(kind), utility_metric(kind)) for kind in BENCHMARK_KINDS
}


def enabled(config: dict) -> bool:
    """Whether the config calibrates learning rates (`calibration` is not false)."""
    return config.get("calibration", False) is not False


def grid(config: dict, optimizer: str) -> list[float]:
    """Learning-rate multipliers tried for ``optimizer``: its `calibration.grids` entry, else
    `calibration.grid`; ``[1.0]`` (the config's own learning rates) when calibration is off."""
    if not enabled(config):
        return [1.0]
    cal = config["calibration"]
    return [float(x) for x in cal["grids"].get(optimizer, cal["grid"])]


def early_stop(config: dict) -> dict | None:
    """The `calibration.early_stop` entry (``every``, ``max_steps``) when the study calibrates and stops
    its runs early; None otherwise (every grid point runs the fixed `unlearning` steps)."""
    if not enabled(config):
        return None
    entry = config["calibration"].get("early_stop", False)
    return entry if entry is not False else None


def below(config: dict) -> list[float]:
    """`calibration.early_stop.below`: multipliers under the ladder's first, tried downward when a run
    at the first rung overshoots (walk); none without early stopping."""
    stop = early_stop(config)
    return [float(x) for x in (stop or {}).get("below", [])]


def budget(config: dict) -> int | None:
    """An early-stopped run's step budget: `early_stop.max_steps`, else `unlearning.steps`."""
    stop = early_stop(config)
    if stop is None:
        return None
    return int(stop.get("max_steps") or config["unlearning"]["steps"])


def tag(scale: float | str) -> str:
    """A multiplier as it appears in paths (the {scale} wildcard): shortest float form, ``1`` for 1.0."""
    return f"{float(scale):g}"


def per_seed(config: dict) -> bool:
    """Whether each study seed calibrates by itself (`calibration.seeds: each`): every seed unlearns at
    every grid multiplier from its own target, its own points are judged against its own reference
    models, and it runs its own choice, so the spread over seeds holds the choice's variance too."""
    return enabled(config) and config["calibration"]["seeds"] == "each"


def seeds(config: dict, study_seeds: Iterable[int] | None = None) -> list[int]:
    """Seeds every grid point runs (none when calibration is off): `calibration.seeds`, or under
    `each` the seeds the entry's study runs use (``study_seeds``, by default `seeds`)."""
    if not enabled(config):
        return []
    if per_seed(config):
        return sorted({int(s) for s in (config["seeds"] if study_seeds is None else study_seeds)})
    return [int(s) for s in config["calibration"]["seeds"]]


def model_seed(config: dict, role: str, seed: int | str) -> int:
    """Seed of the ``role`` model (target/retrain) an unlearning run of seed ``seed`` uses: the run's
    seed for roles listed in `training.per_seed`, else `training.seed` (one model for all runs)."""
    training = config["training"]
    return int(seed) if role in training.get("per_seed", []) else int(training["seed"])


def model_seeds(config: dict, role: str, run_seeds: Iterable[int]) -> list[int]:
    """The distinct ``role`` model seeds the runs of ``run_seeds`` use, sorted."""
    return sorted({model_seed(config, role, s) for s in run_seeds})


def threshold(cal: dict, retrain_forget: float | None) -> float:
    """The forget-metric ceiling of the criterion: retrain's + margin, or the fixed threshold."""
    if cal["criterion"] == "forget_at_most":
        return float(cal["threshold"])
    if retrain_forget is None:
        raise ValueError("criterion match_retrain needs the retrain model's forget metric")
    return float(retrain_forget) + float(cal["margin"])


def ceilings(cal: dict, retrain: dict[str, float | None], names: Sequence[str]) -> dict[str, float]:
    """Each forget metric's ceiling (``threshold``) from the retrain model's levels ``retrain``."""
    return {n: threshold(cal, retrain.get(n)) for n in names}


# Metrics are means of per-question scores, and the ceiling a retrain mean plus a margin: a point at the
# ceiling in exact arithmetic can land a few ulps above it (measured: MUSE KnowMem_f 13.333333333333332
# against 8.33333333333333 + 5 = 13.33333333333333). Points within this much of the ceiling qualify.
TOLERANCE = 1e-9


def qualifies(forget: float, ceiling: float) -> bool:
    """Whether a forget metric meets the ceiling (at most it, up to float rounding: ``TOLERANCE``)."""
    return float(forget) <= float(ceiling) + TOLERANCE


def excess(levels: dict[str, float], ceils: dict[str, float]) -> float:
    """How far the worst forget metric stays above its ceiling (<= 0: every one meets it)."""
    return max(float(levels[n]) - float(c) for n, c in ceils.items())


def meets(levels: dict[str, float], ceils: dict[str, float]) -> bool:
    """Whether every forget metric of the criterion is at most its ceiling (MUSE: KnowMem_f and VerbMem_f)."""
    return all(qualifies(levels[n], c) for n, c in ceils.items())


def overshoots(levels: dict[str, float], cal: dict, retrain: dict[str, float | None]) -> bool:
    """Whether a matching state forgot more than the margin beyond the retrain model on every forget
    metric (each below its level - margin): the run went past the level between two checks (an
    early-stopped run is then replayed with a check at every step in between, stages/unlearn.py), or
    its rung's rate is too large for a single step. Every metric, not any: the metrics fall at their
    own rates (MUSE's VerbMem_f is often far below the retrain level by the time KnowMem_f meets its
    ceiling), and only the last one to meet its ceiling says whether an earlier stop was possible.
    Only under `match_retrain` (a fixed threshold has no floor)."""
    if cal["criterion"] != "match_retrain" or not levels:
        return False
    margin = float(cal["margin"])
    return all(retrain.get(n) is not None and float(v) < float(retrain[n]) - margin - TOLERANCE
               for n, v in levels.items())


def choose(points: Sequence[dict], ceiling: float) -> dict:
    """Pick one grid point. ``points``: dicts with ``scale``, ``forget`` and ``utility`` (means over
    the calibration seeds), and optionally ``excess`` (``excess``: the worst forget metric's distance
    above its ceiling, when the criterion bounds several; else ``forget - ceiling``). The points with
    excess <= 0 qualify; of those the best utility. Where none qualifies, the smallest excess (the
    closest to the ceiling). Ties go to the better utility, then the lower forget metric, then the
    smaller multiplier.

    Returns ``scale``, ``reached`` (a point qualified), ``gap`` (the chosen point's excess; <= 0 when
    reached, a point within ``TOLERANCE`` above it counting as 0) and ``at_grid_edge`` (the chosen
    multiplier is the grid's smallest or largest, so a wider grid might have done better).
    """
    if not points:
        raise ValueError("calibration: no grid points to choose from")
    for p in points:
        for key in ("scale", "forget", "utility"):
            if not isinstance(p.get(key), (int, float)) or not math.isfinite(float(p[key])):
                raise ValueError(f"calibration: grid point {p} has no finite {key}")

    def over(p: dict) -> float:
        return float(p["excess"]) if "excess" in p else float(p["forget"]) - float(ceiling)

    qualified = [p for p in points if over(p) <= TOLERANCE]
    if qualified:
        best = min(qualified, key=lambda p: (-p["utility"], p["forget"], p["scale"]))
    else:
        best = min(points, key=lambda p: (over(p), -p["utility"], p["scale"]))
    scales = sorted(p["scale"] for p in points)
    gap = over(best)
    return {
        "scale": float(best["scale"]),
        "reached": bool(qualified),
        "gap": min(gap, 0.0) if qualified else gap,
        "at_grid_edge": len(scales) > 1 and best["scale"] in (scales[0], scales[-1]),
    }


# What a finished rung's run did (run_status): met every ceiling without overshooting, met them only
# with every forget metric more than the margin below the retrain level, or never met them.
REACHED, OVERSHOT, SHORT = "reached", "overshot", "not reached"


def walk(scales: Sequence[float], seeds: Sequence[int], status: Callable[[float, int], str | None],
         per_seed: bool, below: Sequence[float] = ()) -> list[tuple[float, int]]:
    """The (multiplier, seed) runs of an early-stopped entry's ladder, climbed from its smallest
    multiplier: with ``per_seed`` each seed climbs while its own run never reached the level; else all
    calibration seeds climb together while any of them did not. ``status(scale, seed)`` reads a
    finished run (REACHED, OVERSHOT or SHORT), or returns None while the run is not made yet: the walk
    then ends at that rung (for that seed), which the workflow runs before it walks again (the unlearn
    checkpoint).

    ``below``: multipliers under the ladder's first, tried downward in turn when the run at the first
    rung overshot (with the calibration seeds together: when every seed reached and one overshot), until
    one does not overshoot. A smaller rate takes smaller steps, so a run whose every-step checks jumped
    over the window (one forget metric still above its ceiling at one step, all of them beyond the
    margin below the retrain level at the next) can land in it."""
    ladder = sorted(float(x) for x in scales)
    down = sorted((float(x) for x in below), reverse=True)
    if down and down[0] >= ladder[0]:
        raise ValueError(f"calibration: rungs below the ladder {down} must lie under its first, {ladder[0]:g}")
    out: list[tuple[float, int]] = []
    if per_seed:
        for seed in seeds:
            for x in ladder:
                out.append((x, seed))
                st = status(x, seed)
                if st != SHORT:  # reached (maybe overshooting), or not known yet
                    break
            if st == OVERSHOT and x == ladder[0]:
                for x in down:
                    out.append((x, seed))
                    if status(x, seed) != OVERSHOT:
                        break
        return out
    for x in ladder:
        out += [(x, s) for s in seeds]
        done = [status(x, s) for s in seeds]
        if None in done or SHORT not in done:
            break
    if x == ladder[0] and None not in done and SHORT not in done and OVERSHOT in done:
        for x in down:
            out += [(x, s) for s in seeds]
            done = [status(x, s) for s in seeds]
            if None in done or OVERSHOT not in done:
                break
    return out


def run_status(info: dict, where: str = "run") -> str:
    """What an early-stopped run (its unlearning.json, ``info``) did: REACHED, OVERSHOT (reached, with
    every forget metric more than the margin below the retrain level at its saved state) or SHORT."""
    if "early_stop" not in info:
        raise ValueError(f"{where}: no early_stop record (the run was not early-stopped)")
    stop = info["early_stop"]
    if not stop["reached"]:
        return SHORT
    return OVERSHOT if stop.get("overshot") else REACHED


def choose_ladder(points: Sequence[dict], top: float) -> dict:
    """The choice of one early-stopped ladder. ``points``: the rungs walked, each with ``scale``,
    ``forget``, ``utility``, ``excess`` (the worst forget metric above its ceiling at the saved state),
    ``reached`` and ``overshot``. The rung that reached the level (the walk stops there) is chosen; where
    none did, the one whose saved state came closest (smallest excess), flagged not reached.

    Returns ``scale``, ``reached``, ``overshot`` (the chosen run's first matching check lay more than the
    margin below the retrain level), ``gap`` (its excess; <= 0 when reached) and ``at_grid_edge`` (the
    chosen rung is the ladder's top, ``top``: a run there that did not reach had nowhere to climb)."""
    if not points:
        raise ValueError("calibration: no ladder runs to choose from")
    done = [p for p in points if p["reached"]]
    best = min(done, key=lambda p: p["scale"]) if done else min(
        points, key=lambda p: (float(p["excess"]), -p["utility"], p["scale"]))
    gap = float(best["excess"])
    return {
        "scale": float(best["scale"]),
        "reached": bool(done),
        "overshot": bool(done) and bool(best.get("overshot")),
        "gap": min(gap, 0.0) if done else gap,
        "at_grid_edge": float(best["scale"]) == float(top),
    }


def groups(record: dict) -> list[dict]:
    """The choices of one entry's record (stages/calibrate.py): the one choice every seed runs, or
    under `calibration.seeds: each` one per seed (each with its ``seed``; ``seed`` is None otherwise).
    Each has ``scale``, ``reached``, ``gap``, ``at_grid_edge``, ``threshold``, the reference levels
    and the ``points`` it was chosen from."""
    if "by_seed" in record:
        return [{**g, "seed": int(s)} for s, g in sorted(record["by_seed"].items(), key=lambda kv: int(kv[0]))]
    return [{**record, "seed": None}]


def chosen(record: dict, seed: int | str) -> float:
    """The multiplier a study run of ``seed`` runs, from its entry's record."""
    if "by_seed" in record:
        if str(int(seed)) not in record["by_seed"]:
            raise ValueError(f"calibration of {record.get('optimizer')}: no choice for seed {seed} "
                             f"(calibrated seeds: {', '.join(record['by_seed'])})")
        return float(record["by_seed"][str(int(seed))]["scale"])
    return float(record["scale"])


STATUSES = ("off", "reached", "overshot", "not reached")


def status(choice: dict | None) -> str:
    """How a run's learning rate was set, as the tables print it: ``off`` (config as written),
    ``reached``, ``overshot`` (reached, but the matching state forgot more than the margin beyond the
    retrain model) or ``not reached`` (no grid point or rung met the criterion; the closest was taken)."""
    if choice is None:
        return "off"
    if not choice["reached"]:
        return "not reached"
    return "overshot" if choice.get("overshot") else "reached"


def worst(statuses: Iterable[str]) -> str:
    """The status of several seeds' choices: ``not reached`` if any, else ``overshot`` if any, else
    the one status they share."""
    seen = set(statuses)
    for s in ("not reached", "overshot", "reached"):
        if s in seen:
            return s
    return "off"
