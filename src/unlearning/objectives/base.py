"""Shared pieces of the unlearning objectives: per-token log-probs, sequence NLLs, the base class.

Batches are dicts of ``input_ids``, ``attention_mask``, ``labels`` (``[B, T]``, ``-100`` on
padding), already on the model's device. Labels are *unshifted* (as for a HF causal LM): the
token at position ``t`` is predicted by the logits at ``t - 1``, so a sequence of ``n`` real
tokens contributes ``n - 1`` predicted tokens. ``|y|`` below is that count of predicted tokens.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
Batch = Mapping[str, torch.Tensor]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of every label token given its prefix, and the mask of positions that count.

    ``logits`` ``[B, T, V]``, ``labels`` ``[B, T]``; returns ``(logp, mask)`` both ``[B, T-1]``,
    ``logp`` zero where ``mask`` is false. Computed in float32 whatever the model's dtype.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(shift_logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def _logits(model, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def sequence_nll(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence *summed* NLL ``[B]`` and the number of predicted tokens ``|y|`` ``[B]``."""
    logp, mask = token_logprobs(_logits(model, batch), batch["labels"])
    return -logp.sum(dim=1), mask.sum(dim=1)


def mean_nll(model, batch: Batch) -> torch.Tensor:
    """Token-level mean NLL over every non-padding predicted token of the batch (HF's LM loss). A
    data-parallel rank's share of a batch carries ``token_scale`` (train.unlearn): its summed NLL times
    that, so that the ranks' weighted average is the whole batch's token mean (distributed.py)."""
    logp, mask = token_logprobs(_logits(model, batch), batch["labels"])
    scale = batch.get("token_scale")
    if scale is not None:
        return -logp.sum() * scale
    return -logp.sum() / mask.sum().clamp_min(1)


AGGREGATIONS = ("sum", "mean")


def aggregate_nll(nll_sum: torch.Tensor, length: torch.Tensor, aggregation: str) -> torch.Tensor:
    """A sequence's NLL as NPO compares it: ``sum`` over its tokens (NPO's definition, open-unlearning)
    or ``mean`` over them (the lab's WMDP code: HF's ``outputs.loss`` at batch 1 per accumulation step)."""
    if aggregation == "sum":
        return nll_sum
    if aggregation == "mean":
        return nll_sum / length.clamp_min(1).to(nll_sum.dtype)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def npo_core(nll_theta: torch.Tensor, nll_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's forget term: ``-(2/beta) * mean log sigmoid(beta * (NLL_theta - NLL_ref))``."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_theta - nll_ref)).mean()


def simnpo_core(nll_sum: torch.Tensor, length: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """SimNPO's forget term: ``-(2/beta) * mean log sigmoid(beta * (NLL/|y| - delta))``."""
    per_token = nll_sum / length.clamp_min(1).to(nll_sum.dtype)
    return -(2.0 / beta) * F.logsigmoid(beta * (per_token - delta)).mean()


def gnb_loss(model, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gauss-Newton-Bartlett loss for Sophia's Hessian estimate.

    Cross-entropy of the model's logits against labels *sampled* from its own softmax (samples
    detached), averaged over the non-padding predicted positions of ``batch``. Its gradient's
    square is an unbiased estimate of the Gauss-Newton diagonal. Pass ``generator`` (on the
    model's device) for a reproducible draw.
    """
    logits = _logits(model, batch)[:, :-1, :].float()
    mask = batch["labels"][:, 1:] != IGNORE_INDEX
    flat = logits.reshape(-1, logits.size(-1))
    with torch.no_grad():
        probs = torch.softmax(flat, dim=-1)
        sampled = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    sampled = sampled.masked_fill(~mask.reshape(-1), IGNORE_INDEX)
    return F.cross_entropy(flat, sampled, ignore_index=IGNORE_INDEX)


class Objective:
    """An unlearning loss with its hyperparameters bound at construction.

    Subclasses set ``name``, ``needs_ref``, ``defaults`` (every accepted parameter with its
    default) and override ``loss``. ``build_objective`` rejects parameters not in ``defaults``.
    """

    name: ClassVar[str] = ""
    needs_ref: ClassVar[bool] = False
    # the reference enters the loss only through per-example scores that can be computed up front
    # (NPO), so the reference model can be freed before the first step; RMU reads a frozen model's
    # activations at every step and keeps it
    ref_cacheable: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    aliases: ClassVar[dict[str, str]] = {}  # alternative name -> canonical name in ``defaults``
    deprecated: ClassVar[dict[str, str]] = {}  # old name -> canonical name; accepted with a warning

    def __init__(self, **params: Any) -> None:
        for alt, canonical in {**self.aliases, **self.deprecated}.items():
            if alt in params:
                if canonical in params:
                    raise ValueError(f"objective {self.name!r}: give {canonical!r} or its alias {alt!r}, not both")
                if alt in self.deprecated:
                    warnings.warn(f"objective {self.name!r}: {alt!r} is deprecated, use {canonical!r}",
                                  FutureWarning, stacklevel=2)
                params[canonical] = params.pop(alt)
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"objective {self.name!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def loss(self, model, forget_batch: Batch, retain_batch: Batch | None, ref=None) -> torch.Tensor:
        """Scalar loss to minimise: the forget term plus the retain term (computed in that order)."""
        return self.forget_loss(model, forget_batch, ref) + self.retain_loss(model, retain_batch, ref)

    def forget_loss(self, model, forget_batch: Batch, ref=None) -> torch.Tensor:
        """The forget term of ``loss`` (its weight included): what the lab's SAM and RS trainers smooth."""
        raise NotImplementedError

    def retain_loss(self, model, retain_batch: Batch | None, ref=None) -> torch.Tensor | float:
        """The retain term of ``loss`` (its weight included); 0.0 when the objective has none or its
        weight is 0. The lab's SAM and RS trainers take its plain gradient at the unperturbed weights."""
        return 0.0

    def parameters(self, model) -> list[torch.nn.Parameter]:
        """The parameters to train (all of the model's by default)."""
        return list(model.parameters())

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        return self.parameters(model)

    def configure(self, model) -> list[torch.nn.Parameter]:
        """Freeze every parameter that ``parameters(model)`` does not return; return those."""
        train = self.parameters(model)
        keep = {id(p) for p in train}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        return train

    # Shared helpers for subclasses.
    def _retain_term(self, model, retain_batch: Batch | None, weight: float) -> torch.Tensor | float:
        if weight == 0:
            return 0.0
        if retain_batch is None:
            raise ValueError(f"objective {self.name!r} needs a retain batch (retain weight {weight})")
        return weight * mean_nll(model, retain_batch)

    def _need_ref(self, ref) -> None:
        if ref is None:
            raise ValueError(f"objective {self.name!r} needs the frozen reference model `ref`")


