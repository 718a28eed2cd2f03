"""Helpers shared by the optimizer modules: seeds, regenerable random directions, Adam's update.

Random directions are never stored. A direction is a deterministic function of a 63-bit seed: one
``torch.Generator`` per device is seeded with it and the parameters are visited in a fixed order,
each drawing its own slice chunk by chunk. Visiting the parameters again with the same seed (and
the same draw dtype) reproduces the direction bit for bit. Two kinds of draw: ``normal`` (standard
Gaussian, ``torch.randn``) and ``rademacher`` (+-1 with probability 1/2 each, SPSA's; made from
random bytes, 8 signs per byte, about 7x cheaper than a Gaussian draw on the CPU).
``step_seed(seed, step, index)`` derives the seed of direction ``index`` at step ``step``
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


CHUNK = 1 << 18  # elements per generated chunk on the CPU (1 MiB in fp32)
# On a GPU a chunk of 2**26 elements (256 MiB in fp32) replays a 7B direction in ~100 chunks instead
# of ~26,000 (each one a Python iteration and a few kernel launches); the draws differ from the CPU's
# anyway (another generator), so the CPU keeps its chunk and its results.
CUDA_CHUNK = 1 << 26


def chunk_size(dev: torch.device) -> int:
    """Elements per generated chunk of a direction on ``dev``."""
    return CUDA_CHUNK if dev.type == "cuda" else CHUNK


KINDS = ("normal", "rademacher")


class DirectionStream:
    """Standard-normal (``kind="normal"``) or Rademacher draws for ``params`` (in order) from one
    seed; one generator per device.

    The draw for a parameter is produced in chunks of ``CHUNK`` elements of its flattened view, into
    one small reusable buffer per (device, dtype): no parameter-sized temporary, no page faults from
    fresh large allocations. ``chunks(p)`` yields ``(start, end, z)``, ``z`` the draw for
    ``p.view(-1)[start:end]``; it must be called for the parameters in the same order (and each
    chunk consumed before the next is asked for) on every pass.
    """

    def __init__(self, seed: int, buffers: dict | None = None, kind: str = "normal"):
        if kind not in KINDS:
            raise ValueError(f"direction kind must be one of {KINDS}, got {kind!r}")
        self.seed = int(seed)
        self.kind = kind
        self._gens: dict[torch.device, torch.Generator] = {}
        self._bufs = {} if buffers is None else buffers  # may be shared between streams

    def _gen(self, device: torch.device) -> torch.Generator:
        g = self._gens.get(device)
        if g is None:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            self._gens[device] = g
        return g

    def chunks(self, p: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor]]:
        """For a DTensor shard (FSDP2) the whole parameter's draw is generated, chunk by chunk, and
        only the part inside this rank's shard is yielded, with indices into ``local_flat(p)``: every
        rank regenerates the same direction from the seed and keeps its slice."""
        local, offset = shard_of(p)
        g = self._gen(local.device)
        key = (local.device, local.dtype)
        buf = self._bufs.get(key)
        step = chunk_size(local.device)
        if buf is None:
            buf = self._bufs[key] = torch.empty(step, dtype=local.dtype, device=local.device)
        n, lo, hi = p.numel(), offset, offset + local.numel()
        for start in range(0, n, step):
            end = min(n, start + step)
            z = buf[: end - start]
            if self.kind == "normal":
                torch.randn(end - start, generator=g, out=z)
            else:
                self._signs(z, g, local.device)
            a, b = max(start, lo), min(end, hi)  # the whole chunk for a plain tensor
            if a < b:
                yield a - lo, b - lo, z[a - start:b - start]

    def _signs(self, z: torch.Tensor, g: torch.Generator, dev: torch.device) -> None:
        """Fill ``z`` with +-1: random bytes, each unpacked into 8 sign bits."""
        key = (dev, "bits")
        bufs = self._bufs.get(key)
        if bufs is None:
            nbytes = chunk_size(dev) // 8
            bufs = self._bufs[key] = (torch.empty(nbytes, dtype=torch.uint8, device=dev),
                                      torch.empty(nbytes, 8, dtype=torch.uint8, device=dev),
                                      torch.arange(8, dtype=torch.uint8, device=dev))
        raw, bits, shifts = bufs
        nbytes = -(-z.numel() // 8)
        raw[:nbytes].random_(0, 256, generator=g)
        torch.bitwise_right_shift(raw[:nbytes].unsqueeze(1), shifts, out=bits[:nbytes])
        bits[:nbytes].bitwise_and_(1)
        z.copy_(bits[:nbytes].view(-1)[: z.numel()]).mul_(2).sub_(1)

    def add_to(self, p: torch.Tensor, alpha: float) -> None:
        """In place: p += alpha * z (z the draw for p)."""
        flat = local_flat(p)
        for a, b, z in self.chunks(p):
            flat[a:b].add_(z, alpha=alpha)


def flat_view(p: torch.Tensor) -> torch.Tensor:
    if not p.is_contiguous():
        raise ValueError("zeroth-order / smoothing optimizers need contiguous parameters")
    return p.view(-1)


def _is_dtensor(p: torch.Tensor) -> bool:
    return type(p).__name__ == "DTensor"  # no torch.distributed import for plain tensors


def shard_of(p: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(local flat view, offset)``: this rank's piece of ``p`` flattened and where it starts in the
    flattened whole tensor. A plain tensor is its own piece at offset 0; a DTensor must be sharded
    along dim 0 (FSDP2)."""
    if not _is_dtensor(p):
        return flat_view(p), 0
    import math as _math

    from torch.distributed.tensor import Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if p.dim() == 0 or any(not isinstance(pl, Shard) or pl.dim != 0 for pl in p.placements):
        raise ValueError(f"only dim-0 sharded DTensors (FSDP2) are supported, got {p.placements}")
    _, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    return flat_view(p.to_local()), int(offset[0]) * _math.prod(p.shape[1:])


