"""SAM (sharpness-aware minimisation, Foret et al. 2021), a robust first-order baseline (grade 'first').

    g   = grad f(theta)
    e   = rho * g / ||g||            (||.|| over all parameters together)
    g_s = grad f(theta + e)
    theta <- base_update(theta, g_s)   base = Adam (bias-corrected, decoupled weight decay) or SGD (+momentum)

``restore``: ``"copy"`` (default) copies the weights before the ascent step and back after it (exact;
a temporary of the step, 4 bytes per weight at its peak). ``"subtract"`` (ours, the paper configs) keeps
e in ``.grad`` and, as each weight's second-pass gradient arrives (a hook on the weight), subtracts e
and hands ``.grad`` to that gradient, so no weight-sized buffer is added (w + e - e differs from w by
float rounding, measured in tests/test_memory_savings.py). It needs the unlearning loop's closure
(``accumulate``) and unsharded weights; FSDP2 shards (whose gradients arrive by reduce-scatter, not
through the hook) and plain closures restore from a copy. Needs a closure; it is called twice with
backward. With ``smooth_terms: forget`` and the loop's closure the retain gradient is added in
``.grad`` itself (``closure(accumulate=True)``, the same sum bit for bit) rather than next to a kept
forget gradient.

Which loss is perturbed for (``smooth_terms``): ``"all"`` (default, ours) the whole unlearning
objective, f above; ``"forget"`` (the lab's trainers, OPTML-Group Unlearn-Smooth
MUSE/baselines/baselines/sam_iterative.py) the forget term only, the retain term taking its plain
gradient at the unperturbed weights:

    g_f = grad f_forget(theta);  e = rho * g_f / ||g_f||;  g_s = grad f_forget(theta + e) + grad f_retain(theta)

which needs the unlearning loop's closure (``closure(part=...)``, train.loss_closure; a third pass).
Gradient clipping (the closure's ``max_grad_norm``) applies to g_s, the gradient the base update
takes, as HF Trainer clips what the lab's training step leaves in ``.grad``; the first pass is not
clipped (e does not depend on its scale).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch.optim import Optimizer

from ..distributed import global_grad_norm
from ._common import adam_update, check_betas, check_nonneg, clip_grad_norm, closure_kwargs, require_closure

_BASES = ("adam", "sgd")
SMOOTH_TERMS = ("all", "forget")
RESTORES = ("copy", "subtract")


class SAM(Optimizer):
    """Defaults: ``rho=0.05`` SAM paper's; ``base="adam"`` ours (the study's reference optimizer);
    ``lr=1e-5`` ours; ``betas=(0.9, 0.999)``, ``eps=1e-8`` Adam's; ``momentum=0`` (SGD base only),
    ``weight_decay=0`` ours; ``smooth_terms="all"`` ours (the lab's is ``"forget"``); ``restore="copy"``
    (exact)."""

    def __init__(self, params, lr: float = 1e-5, rho: float = 0.05, base: str = "adam", betas=(0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0, smooth_terms: str = "all",
                 restore: str = "copy"):
        check_nonneg(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=weight_decay)
        if base not in _BASES:
            raise ValueError(f"base must be one of {_BASES}, got {base!r}")
        if smooth_terms not in SMOOTH_TERMS:
            raise ValueError(f"smooth_terms must be one of {SMOOTH_TERMS}, got {smooth_terms!r}")
        defaults = dict(lr=float(lr), rho=float(rho), base=base, betas=check_betas(betas), eps=float(eps),
                        momentum=float(momentum), weight_decay=float(weight_decay))
        if restore not in RESTORES:
            raise ValueError(f"restore must be one of {RESTORES}, got {restore!r}")
        super().__init__(params, defaults)
        self.smooth_terms = smooth_terms
        self.restore = restore

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, "SAM")
        forget_only = self.smooth_terms == "forget"
        if forget_only and not getattr(closure, "takes_parts", False):
            raise ValueError("SAM with smooth_terms 'forget' needs a closure that computes the forget and retain "
                             "terms apart (train.loss_closure)")
        kw = closure_kwargs(closure, clip=False, **({"part": "forget"} if forget_only else {}))
        with torch.enable_grad():
            loss = closure(**kw)
        with_grad = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = global_grad_norm([p.grad for _, p in with_grad])  # over every FSDP2 shard too
        in_place = getattr(closure, "accumulates", False)
        if self.restore == "subtract" and in_place and not any(_sharded(p) for _, p in with_grad):
            _ascend_subtracting(with_grad, norm, closure, kw)
        else:
            backups = []
            for group, p in with_grad:
                backups.append(p.detach().clone())
                if norm > 0:
                    p.add_(p.grad, alpha=group["rho"] / norm)
            with torch.enable_grad():
                closure(**kw)
            for (_, p), p0 in zip(with_grad, backups):
                p.copy_(p0)
            del backups
        if forget_only:  # the retain term's plain gradient at the unperturbed weights, added
            params = [p for g in self.param_groups for p in g["params"]]
            if in_place:  # added in .grad by the backward itself: g_s + g_retain, as below
                with torch.enable_grad():
                    loss = loss + closure(part="retain", clip=False, accumulate=True)
            else:
                forget = [p.grad for p in params]
                with torch.enable_grad():
                    loss = loss + closure(part="retain", clip=False)
                for p, gf in zip(params, forget):
                    if gf is not None:
                        p.grad = gf if p.grad is None else p.grad.add_(gf)
            with_grad = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        clip_grad_norm((p for _, p in with_grad), getattr(closure, "max_grad_norm", None))
        for group, p in with_grad:
            if p.grad is None:
                continue
            st = self.state[p]
            lr, wd = group["lr"], group["weight_decay"]
            if group["base"] == "adam":
                adam_update(p, p.grad, st, lr, group["betas"], group["eps"], wd)
            else:
                if wd:
                    p.mul_(1.0 - lr * wd)
                d = p.grad
                if group["momentum"]:
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d)
                    d = buf
                p.add_(d, alpha=-lr)
        return loss


def _sharded(p: torch.Tensor) -> bool:
    """An FSDP2 shard (a DTensor): its gradient arrives by reduce-scatter, not through a tensor hook."""
    return type(p).__name__ == "DTensor"


def _ascend_subtracting(with_grad: list, norm: torch.Tensor | float, closure: Callable, kw: dict) -> None:
    """SAM's second pass without a weight copy (``restore: subtract``): e = rho g / ||g|| is made in
    ``.grad`` in place and added to the weights; when a weight's second-pass gradient is ready (a hook
    on it, run before autograd stores it) e is subtracted and ``.grad`` cleared, so the new gradient
    takes its place. Weights that get no second gradient are restored after the backward."""
    perturbed = []
    for group, p in with_grad:
        if norm > 0:
            p.grad.mul_(group["rho"] / norm)
            p.add_(p.grad)
            perturbed.append(p)
        else:
            p.grad = None

    restored: set[int] = set()

    def restore(p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        # every use of p in the graph has produced its part of grad: the backward reads p no more
        with torch.no_grad():
            p.sub_(p.grad)
        p.grad = None
        restored.add(id(p))
        return grad

    handles = [p.register_hook(functools.partial(restore, p)) for p in perturbed]
    try:
        with torch.enable_grad():
            closure(**kw, accumulate=True)
    finally:
        for h in handles:
            h.remove()
    for p in perturbed:  # no second-pass gradient reached it: still perturbed, e still in .grad
        if id(p) not in restored:
            p.sub_(p.grad)
            p.grad = None
