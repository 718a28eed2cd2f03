"""The unlearning loop's learning-rate schedule: warmup then constant or linear decay, as HF Trainer's
``get_linear_schedule_with_warmup`` (TOFU's and open-unlearning's unlearning recipe).

HF Trainer steps its scheduler after each optimizer step, so the update of 0-based step ``s`` uses
``lr * s / W`` during the ``W`` warmup steps (the first update has rate 0), then
``lr * (T - s) / (T - W)`` (linear) or ``lr`` (constant) up to the run's ``T`` steps.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

SCHEDULES = ("constant", "linear")


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the learning rate at 0-based ``step`` of ``total`` (see the module doc)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unlearning.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup:
        return step / warmup
    if schedule == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    return 1.0


def _groups(opt: Any) -> Iterator[dict]:
    """Every param group with a rate: the optimizer's and a hybrid's phase optimizers' (``fo``, ``zo``)."""
    for group in getattr(opt, "param_groups", []):
        if "lr" in group:
            yield group
    for part in ("fo", "zo"):
        inner = getattr(opt, part, None)
        if inner is not None and hasattr(inner, "param_groups"):
            yield from _groups(inner)


def scheduler(opt: Any, total: int, warmup: int = 0, schedule: str = "constant") -> Callable[[int], None] | None:
    """``set_step(s)`` that sets every group's rate to its initial rate times ``lr_factor(s, ...)``
    before step ``s``; None when the schedule is constant without warmup (the loop leaves rates alone)."""
    lr_factor(0, total, warmup, schedule)  # checks the name
    if warmup < 0:
        raise ValueError(f"warmup steps must be >= 0, got {warmup}")
    if warmup == 0 and schedule == "constant":
        return None
    groups = list(_groups(opt))
    base = [float(g["lr"]) for g in groups]

    def set_step(step: int) -> None:
        f = lr_factor(step, total, warmup, schedule)
        for g, lr in zip(groups, base):
            g["lr"] = lr * f

    return set_step


def warmup_steps(epochs: float, n_examples: int, batch_size: int) -> int:
    """Warmup steps for ``epochs`` epochs: ``int(epochs * n_examples / batch_size)``, at least 1 when
    asked for (TOFU's forget.py: ``max(1, len(data) // (batch x accumulation x devices))``)."""
    if not epochs:
        return 0
    return max(1, int(float(epochs) * n_examples / batch_size))
