"""Stage train_model: target and retrain models."""

from __future__ import annotations

import time
from argparse import ArgumentParser, Namespace
from pathlib import Path

from ..commands import KINDS, Stage, json_arg
from .common import training_texts, write_json


def train_model(data_dir: str | Path, kind: str, role: str, tokenizer_dir: str | Path, arch: dict,
                training: dict, source: str | None, out_dir: str | Path) -> dict:
    """Train the target (forget + retain) or retrain (retain only) model, or copy it from ``source``."""
    from ..models import build_model, copy_model, device, load_tokenizer, save_model
    from ..train import fit_lm, seed_everything

    if source:  # a hub id or local folder: copied as it is (no loading, no dtype conversion)
        copy_model(source, out_dir, key=f"benchmarks.<bench>.{role}")
        return {"source": source}
    tok = load_tokenizer(tokenizer_dir)
    seed_everything(training["seed"])
    model = build_model(arch, len(tok), training["seed"]).to(device())
    texts = training_texts(data_dir, kind, role)
    steps = training_steps(training, role, len(texts), len(training_texts(data_dir, kind, "target")))
    t0 = time.time()
    trace = fit_lm(model, tok, texts, steps=steps, lr=training["lr"],
                   batch_size=training["batch_size"], max_len=arch["max_len"], seed=training["seed"],
                   warmup=training["warmup"], schedule=training["schedule"], desc=f"train[{role}]")
    save_model(model, tok, out_dir)
    info = {"role": role, "documents": len(texts), "steps": steps, "final_loss": trace[-1],
            "seconds": time.time() - t0}
    write_json(Path(out_dir) / "training.json", {**info, "loss": trace})
    return info


def training_steps(training: dict, role: str, n_docs: int, n_target_docs: int) -> int:
    """Steps for ``role``: ``training.steps`` for the target; for the retrain model the same number
    of epochs over its smaller corpus under ``retrain_steps: same_epochs`` (the schema default)."""
    steps = int(training["steps"])
    if role == "retrain" and training["retrain_steps"] == "same_epochs":
        return max(1, round(steps * n_docs / n_target_docs))
    return steps


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--role", required=True, choices=["target", "retrain"])
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--arch", type=json_arg, required=True)
    p.add_argument("--training", type=json_arg, required=True)
    p.add_argument("--source", default=None, help="hub id or local folder to copy instead of training")
    p.add_argument("--out", required=True)


def _run(a: Namespace) -> None:
    train_model(a.data, a.kind, a.role, a.tokenizer, a.arch, a.training, a.source, a.out)


STAGE = Stage(_arguments, _run, needs_torch=True)
