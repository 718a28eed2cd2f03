"""Relearning attack: fine-tune the unlearned model on (part of) the forget set and keep a model at
each configured step count.

A learning-rate schedule that depends on the total (cosine decay, a warmup given as a share of the
steps) makes "step s of a 150-step run" a different model from "a 100-step run", so then each count
is its own run from the unlearned model (the lab's protocol: a separate run per step count); with a
constant rate and no warmup they are the same thing and one run saves a checkpoint at each count.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


def relearn_subset(forget_texts: Sequence[str], fraction: float) -> list[str]:
    """The part of the forget set that relearning trains on: its first ceil(fraction * n) records.

    Deterministic and shared with evaluation, which reports forget knowledge on this part and on the
    held-out rest separately (the held-out part is the informative one).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"relearn fraction must be in (0, 1], got {fraction}")
    n = max(1, math.ceil(fraction * len(forget_texts)))
    return list(forget_texts[:n])


def one_run_serves_all(schedule: str, warmup: float) -> bool:
    """Whether checkpoints of one run equal separate runs per step count: constant rate, no warmup."""
    return schedule == "constant" and warmup == 0


def relearn(load: Callable[[], Any], tok: Any, texts: Sequence[str], *, steps: Sequence[int], lr: float,
            batch_size: int, max_len: int, seed: int, warmup: float, out_root: str | Path,
            schedule: str = "constant", chunking: str = "truncate",
            save: Callable[[Any, Path], None] | None = None, data_parallel: bool = False) -> dict[int, list[float]]:
    """Relearn on ``texts`` and save ``out_root/relearn{s}`` for every ``s`` in ``steps``.

    ``load()`` returns a fresh copy of the unlearned model; ``save(model, folder)`` writes one
    (default: ``models.save_model`` with ``tok``; a sharded run gathers the shards there). Runs are
    independent per step count unless ``one_run_serves_all``; every run draws the same batches
    (``seed``); ``data_parallel``: each torchrun rank trains on its share (``train.fit_lm``). Returns
    the loss trace of each saved step count.
    """
    from ..models import save_model
    from ..train import fit_lm

    if save is None:
        def save(model: Any, folder: Path) -> None:
            save_model(model, tok, folder)

    wanted = sorted(set(int(s) for s in steps))
    out_root = Path(out_root)
    common = dict(lr=lr, batch_size=batch_size, max_len=max_len, seed=seed, warmup=warmup,
                  schedule=schedule, chunking=chunking, data_parallel=data_parallel)
    log.info("relearning on %d texts (%s chunking), %s schedule, warmup %g: %s", len(texts), chunking, schedule,
             warmup, "checkpoints of one run" if one_run_serves_all(schedule, warmup) else "a run per step count")
    if one_run_serves_all(schedule, warmup):
        shared = load()

        def checkpoint(step: int) -> None:
            if step in wanted:
                save(shared, out_root / f"relearn{step}")

        trace = fit_lm(shared, tok, texts, steps=wanted[-1], desc="relearn", on_step=checkpoint, **common)
        return {s: trace[:s] for s in wanted}
    traces = {}
    for s in wanted:
        log.info("relearn%d: a run of its own from the unlearned model", s)
        model = load()
        traces[s] = fit_lm(model, tok, texts, steps=s, desc=f"relearn{s}", **common)
        save(model, out_root / f"relearn{s}")
        del model
    return traces
