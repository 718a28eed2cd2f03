"""What a study's config can name: optimizer types and unlearning objectives, in one place.

Torch-free, so that the Snakefile reads it too. Everything else derives its tables from here: the
workflow (grades in the tables, which source files each branch depends on), ``unlearning.optim`` and
``unlearning.objectives`` (which class a name builds), the unlearning stage (which types get the run's
seed) and the report (which roles an optimizer plays in the findings). tests/test_registry.py checks
each entry against its module and against the config schema's enums.

Adding an optimizer type: one entry in OPTIMIZERS, one module under ``optim/`` defining the class or
factory it names, one entry in workflow/schemas/config.schema.yaml (its name in the type enum and an
``if``/``then`` block with its hyperparameters and their defaults). See docs/extending/adding-an-optimizer.md.
"""

from __future__ import annotations

from dataclasses import dataclass

# The paper's grades, from the most to the least informed update (REFERENCE.md); the robust
# baselines SAM and randomized smoothing count as first order.
GRADES: tuple[str, ...] = ("second", "first", "compressed", "zeroth", "hybrid")


@dataclass(frozen=True)
class OptimizerType:
    """One optimizer type: its grade, where it lives and what the rest of the project needs to know."""

    grade: str
    module: str  # file under src/unlearning/optim/ (without .py)
    factory: str  # class (or function returning a torch.optim.Optimizer) in that module
    seeded: bool = False  # takes a `seed` hyperparameter, which defaults to the run's seed
    sign: bool = False  # updates by the sign of a gradient statistic (1-bit compression)


OPTIMIZERS: dict[str, OptimizerType] = {
    "sophia": OptimizerType("second", "second", "Sophia"),
    "adam": OptimizerType("first", "first", "adam"),
    "adamw": OptimizerType("first", "first", "adamw"),
    "sam": OptimizerType("first", "sam", "SAM"),
    "rs": OptimizerType("first", "smoothing", "RandomizedSmoothing", seeded=True),
    "signsgd": OptimizerType("compressed", "compressed", "SignSGD", sign=True),
    "signadam": OptimizerType("compressed", "compressed", "SignAdam", sign=True),
    "nbit_adam": OptimizerType("compressed", "compressed", "NBitAdam"),
    "adamw8bit": OptimizerType("compressed", "compressed", "adamw8bit"),
    "zo_sgd": OptimizerType("zeroth", "zeroth", "ZOSGD", seeded=True),
    "adazo": OptimizerType("zeroth", "zeroth", "AdaZO", seeded=True),
    # Not seeded itself: its first- and zeroth-order phases (`fo`, `zo`) are entries of their own.
    "hybrid": OptimizerType("hybrid", "hybrid", "HybridFOZO"),
}
# A hybrid's phases when its entry names none (the schema's defaults for `fo` and `zo`).
HYBRID_PHASES: dict[str, str] = {"fo": "adam", "zo": "adazo"}


@dataclass(frozen=True)
class ObjectiveType:
    """One unlearning objective: the class (an ``objectives.base.Objective``) and its module."""

    module: str  # file under src/unlearning/objectives/ (without .py)
    cls: str


OBJECTIVES: dict[str, ObjectiveType] = {
    "grad_ascent": ObjectiveType("grad_ascent", "GradAscent"),
    "grad_diff": ObjectiveType("grad_diff", "GradDiff"),
    "npo": ObjectiveType("npo", "NPO"),
    "simnpo": ObjectiveType("simnpo", "SimNPO"),
    "rmu": ObjectiveType("rmu", "RMU"),
}


def grade(type_: str) -> str:
    """The grade of optimizer type ``type_`` (ValueError naming the known types if unknown)."""
    return optimizer(type_).grade


def optimizer(type_: str) -> OptimizerType:
    """The registry entry of optimizer type ``type_`` (ValueError naming the known types if unknown)."""
    if type_ not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {type_!r}; known: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[type_]


def types_of(grade_: str) -> list[str]:
    """Optimizer types of one grade, in registry order."""
    return [t for t, o in OPTIMIZERS.items() if o.grade == grade_]


def types_used(spec: dict) -> list[str]:
    """Every optimizer type a config entry uses: its own, and a hybrid's phases (defaults included)."""
    types = [spec["type"]]
    if spec["type"] == "hybrid":
        for phase, default in HYBRID_PHASES.items():
            types += types_used(spec.get(phase) or {"type": default})
    return types


# Roles in the findings (report): the sign-based compressed types, and the zeroth-order ones.
SIGN_TYPES: frozenset[str] = frozenset(t for t, o in OPTIMIZERS.items() if o.sign)
ZO_TYPES: frozenset[str] = frozenset(types_of("zeroth"))
SEEDED_TYPES: frozenset[str] = frozenset(t for t, o in OPTIMIZERS.items() if o.seeded)
