"""Linear mode connectivity between unlearned solutions.

For a reference solution theta_ref (the config's ``report.reference_optimizer``, Adam by default) and
another optimizer's solution theta_other of the same benchmark, method and seed, the loss along the
straight line (1 - a) * theta_ref + a * theta_other, a in [0, 1], on the forget and the retain data.
Two solutions share a basin when the path has no barrier: the loss stays at or below the straight
line between its endpoint values. ``barrier`` measures the largest excess.
"""

from __future__ import annotations

import csv
import logging
import os
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .commands import KINDS, Stage, json_arg

log = logging.getLogger(__name__)

LMC_COLUMNS = ["benchmark", "method", "seed", "reference", "optimizer", "grade", "alpha", "split", "loss"]


def interpolate_state(ref: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor],
                      alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * ref + alpha * other for floating-point tensors (computed in fp32, cast back);
    integer buffers are taken from ``ref``. At alpha 0 and 1 the result equals an endpoint exactly."""
    if set(ref) != set(other):
        raise ValueError(f"state dicts differ in keys: {sorted(set(ref) ^ set(other))[:5]}")
    out = {}
    for k, a in ref.items():
        b = other[k]
        if a.shape != b.shape:
            raise ValueError(f"{k}: shapes differ ({tuple(a.shape)} vs {tuple(b.shape)})")
        if a.is_floating_point():
            if alpha == 0.0:
                out[k] = a.clone()
            elif alpha == 1.0:
                out[k] = b.to(a.dtype).clone()
            else:
                out[k] = ((1.0 - alpha) * a.float() + alpha * b.float().to(a.device)).to(a.dtype)
        else:
            out[k] = a.clone()
    return out


@torch.no_grad()
def mean_nll(model: Any, tok: Any, texts: Sequence[str], max_len: int, batch_size: int = 16) -> float:
    """Token-weighted mean negative log-likelihood (nats per predicted token) of ``texts``."""
    from .train import encode

    dev = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        batch = encode(tok, texts[i:i + batch_size], max_len, dev)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((labels != -100).sum())
    if count == 0:
        raise ValueError("no tokens to score")
    return total / count


def alphas(points: int) -> list[float]:
    """``points`` evenly spaced values from 0 to 1 inclusive (exact endpoints)."""
    if points < 2:
        raise ValueError("an interpolation path needs at least 2 points")
    return [0.0] + [i / (points - 1) for i in range(1, points - 1)] + [1.0]


def path_losses(model: Any, ref_state: Mapping[str, torch.Tensor], other_state: Mapping[str, torch.Tensor],
                tok: Any, texts: Mapping[str, Sequence[str]], points: int, max_len: int,
                batch_size: int = 16) -> list[dict]:
    """Loss on each split along the path; ``model`` is the module the weights are loaded into."""
    rows = []
    for a in alphas(points):
        model.load_state_dict(interpolate_state(ref_state, other_state, a))
        model.eval()
        for split, tx in texts.items():
            rows.append({"alpha": a, "split": split, "loss": mean_nll(model, tok, tx, max_len, batch_size)})
    return rows


def barrier(alpha: Sequence[float], loss: Sequence[float]) -> float:
    """Largest excess of the path's loss over the straight line between its endpoint losses."""
    pairs = sorted(zip(alpha, loss))
    (a0, l0), (a1, l1) = pairs[0], pairs[-1]
    return max(l - ((a1 - a) * l0 + (a - a0) * l1) / (a1 - a0) for a, l in pairs)


def lmc(models: Mapping[str, str | Path], reference: str, data_dir: str | Path, kind: str, meta: dict,
        points: int, max_texts: int, max_len: int, batch_size: int, out: str | Path) -> list[dict]:
    """Write the loss along the path from ``models[reference]`` to every other model to ``out`` (CSV).

    ``meta`` holds ``benchmark``, ``method``, ``seed`` and ``grades`` (optimizer -> grade).
    """
    from .data.io import document, load_split, read_template
    from .models import load_model, load_tokenizer
    from .registry import benchmark_kind

    if reference not in models:
        raise ValueError(f"reference optimizer {reference!r} not among the models: {sorted(models)}")
    others = [o for o in models if o != reference]
    texts = {}
    for split in ("forget", "retain"):
        recs = load_split(data_dir, kind, benchmark_kind(kind).roles[split])
        template = read_template(data_dir) if benchmark_kind(kind).qa_template else None
        texts[split] = [document(r, template) for r in (recs[:max_texts] if max_texts else recs)]
    tok = load_tokenizer(models[reference])
    model = load_model(models[reference])
    ref_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []
    for name in others:
        other = load_model(models[name])
        other_state = {k: v.detach().to(next(iter(ref_state.values())).device).clone()
                       for k, v in other.state_dict().items()}
        del other
        for r in path_losses(model, ref_state, other_state, tok, texts, points, max_len, batch_size):
            rows.append({"benchmark": meta["benchmark"], "method": meta["method"], "seed": meta["seed"],
                         "reference": reference, "optimizer": name,
                         "grade": meta.get("grades", {}).get(name, ""), **r})
        log.info("lmc %s -> %s: %s", reference, name,
                 ", ".join(f"{r['split']}@{r['alpha']:.1f}={r['loss']:.3f}" for r in rows[-len(texts) * points:]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=LMC_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)
    return rows


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True, help="optimizer=folder of each unlearned model")
    p.add_argument("--reference", required=True, help="optimizer whose solution anchors the paths")
    p.add_argument("--data", required=True)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--meta", type=json_arg, required=True, help="benchmark, method, seed, grades")
    p.add_argument("--points", type=int, default=11)
    p.add_argument("--max-texts", type=int, default=64, help="texts per split (0 = all)")
    p.add_argument("--max-len", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="CSV")


def _run(a: Namespace) -> None:
    models = dict(m.split("=", 1) for m in a.models)
    lmc(models, a.reference, a.data, a.kind, a.meta, a.points, a.max_texts, a.max_len, a.batch_size, a.out)


STAGE = Stage(_arguments, _run, needs_torch=True)
