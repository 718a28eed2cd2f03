"""Low-bit weight quantizers from libraries, applied to a loaded model: each chosen weight is replaced by
the library's dequantized values (what its quantized layer multiplies with), so evaluation runs the
ordinary model code on the CPU.

Two libraries, one function each giving a weight's codes and its dequantized values:

- ``torchao`` (PyTorch's own quantization library): ``IntxUnpackedToInt8Tensor.from_hp``, the tensor its
  ``IntxWeightOnlyConfig`` builds, 1-8 bits, groups of ``group_size`` along each row, asymmetric
  min-max (``affine``) or HQQ's scale search (``hqq_scale_only``). Chosen over HQQ (sdist only, whose
  install runs a CUDA kernel build) and optimum-quanto (compiles its C++ extension at first use; in
  maintenance) because it is a wheel with no dependencies beside torch and quantizes on the CPU in
  plain PyTorch.
- ``bitsandbytes``: ``functional.quantize_4bit`` / ``dequantize_4bit`` (fp4, nf4) with any of its block
  sizes; the loaded 4-bit layers (``load_in_4bit``) always use 64.

``embeddings``: also quantize ``embed_tokens`` and ``lm_head`` (transformers' bitsandbytes loading never
does), as a 7B model effectively is (there they are ~3% of the weights, here 23.5%).
"""

from __future__ import annotations

import torch

# The linear weights transformers' bitsandbytes loading quantizes in a Llama (every nn.Linear but lm_head),
# and the two matrices it leaves in full precision.
LINEAR = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
          "gate_proj.weight", "up_proj.weight", "down_proj.weight")
EMBEDDINGS = ("embed_tokens.weight", "lm_head.weight")


def quantized(name: str, embeddings: bool = False) -> bool:
    """Whether the weight ``name`` is quantized (the linear layers, with ``embeddings`` also those two)."""
    return name.endswith(LINEAR + EMBEDDINGS if embeddings else LINEAR)


def quantize(w: torch.Tensor, library: str, **settings) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, dequantized)`` of one 2-D float weight under ``library`` with its ``settings`` (those of a
    registry entry, ``embeddings`` aside); the dequantized weight has ``w``'s shape, in float32."""
    w = w.detach().to(torch.float32)
    if library == "torchao":
        return _torchao(w, **settings)
    if library == "bitsandbytes":
        return _bitsandbytes(w, **settings)
    raise ValueError(f"unknown quantization library {library!r}; expected torchao or bitsandbytes")


def _torchao(w: torch.Tensor, bits: int, group_size: int, algorithm: str = "affine"):
    from torchao.quantization.quant_primitives import MappingType
    from torchao.quantization.quantize_.workflows.intx.intx_choose_qparams_algorithm import (
        IntxChooseQParamsAlgorithm,
    )
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
        IntxUnpackedToInt8Tensor,
    )

    if w.shape[-1] % group_size:
        raise ValueError(f"torchao: group_size {group_size} does not divide a row of {w.shape[-1]} weights")
    t = IntxUnpackedToInt8Tensor.from_hp(w, (1, group_size), getattr(torch, f"int{bits}"),
                                         mapping_type=MappingType.ASYMMETRIC,
                                         intx_choose_qparams_algorithm=IntxChooseQParamsAlgorithm(algorithm))
    return t.qdata, t.dequantize().to(torch.float32)


def _bitsandbytes(w: torch.Tensor, quant_type: str, blocksize: int):
    import bitsandbytes.functional as F

    packed, state = F.quantize_4bit(w, blocksize=blocksize, quant_type=quant_type)
    flat = packed.flatten()  # two codes per byte, high nibble first
    codes = torch.stack([flat >> 4, flat & 0xF], dim=1).flatten()[: w.numel()].reshape(w.shape)
    return codes, F.dequantize_4bit(packed, state).to(torch.float32).reshape(w.shape)


def apply(model: torch.nn.Module, library: str, embeddings: bool = False, **settings) -> torch.nn.Module:
    """Replace each quantized weight of ``model`` (see ``quantized``) by its dequantized values, in place."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if quantized(name, embeddings):
                p.copy_(quantize(p, library, **settings)[1].to(p.dtype))
    return model


def codes(w: torch.Tensor, quant: str) -> torch.Tensor:
    """The codes stored for one float32 weight under registry attack ``quant`` (for qcode_change)."""
    from ..registry import attack

    settings = {k: v for k, v in attack(quant).settings.items() if k != "embeddings"}
    return quantize(w, **settings)[0]
