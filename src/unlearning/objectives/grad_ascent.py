"""GradAscent: maximise the forget set's NLL."""

from __future__ import annotations

from .base import Objective, mean_nll


class GradAscent(Objective):
    """loss = -NLL(forget) (token-level mean NLL)."""

    name = "grad_ascent"
    defaults = {}

    def forget_loss(self, model, forget_batch, ref=None):
        return -mean_nll(model, forget_batch)
