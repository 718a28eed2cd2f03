"""GradDiff: gradient ascent on the forget set, descent on the retain set."""

from __future__ import annotations

from .base import Objective, mean_nll


class GradDiff(Objective):
    """loss = -NLL(forget) + gamma * NLL(retain); gamma = 1 (REFERENCE.md)."""

    name = "grad_diff"
    defaults = {"gamma": 1.0}

    def loss(self, model, forget_batch, retain_batch, ref=None):
        return -mean_nll(model, forget_batch) + self._retain_term(model, retain_batch, self.params["gamma"])
