"""Optimizers of every grade, built by name from a config entry.

``build_optimizer(params, spec, total_steps)`` with ``spec = {"type": name, **hyperparameters}``;
``GRADES[name]`` gives the grade. Every optimizer is a ``torch.optim.Optimizer`` driven by
``opt.step(closure)`` with the closure contract of docs/extending/architecture.md.

Which type is which class (or factory), in which module and of which grade is ``unlearning.registry``
(``OPTIMIZERS``); build.py looks each type up there, so a new type needs no edit here.
Hyperparameters are the constructors' keyword arguments (``accepted_keys(type)``); defaults live in
the config schema, the constructors' defaults (documented as the paper's or ours) are a fallback.
"""

from __future__ import annotations

from .build import GRADES, accepted_keys, build_optimizer, factory
from .compressed import NBitAdam, SignAdam, SignSGD, adamw8bit, quantize
from .first import adam, adamw
from .hybrid import HybridFOZO, fozo_schedule
from .sam import SAM
from .second import Sophia
from .smoothing import RandomizedSmoothing
from .zeroth import ZOSGD, AdaZO

# Every registry entry resolved at import: a wrong module or class name fails here, not mid-study.
_REGISTRY: dict[str, tuple] = {t: (factory(t), grade) for t, grade in GRADES.items()}

__all__ = [
    "GRADES", "build_optimizer", "accepted_keys", "Sophia", "SAM", "RandomizedSmoothing", "SignSGD", "SignAdam",
    "NBitAdam", "quantize", "adam", "adamw", "adamw8bit", "ZOSGD", "AdaZO", "HybridFOZO", "fozo_schedule",
]
