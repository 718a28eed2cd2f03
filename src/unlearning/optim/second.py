"""Second-order grade: Sophia (SophiaG, Liu et al. 2023) with a diagonal Hessian estimate.

    m = b1 m + (1 - b1) g                                     every step
    h = b2 h + (1 - b2) * h_hat                               every ``k`` steps (steps 0, k, 2k, ...)
    theta -= lr * wd * theta                                  (decoupled weight decay, optional)
    theta -= lr * clip(m / max(rho * s * h, eps), -1, 1)      s = ``hess_scale``

so no coordinate moves by more than lr (plus weight decay). ``h_hat`` (the diagonal estimate):

- ``hessian="gnb"`` (Gauss-Newton-Bartlett): the optimizer calls ``closure(backward=True, gnb=True)``,
  which back-propagates the cross-entropy of the model against labels *sampled from the model's own
  predictions* (a mean over the batch's B predicted tokens); h_hat = g_gnb * g_gnb.
- ``hessian="grad_sq"``: h_hat = g * g from the ordinary gradient of the step (no extra pass).

Scale: g_gnb is the gradient of a *mean* over B tokens, so g_gnb^2 is about 1/B of the per-token
Gauss-Newton diagonal. Official SophiaG multiplies the Hessian by the batch's token count in its step
(``step(bs=B)``: ``ratio = |m| / (rho * B * h)``). ``hess_scale="tokens"`` (default) does the same:
``s`` is the ``batch_tokens`` attribute the closure carries (the number of predicted tokens its GNB
loss averages over; ``train.unlearn`` sets it every step). A number fixes ``s`` instead (e.g. 1.0 for
problems without tokens). With s = 1 on a language model almost every coordinate is clipped and
Sophia is signAdam with beta1 (default study's MUSE target, GradDiff, 50 steps: 0.0005% unclipped;
with s = tokens, 0.14% at rho 0.04, 31% at rho 20).

``last_stats["unclipped"]``: after each step, the share of coordinates whose ratio was inside
(-1, 1), SophiaG's "win rate" (its authors expect 10-50%), among the coordinates with a non-zero
momentum (rows of unused tokens never get a gradient and would count as unclipped); the unlearning
trace records it.
Parameters without a gradient in a step are skipped entirely (as SophiaG does): no moment update, no
move. After a GNB refresh, ``p.grad`` holds the GNB gradient; the next closure call zeroes it.

When h is refreshed (``hessian_refresh``):
- ``"before_update"`` (default, ours): at steps 0, k, 2k, ... before that step's update, which
  already uses it; the first update is Hessian-scaled.
- ``"after_update"`` (SophiaG's loop, Liuhong99/Sophia train_sophiag.py): at steps k-1, 2k-1, ...
  after that step's update, at the updated weights; the first k updates see h = 0 and are clipped
  to lr * sign(m) (signAdam's move). SophiaG's loop takes the GNB loss on the next batch it has
  fetched; here it is this step's forget batch (the closure's).
Gradient clipping (the loop's ``max_grad_norm``) is the closure's, before the step and on the GNB
gradient, as SophiaG's loop clips both.

Hutchinson's estimator is not offered (it needs double backward, unavailable for SDPA on CPU).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import check_betas, check_nonneg, require_closure

_HESSIANS = ("gnb", "grad_sq")
_REFRESH = ("before_update", "after_update")
TOKENS = "tokens"


def _check_hess_scale(value) -> float | str:
    if value == TOKENS:
        return TOKENS
    if isinstance(value, str) or not float(value) > 0:
        raise ValueError(f"hess_scale must be 'tokens' or a number > 0, got {value!r}")
    return float(value)


class Sophia(Optimizer):
    """SophiaG with a selectable diagonal Hessian estimate (see module docstring).

    Defaults: ``betas=(0.9, 0.95)`` and ``rho=0.04`` the lab's configs (SOUL; SophiaG's own are
    (0.965, 0.99), 0.04); ``k=10`` SophiaG's; ``hessian="gnb"`` SophiaG's; ``hess_scale="tokens"``
    SophiaG's (its ``bs``, the batch token count); ``lr=1e-5`` ours (the lab's MUSE lr for Adam);
    ``weight_decay=0``, ``eps=1e-12`` ours; ``hessian_refresh="before_update"`` ours (SophiaG's loop:
    ``"after_update"``).
    """

    def __init__(self, params, lr: float = 1e-5, betas=(0.9, 0.95), rho: float = 0.04, k: int = 10,
                 hessian: str = "gnb", hess_scale: float | str = TOKENS, eps: float = 1e-12,
                 weight_decay: float = 0.0, hessian_refresh: str = "before_update"):
        check_nonneg(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
        hess_scale = _check_hess_scale(hess_scale)
        if hessian not in _HESSIANS:
            raise ValueError(f"hessian must be one of {_HESSIANS}, got {hessian!r}")
        if hessian_refresh not in _REFRESH:
            raise ValueError(f"hessian_refresh must be one of {_REFRESH}, got {hessian_refresh!r}")
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not eps > 0:
            raise ValueError("eps must be > 0")
        defaults = dict(lr=float(lr), betas=check_betas(betas), rho=float(rho), k=int(k), hessian=hessian,
                        hess_scale=hess_scale, eps=float(eps), weight_decay=float(weight_decay),
                        hessian_refresh=hessian_refresh)
        super().__init__(params, defaults)
        self.last_stats: dict[str, float] = {}

    @staticmethod
    def _scale(group: dict, closure: Callable) -> float:
        s = group["hess_scale"]
        if s != TOKENS:
            return s
        tokens = getattr(closure, "batch_tokens", None)
        if tokens is None or not float(tokens) > 0:
            raise ValueError("Sophia with hess_scale 'tokens' needs a closure carrying batch_tokens (the "
                             "number of predicted tokens of its batch); give a numeric hess_scale otherwise")
        return float(tokens)

    @staticmethod
    def _refreshes(group: dict, step: int) -> bool:
        """Whether h is refreshed at 0-based step ``step``: steps 0, k, ... before the update, or
        k-1, 2k-1, ... after it (module docstring)."""
        if group["hessian_refresh"] == "before_update":
            return step % group["k"] == 0
        return step % group["k"] == group["k"] - 1

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, "Sophia")
        with torch.enable_grad():
            loss = closure()

        # Only parameters with a gradient now take part in this step (SophiaG skips the others).
        active: list[tuple[dict, torch.Tensor]] = []
        refresh_gnb = {"before_update": False, "after_update": False}
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
                st["refresh"] = self._refreshes(group, st["step"])
                if st["refresh"]:
                    if group["hessian"] == "grad_sq":
                        if group["hessian_refresh"] == "before_update":
                            st["hessian"].mul_(b2).addcmul_(g, g, value=1.0 - b2)
                        else:  # kept until after the update (the GNB refresh's gradient replaces p.grad)
                            st["grad_sq"] = g * g
                    else:
                        refresh_gnb[group["hessian_refresh"]] = True
                active.append((group, p))

        if refresh_gnb["before_update"]:
            with torch.enable_grad():
                closure(backward=True, gnb=True)

        counts: dict = {}  # device -> [unclipped, live] (one sync per step, not per parameter)
        for group, p in active:
            b1, b2 = group["betas"]
            lr, rho, eps, wd = group["lr"], group["rho"], group["eps"], group["weight_decay"]
            st = self.state[p]
            if group["hessian_refresh"] == "before_update" and st.pop("refresh"):
                if group["hessian"] == "gnb" and p.grad is not None:
                    g = p.grad
                    st["hessian"].mul_(b2).addcmul_(g, g, value=1.0 - b2)
            st["step"] += 1
            if wd:
                p.mul_(1.0 - lr * wd)
            m, h = st["exp_avg"], st["hessian"]
            ratio = m / (h * (rho * self._scale(group, closure))).clamp_(min=eps)
            live = m != 0  # coordinates that never had a gradient (unused embeddings) are not counted
            c = torch.stack([((ratio.abs() < 1.0) & live).sum(), live.sum()])
            if hasattr(c, "full_tensor"):  # a sharded (FSDP2) weight: count over every rank's shard
                c = c.full_tensor()
            counts[p.device] = c if p.device not in counts else counts[p.device] + c
            p.add_(ratio.clamp_(-1.0, 1.0), alpha=-lr)
        unclipped = sum(int(c[0]) for c in counts.values())
        total = sum(int(c[1]) for c in counts.values())
        self.last_stats = {"unclipped": unclipped / total} if total else {}

        # SophiaG's order: the refresh after the update, at the updated weights
        after = [(group, p) for group, p in active if group["hessian_refresh"] == "after_update"]
        if refresh_gnb["after_update"]:
            with torch.enable_grad():
                closure(backward=True, gnb=True)
        for group, p in after:
            st = self.state[p]
            if not st.pop("refresh"):
                continue
            b2 = group["betas"][1]
            h_hat = st.pop("grad_sq", None)
            if h_hat is not None:
                st["hessian"].mul_(b2).add_(h_hat, alpha=1.0 - b2)
            elif p.grad is not None:
                st["hessian"].mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
        return loss
