"""Relearning attack: fine-tune the unlearned model on a small part of the forget set and keep a
checkpoint at each configured step count (one run serves every count)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence


def relearn_subset(forget_texts: Sequence[str], fraction: float) -> list[str]:
    """The part of the forget set that relearning trains on: its first ceil(fraction * n) records.

    Deterministic and shared with evaluation, which reports forget knowledge on this part and on the
    held-out rest separately (the held-out part is the informative one).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"relearn fraction must be in (0, 1], got {fraction}")
    n = max(1, math.ceil(fraction * len(forget_texts)))
    return list(forget_texts[:n])


def relearn(model: Any, tok: Any, texts: Sequence[str], *, steps: Sequence[int], lr: float,
            batch_size: int, max_len: int, seed: int, warmup: float, out_root: str | Path) -> list[float]:
    """Fine-tune on ``texts`` for max(steps) steps, saving ``out_root/relearn{s}`` after step s."""
    from ..models import save_model
    from ..train import fit_lm

    wanted = set(int(s) for s in steps)
    out_root = Path(out_root)

    def checkpoint(step: int) -> None:
        if step in wanted:
            save_model(model, tok, out_root / f"relearn{step}")

    return fit_lm(model, tok, texts, steps=max(wanted), lr=lr, batch_size=batch_size, max_len=max_len,
                  seed=seed, warmup=warmup, schedule="constant", desc="relearn", on_step=checkpoint)
