"""Unlearning objectives, registered by name: ``build_objective(name, params) -> Objective``.

Every objective has ``loss(model, forget_batch, retain_batch, ref) -> Tensor`` (scalar, to be
minimised), its two terms ``forget_loss(model, forget_batch, ref)`` and ``retain_loss(model,
retain_batch, ref)`` (loss = forget + retain; SAM and RS can smooth the forget term alone, as the
lab's trainers do), a class attribute ``needs_ref`` and ``parameters(model)`` (the parameters to
train; RMU returns its down_proj subset). ``gnb_loss`` is the Gauss-Newton-Bartlett loss Sophia uses.
Which name builds which class, from which module, is ``unlearning.registry.OBJECTIVES``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Mapping

from ..registry import OBJECTIVES
from .base import (
    IGNORE_INDEX,
    Objective,
    aggregate_nll,
    gnb_loss,
    mean_nll,
    npo_core,
    sequence_nll,
    simnpo_core,
    token_logprobs,
)
from .grad_ascent import GradAscent
from .grad_diff import GradDiff
from .npo import NPO
from .rmu import RMU
from .simnpo import SimNPO

REGISTRY: dict[str, type[Objective]] = {
    name: getattr(import_module(f".{entry.module}", __name__), entry.cls) for name, entry in OBJECTIVES.items()
}


def build_objective(name: str, params: Mapping[str, Any] | None = None) -> Objective:
    """Instantiate the objective registered as ``name`` with ``params`` (ValueError if unknown)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**dict(params or {}))


__all__ = ["REGISTRY", "build_objective", "Objective", "GradAscent", "GradDiff", "NPO", "SimNPO", "RMU",
           "gnb_loss", "mean_nll", "sequence_nll", "token_logprobs", "npo_core", "simnpo_core", "aggregate_nll",
           "IGNORE_INDEX"]
