"""SAM (sharpness-aware minimisation, Foret et al. 2021), a robust first-order baseline (grade 'first').

    g   = grad f(theta)
    e   = rho * g / ||g||            (||.|| over all parameters together)
    g_s = grad f(theta + e)
    theta <- base_update(theta, g_s)   base = Adam (bias-corrected, decoupled weight decay) or SGD (+momentum)

The weights are copied before the ascent step and copied back (exact restore); those copies are
temporaries of the step, not persistent state. Needs a closure; it is called twice with backward.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import adam_update, check_betas, check_nonneg, require_closure

_BASES = ("adam", "sgd")


class SAM(Optimizer):
    """Defaults: ``rho=0.05`` SAM paper's; ``base="adam"`` ours (the study's reference optimizer);
    ``lr=1e-5`` ours; ``betas=(0.9, 0.999)``, ``eps=1e-8`` Adam's; ``momentum=0`` (SGD base only),
    ``weight_decay=0`` ours."""

    def __init__(self, params, lr: float = 1e-5, rho: float = 0.05, base: str = "adam", betas=(0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0):
        check_nonneg(lr=lr, rho=rho, eps=eps, momentum=momentum, weight_decay=weight_decay)
        if base not in _BASES:
            raise ValueError(f"base must be one of {_BASES}, got {base!r}")
        defaults = dict(lr=float(lr), rho=float(rho), base=base, betas=check_betas(betas), eps=float(eps),
                        momentum=float(momentum), weight_decay=float(weight_decay))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, "SAM")
        with torch.enable_grad():
            loss = closure()
        with_grad = [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = math.sqrt(sum(float(p.grad.float().pow(2).sum()) for _, p in with_grad))
        backups = []
        for group, p in with_grad:
            backups.append(p.detach().clone())
            if norm > 0:
                p.add_(p.grad, alpha=group["rho"] / norm)
        with torch.enable_grad():
            closure()
        for (_, p), p0 in zip(with_grad, backups):
            p.copy_(p0)
        del backups
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
