"""SAM (sharpness-aware minimisation, Foret et al. 2021), a robust first-order baseline (grade 'first').

    g   = grad f(theta)
    e   = rho * g / ||g||            (||.|| over all parameters together)
    g_s = grad f(theta + e)
    theta <- base_update(theta, g_s)   base = Adam (bias-corrected, decoupled weight decay) or SGD (+momentum)

The weights are copied before the ascent step and copied back (exact restore); those copies are
temporaries of the step, not persistent state. Needs a closure; it is called twice with backward.

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

from typing import Callable

import torch
from torch.optim import Optimizer

from ..distributed import global_grad_norm
from ._common import adam_update, check_betas, check_nonneg, clip_grad_norm, closure_kwargs, require_closure

_BASES = ("adam", "sgd")
SMOOTH_TERMS = ("all", "forget")


class SAM(Optimizer):
    """Defaults: ``rho=0.05`` SAM paper's; ``base="adam"`` ours (the study's reference optimizer);
    ``lr=1e-5`` ours; ``betas=(0.9, 0.999)``, ``eps=1e-8`` Adam's; ``momentum=0`` (SGD base only),
    ``weight_decay=0`` ours; ``smooth_terms="all"`` ours (the lab's is ``"forget"``)."""

    def __init__(self, params, lr: float = 1e-5, rho: float = 0.05, base: str = "adam", betas=(0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0, smooth_terms: str = "all"):
        check_nonneg(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=weight_decay)
        if base not in _BASES:
            raise ValueError(f"base must be one of {_BASES}, got {base!r}")
        if smooth_terms not in SMOOTH_TERMS:
            raise ValueError(f"smooth_terms must be one of {SMOOTH_TERMS}, got {smooth_terms!r}")
        defaults = dict(lr=float(lr), rho=float(rho), base=base, betas=check_betas(betas), eps=float(eps),
                        momentum=float(momentum), weight_decay=float(weight_decay))
        super().__init__(params, defaults)
        self.smooth_terms = smooth_terms

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
