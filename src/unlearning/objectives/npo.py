"""NPO (Zhang et al. 2024) with a retain NLL term."""

from __future__ import annotations

import torch

from ..distributed import any_rank
from .base import AGGREGATIONS, Objective, aggregate_nll, npo_core, sequence_nll


class NPO(Objective):
    """loss = -forget_weight (2/beta) mean log sigmoid(beta (NLL_theta(y|x) - NLL_ref(y|x)))
    + retain_weight NLL(retain).

    ``aggregation`` says how each forget sequence's NLL is formed: ``sum`` over its tokens (NPO's
    definition and open-unlearning's; default) or ``mean`` over them (the lab's WMDP code, OPTML-Group
    Unlearn-Smooth WMDP/src/unlearn/GA.py, which compares HF's token-mean losses at batch 1 per
    accumulation step). Summed NPO at beta equals |y| times mean NPO at beta |y|, so a beta only
    means the same thing under the same aggregation. ``ref`` is the frozen model before unlearning
    (evaluated without gradients). Defaults: beta 0.1 (REFERENCE.md), both weights 1 (the lab's
    ``npo_coeff``/``coeff`` and ``gamma``). ``gamma``, this project's old name for the retain weight,
    is accepted with a deprecation warning.
    """

    name = "npo"
    needs_ref = True
    ref_cacheable = True  # its reference enters only through per-example scores (train.cache_reference)
    defaults = {"beta": 0.1, "forget_weight": 1.0, "retain_weight": 1.0, "aggregation": "sum"}
    deprecated = {"gamma": "retain_weight"}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["aggregation"] not in AGGREGATIONS:
            raise ValueError(f"objective 'npo': 'aggregation' must be one of {AGGREGATIONS}, "
                             f"got {self.params['aggregation']!r}")

    def forget_loss(self, model, forget_batch, ref=None):
        agg = self.params["aggregation"]
        nll_theta, length = sequence_nll(model, forget_batch)
        nll_ref = self.reference_nll(ref, forget_batch).to(nll_theta.device)
        forget = npo_core(aggregate_nll(nll_theta, length, agg), aggregate_nll(nll_ref, length, agg),
                          float(self.params["beta"]))
        return float(self.params["forget_weight"]) * forget

    def retain_loss(self, model, retain_batch, ref=None):
        return self._retain_term(model, retain_batch, self.params["retain_weight"])

    def reference_nll(self, ref, batch) -> torch.Tensor:
        """The frozen reference's summed NLL of each example of ``batch``, from the cache when scored
        before. With ``ref`` None (released after ``train.cache_reference`` scored the run's batches
        up front) every example must be cached."""
        # The frozen model's summed NLL of an example never changes, and an unlearning run cycles over
        # its forget set (the default study: 50 steps over 5 batches), so each example is scored once:
        # the cache maps an example (its token ids and labels; batches are right-padded) to its NLL. A
        # batch with an unseen example is scored whole (one forward, as before) and only the unseen
        # ones are kept. Keyed on the reference model too, so that a new one starts afresh. Sharded
        # runs (distributed.py) give each rank its share of a batch: a rank scores whenever any rank
        # has an unseen example, so that they all-gather the sharded reference at the same steps.
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        keys = [(tuple(ids[:n]), tuple(labels[:n])) for ids, labels, n in
                zip(batch["input_ids"].tolist(), batch["labels"].tolist(), lengths)]
        cache = getattr(self, "_ref_cache", None)
        if ref is None:
            known = cache[1] if cache is not None and cache[0] is None else {}
            if not all(k in known for k in keys):
                self._need_ref(None)  # never scored (or an example the up-front pass did not see)
            return torch.stack([known[k] for k in keys])
        if cache is None or cache[0] is not ref:
            cache = self._ref_cache = (ref, {})
        known = cache[1]
        # data-parallel ranks hold different examples: they agree on scoring (a sharded forward)
        if any_rank(not all(k in known for k in keys)):
            with torch.no_grad():
                nll_ref, _ = sequence_nll(ref, batch)
            for key, value in zip(keys, nll_ref.unbind()):
                known.setdefault(key, value)
        return torch.stack([known[k] for k in keys])

    def release_reference(self) -> None:
        """Keep the cached reference scores and drop the cache's hold on the reference model, so that
        the caller can free it (train.cache_reference); later losses are computed with ``ref=None``."""
        cache = getattr(self, "_ref_cache", None)
        self._ref_cache = (None, cache[1] if cache is not None else {})
