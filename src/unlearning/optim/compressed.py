"""Compressed first-order grade: signSGD, signAdam, N-bit Adam, and bitsandbytes' 8-bit AdamW.

    signSGD     theta -= lr * sign(g)
    signAdam    m = b1 m + (1 - b1) g;  theta -= lr * sign(m)                    (Signum / 1-bit Adam)
    N-bit Adam  m, v as Adam (bias-corrected);  theta -= lr * Q_N(m_hat / (sqrt(v_hat) + eps))
    AdamW8bit   bitsandbytes' AdamW with block-wise 8-bit optimizer states (the paper's "8-bit Adam")

The N-bit quantizer ``quantize(x, bits)`` is sign-magnitude on a fixed grid in [-1, 1]: 1 sign bit
and N-1 magnitude bits for the L = 2**(N-1) levels {1/L, 2/L, ..., 1}:

    Q_N(x) = sign(x) * clamp(round(|x| * L), 1, L) / L

(magnitudes above 1 saturate at 1; nonzero magnitudes below 1/(2L) round up to 1/L; exact zeros
stay 0, as sign(0) = 0). For N = 1, L = 1 and Q_1(x) = sign(x) exactly, so 1-bit Adam equals
signAdam bit for bit; as N grows, Q_N(x) -> clip(x, -1, 1), i.e. Adam with the per-coordinate step
capped at lr. Every coordinate therefore moves by at most lr, in steps of lr/L.

Weight decay, where offered, is decoupled: theta *= 1 - lr * weight_decay (default 0).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import check_betas, check_nonneg


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Sign-magnitude N-bit quantizer on [-1, 1] (see module docstring); ``quantize(x, 1) == sign(x)``."""
    if int(bits) != bits or bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    if bits == 1:
        return torch.sign(x)
    levels = float(2 ** (int(bits) - 1))
    return torch.sign(x) * (x.abs() * levels).round_().clamp_(1.0, levels).div_(levels)


def _grad_step(closure: Callable | None):
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    return loss


class SignSGD(Optimizer):
    """signSGD. Defaults: ``lr=1e-5`` ours, ``weight_decay=0`` ours."""

    def __init__(self, params, lr: float = 1e-5, weight_decay: float = 0.0):
        check_nonneg(lr=lr, weight_decay=weight_decay)
        super().__init__(params, dict(lr=float(lr), weight_decay=float(weight_decay)))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = _grad_step(closure)
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                st["step"] = st.get("step", 0) + 1
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(torch.sign(p.grad), alpha=-lr)
        return loss


class _AdamMoments(Optimizer):
    """Adam's moment bookkeeping shared by signAdam and N-bit Adam (same arithmetic for m)."""

    def _moments(self, p, group, second: bool):
        st = self.state[p]
        if not st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if second:
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["step"] += 1
        g = p.grad
        b1 = group["betas"][0]
        st["exp_avg"].mul_(b1).add_(g, alpha=1.0 - b1)
        if second:
            b2 = group["betas"][1]
            st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1.0 - b2)
        return st


class SignAdam(_AdamMoments):
    """signAdam (Signum): theta -= lr * sign(m). Defaults: ``lr=1e-5`` ours; ``beta1=0.9`` Adam's;
    ``weight_decay=0`` ours."""

    def __init__(self, params, lr: float = 1e-5, beta1: float = 0.9, weight_decay: float = 0.0):
        check_nonneg(lr=lr, weight_decay=weight_decay)
        b1 = check_betas((beta1,), n=1)[0]
        super().__init__(params, dict(lr=float(lr), betas=(b1,), weight_decay=float(weight_decay)))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = _grad_step(closure)
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self._moments(p, group, second=False)
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(torch.sign(st["exp_avg"]), alpha=-lr)
        return loss


class NBitAdam(_AdamMoments):
    """N-bit Adam: theta -= lr * Q_N(m_hat / (sqrt(v_hat) + eps)), Q_N the quantizer above.

    Defaults: ``bits=4`` ours (the paper does not publish N); ``lr=1e-5`` ours; ``betas=(0.9, 0.999)``,
    ``eps=1e-8`` Adam's; ``weight_decay=0`` ours. With ``bits=1`` it equals SignAdam(beta1=betas[0]).
    """

    def __init__(self, params, lr: float = 1e-5, bits: int = 4, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        check_nonneg(lr=lr, eps=eps, weight_decay=weight_decay)
        quantize(torch.zeros(1), bits)  # validates bits
        super().__init__(params, dict(lr=float(lr), bits=int(bits), betas=check_betas(betas), eps=float(eps),
                                      weight_decay=float(weight_decay)))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = _grad_step(closure)
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self._moments(p, group, second=True)
                t = st["step"]
                m_hat = st["exp_avg"] / (1.0 - b1 ** t)
                denom = (st["exp_avg_sq"] / (1.0 - b2 ** t)).sqrt_().add_(eps)
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(quantize(m_hat.div_(denom), group["bits"]), alpha=-lr)
        return loss


def adamw8bit(params, lr: float = 1e-5, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
              min_8bit_size: int = 4096):
    """bitsandbytes.optim.AdamW8bit (a torch.optim.Optimizer subclass). Block-wise 8-bit m and v;
    tensors with fewer than ``min_8bit_size`` elements keep 32-bit state (bitsandbytes' rule).

    Defaults: ``lr=1e-5`` ours; ``betas``, ``eps``, ``weight_decay=0.01``, ``min_8bit_size=4096``
    bitsandbytes'. Works on CPU tensors with bitsandbytes >= 0.45 (checked with 0.50) and on CUDA.
    """
    check_nonneg(lr=lr, eps=eps, weight_decay=weight_decay, min_8bit_size=min_8bit_size)
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a native-library load failure
        raise RuntimeError(f"optimizer 'adamw8bit' needs bitsandbytes, which failed to import: {exc}") from exc
    def build(ps):
        return bnb.optim.AdamW8bit(ps, lr=float(lr), betas=check_betas(betas), eps=float(eps),
                                   weight_decay=float(weight_decay), min_8bit_size=int(min_8bit_size))

    params = list(params)
    if any(type(p).__name__ == "DTensor" for p in params):  # FSDP2 shards: each rank steps its own
        from ..distributed import LocalShards

        opt = LocalShards(params, build)
        mng = bnb.optim.GlobalOptimManager.get_instance()
        for p, q in zip(opt.params, opt.proxies):  # the whole weight's size picks 8 or 32 bits, as unsharded
            mng.override_config(q, "min_8bit_size", 0 if p.numel() >= min_8bit_size else p.numel() + 1)
        return opt
    return build(params)
