"""First-order randomized smoothing (RS), a robust first-order baseline (grade 'first').

    g_rs = (1/n) sum_{i<n} grad f(theta + sigma * z_i),   z_i ~ N(0, I)
    theta <- Adam(theta, g_rs)        (bias-corrected, decoupled weight decay)

i.e. first-order descent on the Gaussian-smoothed loss f_sigma(theta) = E f(theta + sigma z).
The closure smooths the whole unlearning objective it computes (the lab's code smooths the forget
term; with GradDiff-type losses the retain term is then smoothed too). z_i of step t (from 1) is
regenerated from ``step_seed(seed, t, i)`` (see ``_common.normal_like``); the weights are copied
once before and copied back after every perturbation, so they are restored bit for bit. Memory: a
copy of the weights and a gradient accumulator during the step, plus Adam's state.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import adam_update, check_betas, check_nonneg, normal_like, require_closure, step_seed, trainable


class RandomizedSmoothing(Optimizer):
    """Defaults: ``n_samples=3`` and ``sigma=0.01`` the lab's (MUSE; 0.1 on WMDP); ``lr=1e-5`` ours;
    ``betas=(0.9, 0.999)``, ``eps=1e-8`` Adam's; ``weight_decay=0``, ``seed=0`` ours."""

    def __init__(self, params, lr: float = 1e-5, sigma: float = 0.01, n_samples: int = 3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, seed: int = 0):
        check_nonneg(lr=lr, sigma=sigma, eps=eps, weight_decay=weight_decay)
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        defaults = dict(lr=float(lr), betas=check_betas(betas), eps=float(eps), weight_decay=float(weight_decay))
        super().__init__(params, defaults)
        self.sigma = float(sigma)
        self.n_samples = int(n_samples)
        self.seed = int(seed)

    def noise_seed(self, step: int, index: int) -> int:
        """Seed of perturbation ``index`` at step ``step`` (1-based, as the step counter after the step)."""
        return step_seed(self.seed, step, index)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, "RandomizedSmoothing")
        params = trainable(self.param_groups)
        if not params:
            return None
        t = self.state[params[0]].get("step", 0) + 1
        backups = [p.detach().clone() for p in params]
        acc: list[torch.Tensor | None] = [None] * len(params)
        loss_sum = 0.0
        for i in range(self.n_samples):
            for p, z in normal_like(params, self.noise_seed(t, i)):
                p.add_(z, alpha=self.sigma)
            with torch.enable_grad():
                loss_sum += float(closure())
            for j, (p, p0) in enumerate(zip(params, backups)):
                p.copy_(p0)
                if p.grad is not None:
                    acc[j] = p.grad.detach().clone() if acc[j] is None else acc[j].add_(p.grad)
        del backups
        j = 0
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                a = acc[j]
                j += 1
                if a is None:
                    continue
                a.div_(self.n_samples)
                p.grad = a
                adam_update(p, a, self.state[p], group["lr"], group["betas"], group["eps"], group["weight_decay"])
        return torch.tensor(loss_sum / self.n_samples)
