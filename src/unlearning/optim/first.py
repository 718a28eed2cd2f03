"""First-order grade: Adam / AdamW (torch's own implementations, constructed with explicit arguments).

The robust first-order baselines SAM and randomized smoothing are in ``sam.py`` and ``smoothing.py``.
Defaults: ``lr=1e-5`` ours (the lab's MUSE lr); ``betas=(0.9, 0.999)``, ``eps=1e-8`` torch's;
``weight_decay`` 0 for Adam, 0.01 for AdamW (torch's).
"""

from __future__ import annotations

import torch

from ._common import check_betas, check_nonneg


def adam(params, lr: float = 1e-5, betas=(0.9, 0.999), eps: float = 1e-8,
         weight_decay: float = 0.0) -> torch.optim.Adam:
    """torch.optim.Adam (L2 weight decay added to the gradient, as torch does)."""
    check_nonneg(lr=lr, eps=eps, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=float(lr), betas=check_betas(betas), eps=float(eps),
                            weight_decay=float(weight_decay))


def adamw(params, lr: float = 1e-5, betas=(0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.01) -> torch.optim.AdamW:
    """torch.optim.AdamW (decoupled weight decay)."""
    check_nonneg(lr=lr, eps=eps, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=float(lr), betas=check_betas(betas), eps=float(eps),
                             weight_decay=float(weight_decay))
