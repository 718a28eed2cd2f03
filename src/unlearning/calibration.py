"""Learning-rate calibration: which multiplier of an optimizer entry's learning rate the study runs.

Each benchmark x method x optimizer entry unlearns at every multiplier of its grid (config
`calibration`); the criterion reads the unattacked forget and utility metrics of those runs and picks
one (``choose``). Torch-free: the workflow imports it to name files and to read the choices.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from .registry import BENCHMARK_KINDS

# The metrics the criterion reads, per benchmark kind: (forget metric, lower is more forgotten;
# utility metric, higher is better). They are the metrics the calibration evaluation computes.
CRITERION_METRICS: dict[str, tuple[str, str]] = {kind: k.criterion for kind, k in BENCHMARK_KINDS.items()}


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


# Metrics are means of per-question scores, and the ceiling a retrain mean plus a margin: a point at the
# ceiling in exact arithmetic can land a few ulps above it (measured: MUSE KnowMem_f 13.333333333333332
# against 8.33333333333333 + 5 = 13.33333333333333). Points within this much of the ceiling qualify.
TOLERANCE = 1e-9


def qualifies(forget: float, ceiling: float) -> bool:
    """Whether a forget metric meets the ceiling (at most it, up to float rounding: ``TOLERANCE``)."""
    return float(forget) <= float(ceiling) + TOLERANCE


def choose(points: Sequence[dict], ceiling: float) -> dict:
    """Pick one grid point. ``points``: dicts with ``scale``, ``forget`` and ``utility`` (means over
    the calibration seeds). The points with ``forget <= ceiling`` qualify; of those the best utility.
    Where none qualifies, the lowest forget metric (the closest to the ceiling). Ties go to the better
    utility, then the lower forget metric, then the smaller multiplier.

    Returns ``scale``, ``reached`` (a point qualified), ``gap`` (the chosen forget metric minus the
    ceiling; <= 0 when reached, a point within ``TOLERANCE`` above it counting as 0) and
    ``at_grid_edge`` (the chosen multiplier is the grid's smallest or largest, so a wider grid might
    have done better).
    """
    if not points:
        raise ValueError("calibration: no grid points to choose from")
    for p in points:
        for key in ("scale", "forget", "utility"):
            if not isinstance(p.get(key), (int, float)) or not math.isfinite(float(p[key])):
                raise ValueError(f"calibration: grid point {p} has no finite {key}")
    qualified = [p for p in points if qualifies(p["forget"], ceiling)]
    if qualified:
        best = min(qualified, key=lambda p: (-p["utility"], p["forget"], p["scale"]))
    else:
        best = min(points, key=lambda p: (p["forget"], -p["utility"], p["scale"]))
    scales = sorted(p["scale"] for p in points)
    gap = float(best["forget"]) - float(ceiling)
    return {
        "scale": float(best["scale"]),
        "reached": bool(qualified),
        "gap": min(gap, 0.0) if qualified else gap,
        "at_grid_edge": len(scales) > 1 and best["scale"] in (scales[0], scales[-1]),
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


def status(choice: dict | None) -> str:
    """How a run's learning rate was set, as the tables print it: ``off`` (config as written),
    ``reached`` or ``not reached`` (no grid point met the criterion; the closest was taken)."""
    if choice is None:
        return "off"
    return "reached" if choice["reached"] else "not reached"
