"""NPO (Zhang et al. 2024) with a retain NLL term."""

from __future__ import annotations

import torch

from .base import Objective, npo_core, sequence_nll


class NPO(Objective):
    """loss = -(2/beta) mean log sigmoid(beta (NLL_theta(y|x) - NLL_ref(y|x))) + gamma NLL(retain).

    NLLs in the forget term are summed over each sequence's tokens; ``ref`` is the frozen model
    before unlearning (evaluated without gradients). beta = 0.1 is from REFERENCE.md; gamma = 1
    (the retain weight of MUSE's NPO_GDR / the lab's NPO) is our default.
    """

    name = "npo"
    needs_ref = True
    defaults = {"beta": 0.1, "gamma": 1.0}

    def loss(self, model, forget_batch, retain_batch, ref=None):
        self._need_ref(ref)
        nll_theta, _ = sequence_nll(model, forget_batch)
        nll_ref = self._ref_nll(ref, forget_batch)
        forget = npo_core(nll_theta, nll_ref.to(nll_theta.device), float(self.params["beta"]))
        return forget + self._retain_term(model, retain_batch, self.params["gamma"])

    def _ref_nll(self, ref, batch) -> torch.Tensor:
        # The frozen model's NLL depends on the batch only. A step may evaluate the loss on one batch
        # several times (zeroth-order: 2q times; SAM: twice), so keep the last batch's value. The
        # cache holds the batch itself, so an identity match can never be a recycled object.
        cached = getattr(self, "_ref_cache", None)
        if cached is not None and cached[0] is batch and cached[1] is ref:
            return cached[2]
        with torch.no_grad():
            nll_ref, _ = sequence_nll(ref, batch)
        self._ref_cache = (batch, ref, nll_ref)
        return nll_ref

