"""Second-order grade: Sophia (SophiaG, Liu et al. 2023) with a diagonal Hessian estimate.

    m = b1 m + (1 - b1) g                                     every step
    h = b2 h + (1 - b2) * hess_scale * h_hat                  every ``k`` steps (steps 0, k, 2k, ...)
    theta -= lr * wd * theta                                  (decoupled weight decay, optional)
    theta -= lr * clip(m / max(rho * h, eps), -1, 1)

so no coordinate moves by more than lr (plus weight decay). ``h_hat`` (the diagonal estimate):

- ``hessian="gnb"`` (Gauss-Newton-Bartlett): the optimizer calls ``closure(backward=True, gnb=True)``,
  which back-propagates the cross-entropy of the model against labels *sampled from the model's own
  predictions*; h_hat = g_gnb * g_gnb. SophiaG multiplies by the batch token count B (the loss is a
  mean over B tokens); the optimizer cannot see B, so pass it as ``hess_scale``.
- ``hessian="grad_sq"``: h_hat = g * g from the ordinary gradient of the step (no extra pass).

Hutchinson's estimator is not offered (it needs double backward, unavailable for SDPA on CPU).
The Hessian is first estimated at step 0 (SophiaG's loop does it at step k-1; before that its h is 0
and every update is clipped, i.e. sign descent). After a GNB refresh, ``p.grad`` holds the GNB
gradient; the next closure call zeroes it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import check_betas, check_nonneg, require_closure

_HESSIANS = ("gnb", "grad_sq")


class Sophia(Optimizer):
    """SophiaG with a selectable diagonal Hessian estimate (see module docstring).

    Defaults: ``betas=(0.9, 0.95)`` and ``rho=0.04`` the lab's configs (SOUL; SophiaG's own are
    (0.965, 0.99), 0.04); ``k=10`` SophiaG's; ``hessian="gnb"`` SophiaG's; ``lr=1e-5`` ours (the lab's
    MUSE lr for Adam); ``weight_decay=0``, ``eps=1e-12``, ``hess_scale=1.0`` ours (set hess_scale to the
    batch token count to follow SophiaG).
    """

    def __init__(self, params, lr: float = 1e-5, betas=(0.9, 0.95), rho: float = 0.04, k: int = 10,
                 hessian: str = "gnb", hess_scale: float = 1.0, eps: float = 1e-12, weight_decay: float = 0.0):
        check_nonneg(lr=lr, rho=rho, eps=eps, hess_scale=hess_scale, weight_decay=weight_decay)
        if hessian not in _HESSIANS:
            raise ValueError(f"hessian must be one of {_HESSIANS}, got {hessian!r}")
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not eps > 0:
            raise ValueError("eps must be > 0")
        defaults = dict(lr=float(lr), betas=check_betas(betas), rho=float(rho), k=int(k), hessian=hessian,
                        hess_scale=float(hess_scale), eps=float(eps), weight_decay=float(weight_decay))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, "Sophia")
        with torch.enable_grad():
            loss = closure()

        refresh_gnb = False
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                g = p.grad
                st["exp_avg"].mul_(b1).add_(g, alpha=1.0 - b1)
                st["refresh"] = st["step"] % group["k"] == 0
                if st["refresh"]:
                    if group["hessian"] == "grad_sq":
                        st["hessian"].mul_(b2).addcmul_(g, g, value=(1.0 - b2) * group["hess_scale"])
                    else:
                        refresh_gnb = True

        if refresh_gnb:
            with torch.enable_grad():
                closure(backward=True, gnb=True)

        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, rho, eps, wd = group["lr"], group["rho"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                st = self.state.get(p)
                if not st or "exp_avg" not in st:
                    continue
                if st.pop("refresh") and group["hessian"] == "gnb" and p.grad is not None:
                    g = p.grad
                    st["hessian"].mul_(b2).addcmul_(g, g, value=(1.0 - b2) * group["hess_scale"])
                st["step"] += 1
                if wd:
                    p.mul_(1.0 - lr * wd)
                m, h = st["exp_avg"], st["hessian"]
                ratio = (m / (h * rho).clamp_(min=eps)).clamp_(-1.0, 1.0)
                p.add_(ratio, alpha=-lr)
        return loss
