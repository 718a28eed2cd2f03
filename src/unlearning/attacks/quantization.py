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

from ..models import read_weights
from ..registry import resolve
from .lowbit import quantized


def codes(weight: torch.Tensor, quant: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """The integer codes stored for ``weight`` under quantization ``quant``, computed on ``device``
    by the function its registry entry names (``registry.ATTACKS[quant].codes``)."""
    from ..registry import attack, quantizations

    if quant not in quantizations():
        raise ValueError(f"unknown quantization {quant!r}; expected one of {quantizations()}")
    return resolve(attack(quant).codes)(weight.detach().to(device=device, dtype=torch.float32), quant)


def int8_codes(w: torch.Tensor, quant: str) -> torch.Tensor:
    """LLM.int8's row-wise absmax codes (outlier decomposition happens at matmul time, not in the
    stored codes)."""
    absmax = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.round(w / absmax * 127).to(torch.int8)


def four_bit_codes(w: torch.Tensor, quant: str) -> torch.Tensor:
    """bitsandbytes' 4-bit codes of ``quant`` (fp4, nf4): blockwise (64) absmax quantization, two codes
    per byte, unpacked here (bitsandbytes has CUDA kernels for it; the codes are the same)."""
    import bitsandbytes.functional as F

    packed, _ = F.quantize_4bit(w, blocksize=64, quant_type=quant)
    packed = packed.flatten()
    return torch.stack([packed >> 4, packed & 0xF], dim=1).flatten()[: w.numel()]


def qcode_changes(reference_dir: str | Path, model_dir: str | Path, quants: Sequence[str],
                  device: torch.device | str | None = None, threads: int | None = None) -> dict[str, float]:
    """Percentage of quantization codes that differ between two models' quantized linear weights,
    for each of ``quants``; both models' weights are read once.

    A model compared with itself (the target's own evaluation) changes no code: 0, without reading
    anything. ``device``: where the codes are computed, CUDA when available by default (single-threaded
    on the CPU this took 2.6 s (fp4), 0.55 s (nf4), 0.18 s (int8) per 16.8M weights, ~43 min per 7B
    evaluation job; issue 16). ``threads``: torch CPU threads while computing on the CPU (the job's).
    """
    if Path(reference_dir).resolve() == Path(model_dir).resolve():
        return {q: 0.0 for q in quants}
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    before = torch.get_num_threads()
    if threads and dev.type == "cpu":
        torch.set_num_threads(int(threads))
    try:
        return _count_changes(reference_dir, model_dir, quants, dev)
    finally:
        torch.set_num_threads(before)


def _count_changes(reference_dir, model_dir, quants, dev) -> dict[str, float]:
    from ..registry import attack

    ref, new = read_weights(reference_dir), read_weights(model_dir)
    # the linear weights transformers quantizes; with an entry's `embeddings` also embed_tokens and lm_head
    embeddings = {q: bool(attack(q).settings.get("embeddings")) for q in quants}
    changed = {q: 0 for q in quants}
    total = {q: 0 for q in quants}
    for name, w in ref.items():
        counted = [q for q in quants if quantized(name, embeddings[q])]
        if not counted:
            continue
        if name not in new or new[name].shape != w.shape:
            raise ValueError(f"{model_dir}: weight {name} missing or of another shape than in {reference_dir}")
        for q in counted:
            changed[q] += int((codes(w, q, dev) != codes(new[name], q, dev)).sum())
            total[q] += w.numel()
    if not all(total.values()):
        raise ValueError(f"{reference_dir}: no quantizable linear weights found")
    return {q: 100.0 * n / total[q] for q, n in changed.items()}


def qcode_change(reference_dir: str | Path, model_dir: str | Path, quant: str) -> float:
    """Percentage of ``quant`` codes that differ between two models (see ``qcode_changes``)."""
    return qcode_changes(reference_dir, model_dir, [quant])[quant]
