"""Helpers shared by the optimizer modules: seeds, regenerable random directions, Adam's update.

Random directions are never stored. A direction is a deterministic function of a 63-bit seed: one
``torch.Generator`` per device is seeded with it and the parameters are visited in a fixed order,
each drawing its own slice (``torch.randn(p.shape, generator=g)``). Visiting the parameters again
with the same seed reproduces the direction bit for bit, allocating one parameter-sized temporary
at a time. ``step_seed(seed, step, index)`` derives the seed of direction ``index`` at step ``step``
from the optimizer's ``seed`` hyperparameter (splitmix64 mixing, so neighbouring steps and
directions get unrelated streams).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Sequence

import torch

_M64 = (1 << 64) - 1


def step_seed(seed: int, step: int, index: int = 0) -> int:
    """Seed of random direction ``index`` at optimizer step ``step`` (both >= 0), in [0, 2**63)."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(step) * 0xD1B54A32D192ED03
         + int(index) * 0x8CB92BA72F3D8DD7 + 0x632BE59BD9B4E019) & _M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    x ^= x >> 31
    return x >> 1


class DirectionStream:
    """Standard-normal draws for ``params`` (in order) from one seed; one generator per device.

    ``next(p)`` must be called for the parameters in the same order on every pass; it returns a
    fresh tensor shaped like ``p`` (dtype of ``p``), so only one such temporary lives at a time.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._gens: dict[torch.device, torch.Generator] = {}

    def next(self, p: torch.Tensor) -> torch.Tensor:
        g = self._gens.get(p.device)
        if g is None:
            g = torch.Generator(device=p.device)
            g.manual_seed(self.seed)
            self._gens[p.device] = g
        return torch.randn(p.shape, generator=g, dtype=p.dtype, device=p.device)


def normal_like(params: Sequence[torch.Tensor], seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(p, z)`` with ``z ~ N(0, I)`` shaped like ``p``, reproducible from ``seed``."""
    stream = DirectionStream(seed)
    for p in params:
        yield p, stream.next(p)


def direction_norm(params: Sequence[torch.Tensor], seed: int) -> float:
    """Euclidean norm, over all ``params`` together, of the Gaussian direction drawn from ``seed``."""
    total = 0.0
    for _, z in normal_like(params, seed):
        total += float(z.float().pow(2).sum())
    return math.sqrt(total)


def trainable(param_groups: Iterable[dict]) -> list[torch.Tensor]:
    return [p for g in param_groups for p in g["params"] if p.requires_grad]


def require_closure(closure: Callable | None, name: str) -> Callable:
    if closure is None:
        raise ValueError(f"{name}.step needs a closure(backward: bool = True, gnb: bool = False) -> loss")
    return closure


def check_betas(betas, n: int = 2) -> tuple[float, ...]:
    betas = tuple(float(b) for b in betas)
    if len(betas) != n or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be {n} values in [0, 1), got {betas}")
    return betas


def check_nonneg(**values: float) -> None:
    for name, v in values.items():
        if v is None or not (float(v) >= 0.0):
            raise ValueError(f"{name} must be >= 0, got {v!r}")


@torch.no_grad()
def adam_update(p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float,
                betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """One Adam step on ``p`` (bias-corrected, as torch.optim.Adam), weight decay decoupled (AdamW)."""
    b1, b2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    if weight_decay:
        p.mul_(1.0 - lr * weight_decay)
    m.mul_(b1).add_(grad, alpha=1.0 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
    denom = (v.sqrt() / math.sqrt(1.0 - b2 ** t)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1.0 - b1 ** t))
