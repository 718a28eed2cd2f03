"""Sharded unlearning across the GPUs of one job: PyTorch FSDP2 (``fully_shard``) under torchrun.

How a run is sharded. ``torchrun --nproc-per-node N unlearning unlearn ...`` starts N ranks; each
calls ``init()`` (NCCL on CUDA, gloo on the CPU) and ``shard(model)``: every decoder layer, then the
whole model, becomes an FSDP2 module whose parameters are DTensors sharded along dim 0, so each rank
holds 1/N of the weights, gradients and optimizer states (ZeRO-3). The frozen NPO reference is
sharded the same way (kept in bf16 on CUDA: it is never updated). On CUDA the weights (and so every
optimizer state) stay fp32 and the forward/backward run in bf16
(``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``): fp32 moments, bf16 compute, never
bf16 moments.

Every rank sees the *same* forget and retain batches (model sharding, not data parallelism): the
gradient reduce-scatter averages identical gradients, so a sharded run computes what the
single-process run computes (tests/test_distributed.py checks losses and final weights). Zeroth-order
steps need no communication for their directions: every rank regenerates the direction of each
parameter from the step's seed and keeps the slice that falls in its shard
(``optim._common.DirectionStream``), so the perturbed model is the one a single process would build.

Optimizers that cannot step a DTensor shard are refused before the job starts (``check_shardable``,
``UNSHARDABLE``): AdamW8bit, SAM and RS; every other type matches the single-process run on two CPU
ranks (tests/test_distributed.py). FSDP2 keeps the root's gathered weights after a forward (for the
backward that usually follows); a forward without grad (ZO) gives them back, so the next forward
gathers the perturbed shards.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where used: the workflow checks check_shardable without it
    import torch

# grade/type -> why it cannot run sharded (one line each; the rest step DTensor shards elementwise)
UNSHARDABLE = {
    "adamw8bit": "bitsandbytes' 8-bit AdamW quantizes its states per whole tensor and cannot step FSDP "
                 "shards (DTensors); use adam/adamw, or one rank",
    # not supported yet (their code is not shard-aware); measured with tests/fsdp_worker.py, 2 ranks
    "sam": "its ascent step divides by the gradient norm over all weights, which each shard computes "
           "alone (weights 6e-3 off the single-process run after 3 steps); use one rank",
    "rs": "it draws its Gaussian noise for whole tensors, not per shard; use one rank",
}


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

    if torch.cuda.is_available():
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


def sharded_unlearn(model: torch.nn.Module, ref: torch.nn.Module | None, tok: Any, forget, retain, *,
                    objective: Any, opt_spec: dict, steps: int, batch_size: int, max_len: int,
                    seed: int, chunking: str = "truncate") -> tuple[list[dict], dict[str, torch.Tensor]]:
    """``train.unlearn`` on a model (and NPO reference) sharded over this torchrun job's ranks.

    Returns the trace and, on rank 0, the full state dict on the CPU (empty on other ranks). The
    caller writes outputs on rank 0 only.
    """
    from .train import unlearn

    check_shardable(opt_spec, opt_spec.get("type", "?"))
    dev = init()
    shard(model, dev)
    if ref is not None:
        shard(ref, dev, frozen=True)
    trace = unlearn(model, tok, forget, retain, objective=objective, opt_spec=opt_spec, steps=steps,
                    batch_size=batch_size, max_len=max_len, seed=seed, ref=ref, chunking=chunking)
    state = full_state_dict(model)
    return trace, (state if rank() == 0 else {})
