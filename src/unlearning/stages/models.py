"""Stage train_model: target and retrain models."""

from __future__ import annotations

import logging
import time
import zlib
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any

from ..commands import KINDS, Stage, json_arg
from .common import training_texts, write_json

log = logging.getLogger(__name__)


def train_model(data_dir: str | Path, kind: str, role: str, tokenizer_dir: str | Path, arch: dict,
                training: dict, source: str | None, out_dir: str | Path, evaluation: dict | None = None,
                subject: str = "biology") -> dict:
    """Train the target (forget + retain) or retrain (retain only) model, or copy it from ``source``.

    With knowledge levels for this kind (``training.until.levels``, see ``levels_for``) the kind's
    scorer (stages.evaluate.score, under ``evaluation``, the config's `evaluation` entry, on the
    questions the study scores) checks the model every ``until.check_every`` steps of its
    ``training_steps``-step schedule and at its end, and training stops at the first check that meets
    the levels. A round that ends without meeting them is followed by a fresh one, a new
    initialisation and batch order drawn from ``round_seed(seed, round)``, up to ``until.max_rounds``;
    then the round nearest the levels (``shortfall``) is kept and flagged ``levels_met: false``.
    ``training.bucket`` > 1 draws length-bucketed batches (train.bucketed_batches)."""
    from ..models import build_model, copy_model, device, load_tokenizer, save_model
    from ..train import fit_lm, seed_everything

    if source:  # a hub id or local folder: copied as it is (no loading, no dtype conversion)
        copy_model(source, out_dir, key=f"benchmarks.<bench>.{role}")
        return {"source": source}
    tok = load_tokenizer(tokenizer_dir)
    texts = training_texts(data_dir, kind, role)
    steps = training_steps(training, role, len(texts), len(training_texts(data_dir, kind, "target")))
    until = training.get("until") or {}
    levels = levels_for(kind, role, until.get("levels") or {})
    if levels and not evaluation:
        raise ValueError(f"training.until.levels {levels} need the evaluation entry (--evaluation) to be checked")
    checks: list[dict] = []
    t0, cpu0, total, best = time.time(), time.process_time(), 0, None
    for rnd in range(int(until.get("max_rounds", 1)) if levels else 1):
        seed = round_seed(training["seed"], rnd)
        seed_everything(seed)
        model = build_model(arch, len(tok), seed).to(device())

        def check(done: int, model: Any = model, rnd: int = rnd) -> bool:
            from .evaluate import score

            t, c = time.time(), time.process_time()
            metrics = score(model, tok, data_dir, kind, evaluation, subject, [],
                            only=set(levels_for(kind, "target", until.get("levels") or {})))
            checks.append({"round": rnd, "step": done, "metrics": metrics, "seconds": time.time() - t,
                           "cpu_seconds": time.process_time() - c})
            log.info("train[%s] round %d step %d: %s (levels %s; check %.1fs)", role, rnd, done, metrics, levels,
                     checks[-1]["seconds"])
            return meets(metrics, levels)

        trace = fit_lm(model, tok, texts, steps=steps, lr=training["lr"], batch_size=training["batch_size"],
                       max_len=arch["max_len"], seed=seed, warmup=training["warmup"], schedule=training["schedule"],
                       desc=f"train[{role}]", check=check if levels else None,
                       check_every=int(until.get("check_every", 0)), bucket=int(training.get("bucket", 1)))
        total += len(trace)
        reached = checks[-1]["metrics"] if levels else {}
        if best is None or shortfall(reached, levels) < best[0]:  # a tie keeps the earlier round
            best = (shortfall(reached, levels), rnd, model, trace, seed, reached)
        if not levels or meets(reached, levels):
            break
    _, kept, model, trace, seed, reached = best
    save_model(model, tok, out_dir)
    info = {"role": role, "documents": len(texts), "steps": len(trace), "round_steps": steps, "rounds": rnd + 1,
            "kept_round": kept, "model_seed": seed, "total_steps": total, "final_loss": trace[-1],
            "seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0}
    if levels:
        info.update(levels=levels, reached=reached, levels_met=meets(reached, levels), checks=checks)
        if not info["levels_met"]:
            log.warning("train[%s] seed %s: knowledge levels %s NOT met in %d rounds, %d steps (reached %s)",
                        role, training["seed"], levels, rnd + 1, total, reached)
    write_json(Path(out_dir) / "training.json", {**info, "loss": trace})
    return info


def round_seed(seed: int, rnd: int) -> int:
    """The seed of training round ``rnd`` (0-based) of a model with seed ``seed``: the seed itself in
    round 0, so a model that meets its levels there is the plain seed's; later rounds a fresh draw
    (a CRC32 of both, disjoint from the small study seeds in practice)."""
    return seed if rnd == 0 else zlib.crc32(f"{seed}:{rnd}".encode())


def levels_for(kind: str, role: str, levels: dict[str, float]) -> dict[str, float]:
    """The declared levels (``training.until.levels``, metric -> minimum) that ``role`` must meet on
    benchmark ``kind``: its registry criterion's forget and utility metrics for the target, the
    utility one only for the retrain model (it never sees the forget set, so its forget level stays
    low by design). Empty: no check, a fixed-step fit."""
    from ..registry import benchmark_kind

    forget, utility = benchmark_kind(kind).criterion
    wanted = (forget, utility) if role == "target" else (utility,)
    return {m: float(levels[m]) for m in wanted if m in levels}


def shortfall(metrics: dict[str, float], levels: dict[str, float]) -> float:
    """Points by which ``metrics`` fall short of ``levels``, summed over the levels (0: all met)."""
    return sum(max(0.0, v - metrics.get(m, float("-inf"))) for m, v in levels.items())


def meets(metrics: dict[str, float], levels: dict[str, float]) -> bool:
    """Whether every declared level is reached (a metric at its level counts)."""
    return all(metrics.get(m, float("-inf")) >= v for m, v in levels.items())


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
    p.add_argument("--evaluation", type=json_arg, default=None,
                   help="the evaluation config entry the knowledge levels are checked with")
    p.add_argument("--subject", default="biology", help="multiple-choice subject (WMDP)")
    p.add_argument("--out", required=True)


def _run(a: Namespace) -> None:
    train_model(a.data, a.kind, a.role, a.tokenizer, a.arch, a.training, a.source, a.out,
                evaluation=a.evaluation, subject=a.subject)


STAGE = Stage(_arguments, _run, needs_torch=True)
