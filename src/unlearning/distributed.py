"""Sharded, data-parallel training across the GPUs of one job: PyTorch FSDP2 (``fully_shard``) under
torchrun.

How a run is sharded. ``torchrun --nproc-per-node N unlearning unlearn ...`` starts N ranks; each
calls ``init()`` (NCCL on CUDA, gloo on the CPU) and ``load_sharded``: rank 0 reads the weights once
(fp32, on the host), every other rank builds the model on the meta device (no memory), every decoder
layer and then the whole model become FSDP2 modules whose parameters are DTensors sharded along dim 0,
and rank 0's weights are broadcast into the shards (``set_model_state_dict(broadcast_from_rank0)``).
So a node's host memory holds one model, not one per rank, and each rank holds 1/N of the weights,
gradients and optimizer states (ZeRO-3). The frozen NPO reference is built the same way from the same
host copy (kept in bf16 on CUDA: it is never updated). On CUDA the weights (and so every optimizer
state) stay fp32 and the forward/backward run in bf16 (``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)``): fp32 moments, bf16 compute, never bf16 moments. Activation checkpointing
(``models.enable_checkpointing``) is switched on before ``fully_shard`` when the config asks.

Data parallelism. Each rank takes its share of every global batch (``DataShare``: contiguous blocks of
the config's ``batch_size`` examples, sizes differing by at most one), scales its loss by its share
(``n_r * N / B``, so FSDP2's gradient average is the whole batch's gradient) and the loss values are
averaged over ranks (``DataShare.mean``), so zeroth-order projections and traces are the whole
batch's. N ranks therefore compute about 1/N of the batch each (a rank with no example when N > B
runs the first example at weight 0, keeping FSDP2's collectives in step). Means over examples (NPO's
and SimNPO's forget terms) are then the whole batch's; token means (``objectives.mean_nll``: gradient
ascent, GradDiff, every retain NLL) are too, each share carrying ``token_scale`` (its sum over the
whole batch's token count); RMU's activation means are weighted by examples, exact when the examples
have equal lengths (as data-parallel trainers, HF Trainer and open-unlearning, weight every term).
tests/test_distributed.py checks the update against one process with the whole batch (within 1e-5).
Relearning and fitting weight HF's token-mean loss by predicted tokens (exact). Sophia's
Gauss-Newton-Bartlett refresh (every k steps) runs on the whole forget batch on every rank (its
labels are sampled from the global RNG, which every rank keeps in step).

Per grade: elementwise optimizers step their DTensor shards. SAM's ascent direction uses the gradient
norm over every shard (an all-reduce); RS perturbs each shard with its slice of the whole noise draw,
regenerated from the step's seed on every rank (``optim._common.DirectionStream``, as zeroth-order
directions); bitsandbytes' 8-bit AdamW steps each rank's local shard (``LocalShards``: its block-wise
quantization blocks then start at the shard's first element, so its states match one process only
where a shard boundary falls on a block boundary, as it does for Llama shapes). Gradient clipping
(``max_grad_norm``) uses torch's ``clip_grad_norm_``, which sums over DTensor shards. FSDP2 keeps the
root's gathered weights after a forward (for the backward that usually follows); a forward without
grad (ZO) gives them back, so the next forward gathers the perturbed shards.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # torch is imported where used: the workflow checks check_shardable without it
    import torch

# grade/type -> why it cannot run sharded (one line each). Every type shards today; the check stays
# for a future type that cannot (the workflow refuses it before the job starts).
UNSHARDABLE: dict[str, str] = {}


def world_size() -> int:
    """Ranks of this job as torchrun announces them (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_shardable(spec: dict, name: str = "optimizer") -> None:
    """Raise ValueError (one line naming the config entry) when ``spec`` (or a hybrid's phase) cannot
    run sharded."""
    why = UNSHARDABLE.get(spec.get("type"))
    if why:
        raise ValueError(f"optimizers.{name}: type {spec['type']!r} cannot run sharded: {why}")
    for part in ("fo", "zo"):
        if isinstance(spec.get(part), dict):
            check_shardable(spec[part], f"{name}.{part}")


def init() -> torch.device:
    """Join the torchrun job: process group (NCCL on CUDA, gloo on the CPU); returns this rank's device."""
    import torch
    import torch.distributed as dist

    from .models import device

    if device().type == "cuda":  # a GPU job without CUDA fails here (models.NoCuda)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dev


def shard(model: torch.nn.Module, dev: torch.device, frozen: bool = False) -> torch.nn.Module:
    """Shard ``model`` in place with FSDP2: each decoder layer, then the root. On CUDA compute in bf16
    with fp32 weights and reductions; on the CPU all fp32. ``frozen`` (the NPO reference, never
    updated): its shards stay in the compute dtype, bf16 on CUDA (no fp32 copy needed)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # cast on the host; fully_shard moves each layer to the GPU as it shards it, so a GPU never holds
    # more than its shards plus one whole layer
    model.to(dtype=torch.bfloat16 if frozen and dev.type == "cuda" else torch.float32)
    kwargs: dict[str, Any] = {}
    if dev.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in _layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    # FSDP2 keeps the root's gathered weights (embeddings, head) after a forward, for the backward that
    # usually follows. A zeroth-order step runs forwards only and perturbs the shards in between, so
    # a forward without grad gives the gathered copy back, and the next one gathers the new shards.
    model.register_forward_hook(_reshard_after_inference)
    return model


def _reshard_after_inference(module, args, output) -> None:
    import torch

    if not torch.is_grad_enabled():
        module.reshard()


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"cannot shard {type(model).__name__}: no model.layers (a Llama-style decoder expected)")
    return list(layers)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole (unsharded) state dict on the CPU, on rank 0 (empty elsewhere): every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_initialized() -> bool:
    """Whether this process is a rank of an initialised torchrun job."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (``flag`` itself outside a torchrun job): ranks with
    different data agree on whether to run a collective (a forward of a sharded model)."""
    if not is_initialized():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _comm_device() -> torch.device:
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


class DataShare:
    """This rank's share of each global batch (data parallelism, module docstring).

    ``split(batch)`` returns ``(examples, weight)``: a contiguous block of ``batch`` (sizes differ by at
    most one between ranks) and ``n_r * N / B``, the factor on this rank's mean loss that makes FSDP2's
    gradient average the whole batch's; a rank with no example gets the first one at weight 0.
    ``mean(loss)`` averages a (weighted) loss value over the ranks."""

    def __init__(self, rank_: int | None = None, world: int | None = None):
        self.rank = rank() if rank_ is None else rank_
        self.world = world_size() if world is None else world

    def bounds(self, b: int) -> tuple[int, int]:
        """``[start, end)`` of this rank's block of a batch of ``b`` examples."""
        base, extra = divmod(b, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def split(self, batch: Sequence[Any]) -> tuple[list[Any], float]:
        start, end = self.bounds(len(batch))
        if end == start:
            return list(batch[:1]), 0.0
        return list(batch[start:end]), (end - start) * self.world / len(batch)

    def token_weight(self, local_tokens: int, total_tokens: int) -> float:
        """``N * T_r / T``: the factor on a token-mean loss over this rank's ``T_r`` predicted tokens
        that makes the ranks' average the whole batch's token mean (exact for HF's LM loss)."""
        return self.world * local_tokens / max(1, total_tokens)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of ``value`` over the ranks (every rank gets it)."""
        import torch
        import torch.distributed as dist

        t = value.detach().to(device=_comm_device(), dtype=torch.float64).reshape(1)
        dist.all_reduce(t)
        return (t / self.world).reshape(()).to(value.dtype).cpu()


def global_grad_norm(grads: Sequence[torch.Tensor]) -> float:
    """Euclidean norm of ``grads`` together, over every shard of sharded (DTensor) gradients."""
    import torch

    local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    sq = torch.zeros((), dtype=torch.float64, device=local[0].device if local else "cpu")
    for g in local:
        sq += g.float().pow(2).sum().double()
    if any(hasattr(g, "to_local") for g in grads):
        import torch.distributed as dist

        t = sq.to(_comm_device()).reshape(1)
        dist.all_reduce(t)
        sq = t.reshape(())
    return math.sqrt(float(sq))  # as SAM computed it before sharding (same bits)


class LocalShards:
    """An optimizer built on each rank's local shards of FSDP2 (DTensor) parameters: for optimizers
    that cannot step a DTensor (bitsandbytes' 8-bit AdamW). The proxies share the shards' storage, so
    the inner optimizer's in-place updates are the sharded weights' updates; gradients are handed over
    before each step. ``step(closure)`` runs the closure first, as torch optimizers do."""

    def __init__(self, params: Sequence[torch.Tensor], build):
        import torch

        self.params = list(params)
        self.proxies = [torch.nn.Parameter(p.to_local() if hasattr(p, "to_local") else p.data)
                        for p in self.params]
        self.inner = build(self.proxies)
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None
        self.inner.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        import torch

        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, q in zip(self.params, self.proxies):
            g = p.grad
            q.grad = None if g is None else (g.to_local() if hasattr(g, "to_local") else g)
        # the closure clipped the proxies, which had no gradient yet: clip here, over every shard
        max_norm = getattr(closure, "max_grad_norm", None)
        grads = [p.grad for p in self.params if p.grad is not None]
        if max_norm and grads:
            coef = float(max_norm) / (global_grad_norm(grads) + 1e-6)  # torch's clip_grad_norm_
            if coef < 1.0:
                for q in self.proxies:
                    if q.grad is not None:
                        q.grad.mul_(coef)
        self.inner.step()
        return loss


def _skeleton(model_dir: str | Path) -> Any:
    """The model's architecture on the meta device (no memory), from its config.json."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .cpu_linear import use_onednn_linear
    from .models import TRAIN_DTYPE, _is_local

    cfg = AutoConfig.from_pretrained(str(model_dir), local_files_only=_is_local(model_dir))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=TRAIN_DTYPE)
    use_onednn_linear(model)  # as load_model does on the CPU (a no-op for products run on a GPU)
    return model


def load_sharded(model_dir: str | Path, dev: torch.device, *, ref: bool = False,
                 checkpointing: bool = False) -> tuple[Any, Any]:
    """The model (fp32 shards, trainable) and, when ``ref``, the frozen NPO reference (shards in bf16 on
    CUDA) on this rank, from ``model_dir``: rank 0 reads the weights once into host memory and
    broadcasts them, one tensor at a time, into every rank's shards; the other ranks never hold more
    than their shards and one whole tensor. Returns ``(model, reference or None)``. ``checkpointing``:
    activation checkpointing, switched on before sharding."""
    import torch
    import torch.distributed as dist

    from .models import TRAIN_DTYPE, enable_checkpointing, load_model
    from .optim._common import shard_of

    host = load_model(model_dir, dev=torch.device("cpu"), dtype=TRAIN_DTYPE) if rank() == 0 else None
    # every tensor rank 0 has (parameters and buffers, persistent or not: rotary frequencies are in no
    # state dict), by name; the ranks check the names before any broadcast
    full = dict(host.named_parameters()) | dict(host.named_buffers()) if host is not None else {}
    names = [sorted(full)]
    dist.broadcast_object_list(names, src=0)

    def build(frozen: bool) -> Any:
        model = _skeleton(model_dir)
        if checkpointing and not frozen:
            enable_checkpointing(model)
        buffer_dtypes = {name: b.dtype for name, b in model.named_buffers()}
        mine = sorted(dict(model.named_parameters()) | dict(model.named_buffers()))
        if mine != names[0]:
            raise ValueError(f"{model_dir}: the weights' tensors are not the config's architecture's")
        shard(model, dev, frozen=frozen)
        model.to_empty(device=dev)
        with torch.no_grad():
            for name, p in model.named_parameters():
                t = full[name].detach().to(dev) if rank() == 0 else torch.empty(p.shape, dtype=TRAIN_DTYPE, device=dev)
                dist.broadcast(t, src=0)
                local, offset = shard_of(p)
                local.copy_(t.view(-1)[offset:offset + local.numel()])
            for name, _ in list(model.named_buffers()):
                owner, _, leaf = name.rpartition(".")
                module = model.get_submodule(owner) if owner else model
                kind = buffer_dtypes[name]  # as built (fp32 rotary frequencies), not the shards' dtype
                t = (full[name].to(dev, kind) if rank() == 0
                     else torch.empty(module._buffers[leaf].shape, dtype=kind, device=dev))
                dist.broadcast(t, src=0)
                module._buffers[leaf] = t
        if frozen:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
        return model

    model = build(False)
    reference = build(True) if ref else None
    return model, reference  # rank 0's host copy is freed here

