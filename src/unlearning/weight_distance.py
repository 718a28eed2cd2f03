"""How far apart two unlearned models are, measured against the target they both started from.

For models A and B unlearned from target T (same benchmark, method and seed, optimizers of different
grades), over every weight tensor the saved models share:

- ``rel_distance``: ||w_A - w_B|| / ||w_A - w_T||, the distance between the two solutions relative to
  how far A moved. 0 means B landed where A did; about sqrt(2) means unrelated moves of equal size.
  (A is the pair's higher grade, so the question reads "how far does the lower grade land from
  the higher grade's solution, in units of the higher grade's own move?")
- ``update_cosine``: cosine between the two updates w_A - w_T and w_B - w_T.
- ``identical_share``: share of weights that are bit-identical in A and B (weights neither moved
  count as identical; ``moved_share`` says how many moved at all in either model).

A grade that collapses onto another (e.g. Sophia clipping every coordinate, i.e. signAdam) shows as
a small ``rel_distance``, a cosine near 1 and a large ``identical_share``.

Weights are read from the models' safetensors files (no model is built); norms accumulate in
float64, one tensor at a time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from .models import read_weights
from .registry import GRADES

METRICS = ("rel_distance", "update_cosine", "identical_share", "moved_share")


def _pairs(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
           t: Mapping[str, torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    names = sorted(set(a) & set(b) & set(t))
    if not names:
        raise ValueError("the models share no weight tensor with the target")
    for n in names:
        if not (a[n].shape == b[n].shape == t[n].shape):
            raise ValueError(f"weight {n!r} has different shapes: {tuple(a[n].shape)}, {tuple(b[n].shape)}, "
                             f"{tuple(t[n].shape)}")
        yield a[n], b[n], t[n]


def distance(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
             target: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The metrics of the module docstring for weights ``a``, ``b`` (name -> tensor) and ``target``."""
    ab = aa = bb = dot = 0.0
    same = moved = total = 0
    for wa, wb, wt in _pairs(a, b, target):
        da, db = wa.double() - wt.double(), wb.double() - wt.double()
        ab += float((da - db).pow(2).sum())
        aa += float(da.pow(2).sum())
        bb += float(db.pow(2).sum())
        dot += float((da * db).sum())
        same += int(torch.eq(wa, wb).sum())
        moved += int((torch.ne(wa, wt) | torch.ne(wb, wt)).sum())
        total += wa.numel()
    nan = float("nan")
    return {
        "rel_distance": math.sqrt(ab) / math.sqrt(aa) if aa > 0 else nan,
        "update_cosine": dot / math.sqrt(aa * bb) if aa > 0 and bb > 0 else nan,
        "identical_share": same / total,
        "moved_share": moved / total,
    }


def model_distance(a_dir: str | Path, b_dir: str | Path, target_dir: str | Path) -> dict[str, float]:
    """``distance`` between two saved models and their target (folders written by ``save_pretrained``)."""
    return distance(read_weights(a_dir), read_weights(b_dir), read_weights(target_dir))


GRADE_ORDER = GRADES  # highest grade first


def grade_pairs(runs: Iterable[dict]) -> Iterator[tuple[dict, dict]]:
    """Pairs of runs with the same benchmark, method and seed and optimizers of different grades;
    each pair ordered (higher grade, lower grade) by GRADE_ORDER, then by optimizer name."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if r["grade"] not in GRADE_ORDER:
            raise ValueError(f"run {r['optimizer']!r}: unknown grade {r['grade']!r}")
        groups.setdefault((r["benchmark"], r["method"], r["seed"]), []).append(r)
    for key in sorted(groups, key=str):
        rs = sorted(groups[key], key=lambda r: (GRADE_ORDER.index(r["grade"]), r["optimizer"]))
        for i, ra in enumerate(rs):
            for rb in rs[i + 1:]:
                if ra["grade"] != rb["grade"]:
                    yield ra, rb
