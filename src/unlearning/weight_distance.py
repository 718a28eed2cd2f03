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
float64, one tensor at a time. ``group_distances`` streams a group of models that share a target
(one benchmark, method and seed): each tensor of each model and of the target is read once, and the
per-model quantities (the update ``w - w_T`` in float64, its squared norm, which weights moved) are
computed once and shared by every pair of the group, instead of reading three models per pair (at
7B, ~270 pairs, 10.9 TB of reads; streamed, one read per model). Per pair the sums are the same
operations in the same order as ``distance``, so the numbers are bit-identical to it on the CPU.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

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


CHUNK = 1 << 24  # ours: 16.8M weights per block; the small studies' tensors are all smaller


class _Lazy:
    """A saved model's tensors by name, read one at a time from its safetensors shards (mmap)."""

    def __init__(self, model_dir: str | Path):
        from safetensors import safe_open

        files = sorted(Path(model_dir).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{model_dir}: no .safetensors weights")
        self.handles = [safe_open(str(f), framework="pt", device="cpu") for f in files]
        self.where = {k: h for h in self.handles for k in h.keys()}

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def shape(self, name: str) -> list[int]:
        return self.where[name].get_slice(name).get_shape()

    def get(self, name: str, rows: slice | None = None) -> torch.Tensor:
        """The tensor, or only its ``rows`` (read without the rest)."""
        h = self.where[name]
        return h.get_tensor(name) if rows is None else h.get_slice(name)[rows]


def group_distances(models: Sequence[str | Path], target_dir: str | Path,
                    pairs: Sequence[tuple[int, int]], device: str | torch.device = "cpu",
                    chunk: int = CHUNK) -> list[dict[str, float]]:
    """``distance`` for each pair ``(i, j)`` of ``models`` (indices; i is the pair's A), all unlearned
    from ``target_dir``, streaming: every tensor of every model is read once for the whole group.

    Per tensor name (sorted), the target's tensor and each model's are read (the next one in a
    background thread while this one is computed), each model's update is computed once, then each
    pair's sums. A tensor of more than ``chunk`` weights is read and summed in row blocks of at most
    ``chunk`` (memory per model: ``chunk`` x (8 + 1 + its bytes), ~190 MB for bf16). On the CPU and
    with no tensor above ``chunk`` the result equals ``model_distance`` per pair bit for bit; blocks
    (7B's embeddings and MLP) or a GPU sum in another order: equal to float64 rounding.
    """
    dev = torch.device(device)
    lazy = [_Lazy(m) for m in models]
    t = _Lazy(target_dir)
    used = sorted({i for pair in pairs for i in pair})
    names = sorted({n for i in used for n in lazy[i].where} & set(t.where))
    pair_names = {p: [n for n in names if n in lazy[p[0]] and n in lazy[p[1]]] for p in pairs}
    if not all(pair_names.values()):
        raise ValueError("the models share no weight tensor with the target")
    # per pair, as distance() sums them over the pair's shared tensors: ||dA - dB||^2, ||dA||^2,
    # ||dB||^2, <dA, dB>, identical, moved, total
    acc = {p: [0.0, 0.0, 0.0, 0.0, 0, 0, 0] for p in pairs}

    for name in names:
        shape = t.shape(name)
        for i in used:
            if name in lazy[i] and lazy[i].shape(name) != shape:
                raise ValueError(f"weight {name!r} has different shapes: {tuple(lazy[i].shape(name))} in "
                                 f"{models[i]}, {tuple(shape)} in {target_dir}")
    # pieces: (name, rows) with at most chunk elements each (a whole tensor when it is that small)
    pieces = []
    for name in names:
        shape = t.shape(name)
        n, rows = math.prod(shape), (shape[0] if shape else 1)
        step = rows if n <= chunk else max(1, chunk // max(1, n // rows))
        pieces += [(name, slice(r, min(rows, r + step)) if step < rows else None) for r in range(0, rows, step)]

    def read(piece: tuple) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        name, rows = piece
        return t.get(name, rows), {i: lazy[i].get(name, rows) for i in used if name in lazy[i]}

    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(read, pieces[0]) if pieces else None
        for k in range(len(pieces)):
            wt, ws = nxt.result()
            nxt = pool.submit(read, pieces[k + 1]) if k + 1 < len(pieces) else None
            wt = wt.to(dev)
            ws = {i: w.to(dev) for i, w in ws.items()}
            wt64 = wt.double()
            d = {i: w.double() - wt64 for i, w in ws.items()}  # per model, once
            sq = {i: float(x.pow(2).sum()) for i, x in d.items()}
            moved = {i: torch.ne(w, wt) for i, w in ws.items()}
            for (i, j), a in acc.items():
                if i not in d or j not in d:
                    continue
                a[0] += float((d[i] - d[j]).pow(2).sum())
                a[1] += sq[i]
                a[2] += sq[j]
                a[3] += float((d[i] * d[j]).sum())
                a[4] += int(torch.eq(ws[i], ws[j]).sum())
                a[5] += int((moved[i] | moved[j]).sum())
                a[6] += ws[i].numel()
            del d, moved, ws, wt, wt64
    nan = float("nan")
    out = []
    for p in pairs:
        ab, pa, pb, dot, same, mv, total = acc[p]
        out.append({
            "rel_distance": math.sqrt(ab) / math.sqrt(pa) if pa > 0 else nan,
            "update_cosine": dot / math.sqrt(pa * pb) if pa > 0 and pb > 0 else nan,
            "identical_share": same / total,
            "moved_share": mv / total,
        })
    return out


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
