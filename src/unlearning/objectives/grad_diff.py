"""GradDiff: gradient ascent on the forget set, descent on the retain set."""

from __future__ import annotations

from .base import Objective, mean_nll


class GradDiff(Objective):
    """loss = -forget_weight * NLL(forget) + retain_weight * NLL(retain) (token-level mean NLLs).

    Both weights 1 (REFERENCE.md; open-unlearning's GradDiff ``gamma``/``alpha``, the lab's
    ``npo_coeff``/``coeff``). ``gamma``, this project's old name for the retain weight, is accepted
    with a deprecation warning.
    """

    name = "grad_diff"
    defaults = {"forget_weight": 1.0, "retain_weight": 1.0}
    deprecated = {"gamma": "retain_weight"}

    def forget_loss(self, model, forget_batch, ref=None):
        return -float(self.params["forget_weight"]) * mean_nll(model, forget_batch)

    def retain_loss(self, model, retain_batch, ref=None):
        return self._retain_term(model, retain_batch, self.params["retain_weight"])
