"""Quantization attack: the model is loaded through bitsandbytes (see ``models.load_model``); this
module measures how many quantization codes unlearning actually changed.

Zhang et al. (ICLR 2025) explain the attack by unlearning moving most weights by less than one
quantization step, so that target and unlearned model share their codes. ``qcode_change`` measures
that directly: the percentage of codes that differ between the two models' quantized weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

# Weights that transformers quantizes in a Llama (every nn.Linear but lm_head).
_QUANTIZED_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                       "gate_proj.weight", "up_proj.weight", "down_proj.weight")


def _state(model_dir: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f), device="cpu"))
    return state


def codes(weight: torch.Tensor, quant: str) -> torch.Tensor:
    """The integer codes bitsandbytes stores for ``weight`` under ``quant`` (int8, fp4, nf4).

    4-bit: blockwise (64) absmax quantization, two codes per byte, unpacked here. int8: LLM.int8's
    row-wise absmax codes (outlier decomposition happens at matmul time, not in the stored codes).
    """
    w = weight.detach().float().cpu()
    if quant == "int8":
        absmax = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.round(w / absmax * 127).to(torch.int8)
    if quant in ("fp4", "nf4"):
        import bitsandbytes.functional as F

        packed, _ = F.quantize_4bit(w, blocksize=64, quant_type=quant)
        packed = packed.flatten()
        return torch.stack([packed >> 4, packed & 0xF], dim=1).flatten()[: w.numel()]
    raise ValueError(f"unknown quantization {quant!r}; expected int8, fp4 or nf4")


def qcode_changes(reference_dir: str | Path, model_dir: str | Path, quants: Sequence[str]) -> dict[str, float]:
    """Percentage of quantization codes that differ between two models' quantized linear weights,
    for each of ``quants``; both models' weights are read once."""
    ref, new = _state(reference_dir), _state(model_dir)
    changed = {q: 0 for q in quants}
    total = 0
    for name, w in ref.items():
        if not name.endswith(_QUANTIZED_SUFFIXES):
            continue
        if name not in new or new[name].shape != w.shape:
            raise ValueError(f"{model_dir}: weight {name} missing or of another shape than in {reference_dir}")
        for q in quants:
            changed[q] += int((codes(w, q) != codes(new[name], q)).sum())
        total += w.numel()
    if total == 0:
        raise ValueError(f"{reference_dir}: no quantizable linear weights found")
    return {q: 100.0 * n / total for q, n in changed.items()}


def qcode_change(reference_dir: str | Path, model_dir: str | Path, quant: str) -> float:
    """Percentage of ``quant`` codes that differ between two models (see ``qcode_changes``)."""
    return qcode_changes(reference_dir, model_dir, [quant])[quant]