def local_flat(p: torch.Tensor) -> torch.Tensor:
    """The flat view that a ZO update writes: ``p`` itself, or this rank's shard of a DTensor."""
    return shard_of(p)[0]


def normal_like(params: Sequence[torch.Tensor], seed: int, kind: str = "normal",
                dtype: torch.dtype | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(p, z)`` with ``z ~ N(0, I)`` (or Rademacher) shaped like ``p``, reproducible from
    ``seed``: the same draw that ``DirectionStream(seed, kind=kind)`` applies chunk by chunk
    (materialised here, for RS and tests), drawn in ``dtype`` (default ``p``'s). For a DTensor shard
    (FSDP2) ``z`` is a DTensor laid out as ``p``: this rank's slice of the whole draw, so every rank
    perturbs its shard as one process perturbs the whole weight."""
    stream = DirectionStream(seed, kind=kind)
    for p in params:
        if _is_dtensor(p):
            from torch.distributed.tensor import DTensor

            if dtype not in (None, p.dtype):
                raise ValueError("sharded weights draw their noise in their own dtype")
            local = p.to_local()
            z = torch.empty(local.numel(), dtype=local.dtype, device=local.device)
            for a, b, chunk in stream.chunks(p):
                z[a:b].copy_(chunk)
            yield p, DTensor.from_local(z.view_as(local), p.device_mesh, p.placements, run_check=False,
                                        shape=p.shape, stride=p.stride())
            continue
        z = torch.empty(p.numel(), dtype=dtype or p.dtype, device=p.device)
        for a, b, chunk in stream.chunks(z):
            z[a:b].copy_(chunk)
        yield p, z.view_as(p)


def direction_norm(params: Sequence[torch.Tensor], seed: int) -> float:
    """Euclidean norm, over all ``params`` together, of the Gaussian direction drawn from ``seed``."""
    stream = DirectionStream(seed)
    sums: dict[torch.device, torch.Tensor] = {}
    for p in params:
        dev = shard_of(p)[0].device
        acc = sums.setdefault(dev, torch.zeros((), dtype=torch.float64, device=dev))
        for _, _, z in stream.chunks(p):
            zz = z if z.dtype == torch.float64 else z.float()
            acc += zz.pow(2).sum().double()
    if any(_is_dtensor(p) for p in params):  # each rank summed its shards: add them up
        import torch.distributed as dist

        for v in sums.values():
            dist.all_reduce(v)
    return math.sqrt(sum(float(v) for v in sums.values()))


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


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float | None) -> None:
    """Scale the gradients of ``params`` so that their joint Euclidean norm is at most ``max_norm``
    (torch's ``clip_grad_norm_``, as HF Trainer and SophiaG's loop call it; FSDP2 DTensor gradients
    included). ``max_norm`` 0 or None: nothing is done."""
    if not max_norm:
        return
    grads = [p for p in params if p.grad is not None]
    if grads:
        torch.nn.utils.clip_grad_norm_(grads, float(max_norm))


def closure_kwargs(closure: Callable, **kwargs) -> dict:
    """``kwargs`` when ``closure`` is the unlearning loop's (``train.loss_closure``, which takes
    ``part`` and ``clip``), else none of them (a plain ``closure(backward, gnb)``)."""
    return kwargs if getattr(closure, "takes_parts", False) else {}
