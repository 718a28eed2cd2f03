"""First-order randomized smoothing (RS), a robust first-order baseline (grade 'first').

    g_rs = (1/n) sum_{i<n} grad f(theta + sigma * z_i),   z_i ~ N(0, I)
    theta <- Adam(theta, g_rs)        (bias-corrected, decoupled weight decay)

i.e. first-order descent on the Gaussian-smoothed loss f_sigma(theta) = E f(theta + sigma z).

Which loss is smoothed (``smooth_terms``): ``"all"`` (default, ours) smooths the whole unlearning
objective the closure computes, retain term included; ``"forget"`` (the lab's trainers, OPTML-Group
Unlearn-Smooth) smooths only the forget term and adds the retain term's plain gradient at the
unperturbed weights:

    g = (1/n) sum_i grad f_forget(theta + sigma z_i) + grad f_retain(theta)

which needs the unlearning loop's closure (``closure(part="forget" | "retain")``, train.loss_closure).
Gradient clipping (the closure's ``max_grad_norm``) applies to that final average, as HF Trainer
clips what the lab's training step leaves in ``.grad``, not to each sample.

z_i of step t (from 1) is regenerated from ``step_seed(seed, t, i)`` (see ``_common.normal_like``);
t is the optimizer's own step count (each group's ``noise_step``), so it advances whichever
parameters get a gradient. ``restore``: ``"copy"`` (default) copies the weights once before and back
after every perturbation, so they are restored bit for bit; ``"subtract"`` (ours, the paper configs)
regenerates z_i and subtracts sigma z_i, keeping no weight copy (4 bytes per weight; w + s z - s z
differs from w by float rounding, measured in tests/test_memory_savings.py). With the unlearning loop's
closure the samples' gradients add up in ``.grad`` itself (``closure(accumulate=True)``; the same sums
in the same order as a separate accumulator, so bit for bit); a plain closure gets the accumulator.
Memory beyond Adam's: the weights' copy with ``restore: copy``, the accumulator with a plain closure.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import (
    adam_update,
    check_betas,
    check_nonneg,
    clip_grad_norm,
    closure_kwargs,
    normal_like,
    require_closure,
    step_seed,
    trainable,
)

SMOOTH_TERMS = ("all", "forget")
RESTORES = ("copy", "subtract")


class RandomizedSmoothing(Optimizer):
    """Defaults: ``n_samples=3`` and ``sigma=0.01`` the lab's (MUSE; 0.1 on WMDP); ``lr=1e-5`` ours;
    ``betas=(0.9, 0.999)``, ``eps=1e-8`` Adam's; ``weight_decay=0``, ``seed=0`` ours;
    ``smooth_terms="all"`` ours (the lab's is ``"forget"``); ``restore="copy"`` (exact)."""

    def __init__(self, params, lr: float = 1e-5, sigma: float = 0.01, n_samples: int = 3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, seed: int = 0, smooth_terms: str = "all",
                 restore: str = "copy"):
        check_nonneg(lr=lr, sigma=sigma, eps=eps, weight_decay=weight_decay)
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if smooth_terms not in SMOOTH_TERMS:
            raise ValueError(f"smooth_terms must be one of {SMOOTH_TERMS}, got {smooth_terms!r}")
        if restore not in RESTORES:
            raise ValueError(f"restore must be one of {RESTORES}, got {restore!r}")
        self.restore = restore
        defaults = dict(lr=float(lr), betas=check_betas(betas), eps=float(eps), weight_decay=float(weight_decay))
        super().__init__(params, defaults)
        self.sigma = float(sigma)
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.smooth_terms = smooth_terms

    def noise_seed(self, step: int, index: int) -> int:
        """Seed of perturbation ``index`` at step ``step`` (1-based, as the step counter after the step)."""
        return step_seed(self.seed, step, index)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, "RandomizedSmoothing")
        forget_only = self.smooth_terms == "forget"
        if forget_only and not getattr(closure, "takes_parts", False):
            raise ValueError("RandomizedSmoothing with smooth_terms 'forget' needs a closure that computes the "
                             "forget and retain terms apart (train.loss_closure)")
        params = trainable(self.param_groups)
        if not params:
            return None
        # the optimizer's own step count (kept in the groups, so it is saved with the state)
        t = self.param_groups[0].get("noise_step", 0) + 1
        for group in self.param_groups:
            group["noise_step"] = t
        # the loop's closure sums the samples' gradients in .grad; a plain one zeroes it each call
        in_place = getattr(closure, "accumulates", False)
        kw = closure_kwargs(closure, clip=False, **({"part": "forget"} if forget_only else {}),
                            **({"accumulate": True} if in_place else {}))
        if in_place:
            for p in params:
                p.grad = None
        backups = [p.detach().clone() for p in params] if self.restore == "copy" else None
        acc: list[torch.Tensor | None] = [None] * len(params)
        loss_sum = 0.0
        for i in range(self.n_samples):
            for p, z in normal_like(params, self.noise_seed(t, i)):
                p.add_(z, alpha=self.sigma)
            with torch.enable_grad():
                loss_sum += float(closure(**kw))
            if backups is not None:
                for p, p0 in zip(params, backups):
                    p.copy_(p0)
            else:  # the same z again, subtracted
                for p, z in normal_like(params, self.noise_seed(t, i)):
                    p.sub_(z, alpha=self.sigma)
            if not in_place:
                for j, p in enumerate(params):
                    if p.grad is not None:
                        acc[j] = p.grad.detach().clone() if acc[j] is None else acc[j].add_(p.grad)
        del backups
        if in_place:
            acc = [p.grad for p in params]
        for a in acc:
            if a is not None:
                a.div_(self.n_samples)
        loss = loss_sum / self.n_samples
        if forget_only:  # the retain term's plain gradient at the unperturbed weights
            with torch.enable_grad():
                loss += float(closure(part="retain", clip=False, **({"accumulate": True} if in_place else {})))
            for j, p in enumerate(params):
                if in_place:
                    acc[j] = p.grad
                elif p.grad is not None:
                    acc[j] = p.grad.detach().clone() if acc[j] is None else acc[j].add_(p.grad)
        for p, a in zip(params, acc):
            p.grad = a
        clip_grad_norm(params, getattr(closure, "max_grad_norm", None))
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad and p.grad is not None:
                    adam_update(p, p.grad, self.state[p], group["lr"], group["betas"], group["eps"],
                                group["weight_decay"])
        return torch.tensor(loss)
