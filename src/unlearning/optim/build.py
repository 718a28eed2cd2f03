"""Build an optimizer of any type from its config entry: ``build_optimizer(params, spec, total_steps)``.

Which class or factory a type names is looked up in ``unlearning.registry`` (``OPTIMIZERS``) when it
is first built, so this module imports no optimizer module and every one of them, the hybrid that
builds its two phases' optimizers included, may import it.
"""

from __future__ import annotations

import functools
import inspect
from importlib import import_module
from typing import Callable

import torch

from ..registry import OPTIMIZERS

GRADES: dict[str, str] = {name: entry.grade for name, entry in OPTIMIZERS.items()}

# keys that may appear in a spec besides the hyperparameters
_META_KEYS = ("type", "grade", "max_grad_norm")


@functools.cache
def factory(type_: str) -> Callable:
    """The class or function that builds optimizer type ``type_`` (its registry entry's module and name)."""
    entry = OPTIMIZERS[type_]
    return getattr(import_module(f"{__package__}.{entry.module}"), entry.factory)


def accepted_keys(type_: str) -> list[str]:
    """Hyperparameter names ``type_`` accepts (its constructor's keyword arguments)."""
    factory_, _ = _lookup(type_)
    sig = inspect.signature(factory_)
    return [n for n in sig.parameters if n not in ("params", "total_steps")]


def _lookup(type_):
    if type_ not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {type_!r}; known: {sorted(OPTIMIZERS)}")
    return factory(type_), GRADES[type_]


def build_optimizer(params, spec: dict, total_steps: int) -> torch.optim.Optimizer:
    """Build the optimizer named by ``spec["type"]`` with the other keys as hyperparameters.

    An optional ``spec["grade"]`` must equal ``GRADES[type]``. Lists are turned into tuples (JSON/YAML
    give ``betas`` as a list). Raises ValueError naming an unknown type or hyperparameter.

    ``spec["max_grad_norm"]`` (gradient grades; 0 or absent: off) is kept on the optimizer as
    ``opt.max_grad_norm``: the unlearning loop's closure clips the gradients to it after each backward
    (``train.loss_closure``), so every optimizer sees clipped gradients as in HF Trainer's and
    SophiaG's loops. A hybrid takes its first-order phase's.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"optimizer spec must be a dict, got {type(spec).__name__}")
    if "type" not in spec:
        raise ValueError("optimizer spec has no 'type'")
    type_ = spec["type"]
    factory_, grade = _lookup(type_)
    if "grade" in spec and spec["grade"] != grade:
        raise ValueError(f"optimizer {type_!r} has grade {grade!r}, spec says {spec['grade']!r}")
    accepted = accepted_keys(type_)
    hyper = {k: v for k, v in spec.items() if k not in _META_KEYS}
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for optimizer {type_!r}; accepted: {accepted}")
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
    clip = spec.get("max_grad_norm") or 0.0
    if not (isinstance(clip, (int, float)) and clip >= 0):
        raise ValueError(f"max_grad_norm must be a number >= 0 (0: no clipping), got {clip!r}")
    if clip and grade in ("zeroth", "hybrid"):
        raise ValueError(f"max_grad_norm: optimizer {type_!r} takes no gradient to clip"
                         + (" (give it in the hybrid's 'fo' entry)" if grade == "hybrid" else ""))
    if type_ == "hybrid":
        return factory_(params, total_steps=total_steps, **hyper)
    opt = factory_(params, **hyper)
    opt.max_grad_norm = float(clip)
    return opt
