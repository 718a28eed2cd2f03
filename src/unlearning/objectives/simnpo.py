"""SimNPO (Fan et al. 2024): reference-free, length-normalised NPO."""

from __future__ import annotations

from .base import Objective, sequence_nll, simnpo_core


class SimNPO(Objective):
    """loss = -(2/beta) mean log sigmoid(beta (NLL(y|x)/|y| - delta)) + lambda NLL(retain).

    ``|y|`` is the number of predicted (non-padding) tokens of each forget sequence. The paper
    writes the margin outside: log sigmoid(beta NLL/|y| - gamma), i.e. ``delta = gamma / beta``;
    pass either ``delta`` or the paper's ``gamma`` (not both). The retain weight lambda is the
    parameter ``lam`` (config schema name; ``lambda`` is accepted as an alias). Defaults beta 4.5, delta 0.125 are
    open-unlearning's (REFERENCE.md); lambda = 1 is ours. The lab's WMDP setting is beta 5.5,
    gamma 0, lambda 5.
    """

    name = "simnpo"
    defaults = {"beta": 4.5, "delta": 0.125, "gamma": None, "lam": 1.0}
    aliases = {"lambda": "lam"}

    def __init__(self, **params):
        super().__init__(**params)
        beta, gamma = self.params["beta"], self.params["gamma"]
        if gamma is not None:
            if "delta" in params:
                raise ValueError("objective 'simnpo': give either 'delta' or the paper's 'gamma', not both")
            self.params["delta"] = gamma / beta
        if beta <= 0:
            raise ValueError(f"objective 'simnpo': 'beta' must be positive, got {beta}")

    def loss(self, model, forget_batch, retain_batch, ref=None):
        nll, length = sequence_nll(model, forget_batch)
        forget = simnpo_core(nll, length, self.params["beta"], self.params["delta"])
        return forget + self._retain_term(model, retain_batch, self.params["lam"])
