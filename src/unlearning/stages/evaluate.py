"""Stage evaluate: every metric of a model under each attack."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any, Iterator

from ..commands import KINDS, Stage, json_arg
from ..registry import attack as attack_entry
from ..registry import quantizations, stage_attack
from .common import forget_retain, write_json

log = logging.getLogger(__name__)


def score(model: Any, tok: Any, data_dir: str | Path, kind: str, params: dict, subject: str,
          relearned: list[str], items: dict[str, list[float]] | None = None,
          only: set[str] | None = None) -> dict[str, float]:
    """Every metric of the benchmark ``kind`` for one loaded model (0-100 scale; ``mink_auc`` 0-1).

    ``relearned`` are the forget texts the relearning attack trains on; forget metrics are also
    reported on the items they contain (``*_relearned``) and on the rest (``*_heldout``).
    ``items`` receives per-item values that a metric derived at aggregation needs (TOFU: the raw
    forget truth ratios, from which Forget Quality is computed against the retain model's).
    ``only`` names the metrics wanted (default all): a MUSE or WMDP metric not named is not computed
    (the calibration reads two); TOFU's come together and are filtered. The kind's scorer
    (``registry.BENCHMARK_KINDS``, eval/scorers.py) computes them.
    """
    from ..registry import benchmark_kind, resolve

    scorer = resolve(benchmark_kind(kind).scorer)
    seen = "\n".join(relearned)
    out: dict[str, float] = {}

    def split(name: str, items: list[dict], key: str, scores: list[float]) -> None:
        inside = [s for it, s in zip(items, scores) if it[key] in seen]
        outside = [s for it, s in zip(items, scores) if it[key] not in seen]
        if inside and outside:
            out[f"{name}_relearned"] = sum(inside) / len(inside)
            out[f"{name}_heldout"] = sum(outside) / len(outside)

    def wanted(name: str) -> bool:
        return only is None or name in only

    out.update(scorer(model, tok, data_dir, kind, params, subject, split, wanted,
                      items if only is None else None))
    if only is not None:  # a scorer may compute more than asked (TOFU's metrics come together)
        out = {k: v for k, v in out.items() if k.removesuffix("_relearned").removesuffix("_heldout") in only}
    return out


# Optimizer statistics of an unlearning run (stages/unlearn.py's run_metrics) reported with its
# unattacked evaluation; shares as percentages like the other metrics.
RUN_STATISTICS = {"sophia_unclipped": 100.0, "adazo_move_over_lr": 1.0}


def unlearning_info(model_dir: str | Path) -> dict:
    """The run record ``model_dir/unlearning.json`` of an unlearned model (empty for reference models)."""
    import json

    path = Path(model_dir) / "unlearning.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def run_statistics(info: dict) -> dict[str, float]:
    """``RUN_STATISTICS`` found in an unlearning record (``unlearning_info``)."""
    return {k: scale * float(info[k]) for k, scale in RUN_STATISTICS.items() if k in info}


def run_multiplier(info: dict) -> dict:
    """``{"lr_multiplier": x}``: the calibration multiplier of the run's learning rate, from its
    unlearning record; nothing for reference models (empty record)."""
    return {"lr_multiplier": float(info.get("lr_multiplier", 1.0))} if info else {}


# Where an evaluation job keeps its one copy of the model (a RAM-backed folder when the machine has
# one); UNLEARNING_STAGE_DIR overrides it (e.g. a node-local SSD).
def _stage_root() -> str | None:
    root = os.environ.get("UNLEARNING_STAGE_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    return root if root and os.access(root, os.W_OK) else None


@contextlib.contextmanager
def read_once(model_dir: str | Path, loads: int) -> Iterator[Path]:
    """The folder to load ``model_dir`` from when a job loads it ``loads`` times (unattacked, each
    quantization, the quantization-code count): with more than one load, its files are copied once
    into a local folder (``_stage_root``) and every load reads that copy, so the shared file system
    is read once per model and job (at 7B an evaluation read ~9 models' worth, 5 of them this one).
    The bytes are the same, so the scores are. Without a writable stage folder: ``model_dir``."""
    root = _stage_root() if loads > 1 and Path(model_dir).is_dir() else None
    if root is None:
        yield Path(model_dir)
        return
    with tempfile.TemporaryDirectory(prefix="unlearning-eval-", dir=root) as tmp:
        local = Path(tmp) / Path(model_dir).name
        shutil.copytree(model_dir, local)
        yield local


def evaluate(model_dir: str | Path, data_dir: str | Path, kind: str, attacks: list[str], meta: dict,
             params: dict, subject: str, relearn_fraction: float, out_dir: str | Path,
             relearn_root: str | Path | None = None, reference_dir: str | Path | None = None,
             only: list[str] | None = None) -> None:
    """Score one model under each attack and write ``out_dir/{attack}.json``.

    Quantization attacks load the weights through bitsandbytes; ``relearn{steps}`` attacks read the
    checkpoints under ``relearn_root``. With ``reference_dir`` (the target) each quantization attack
    also records ``qcode_change``, the percentage of quantization codes unlearning changed.
    ``only``: compute just these metrics (the calibration's criterion metrics), see ``score``.
    """
    from ..attacks.relearn import relearn_subset

    forget, _ = forget_retain(data_dir, kind)
    relearned = relearn_subset(forget, relearn_fraction)
    quants = [a for a in attacks if a in quantizations()]
    same = reference_dir is not None and Path(reference_dir).resolve() == Path(model_dir).resolve()
    loads = sum(stage_attack(a) is None for a in attacks) + bool(quants and reference_dir is not None and not same)
    with read_once(model_dir, loads) as local:
        _evaluate(local, model_dir, data_dir, kind, attacks, meta, params, subject, relearned, out_dir,
                  relearn_root, reference_dir, only, quants)


def _evaluate(local: Path, model_dir: str | Path, data_dir: str | Path, kind: str, attacks: list[str], meta: dict,
              params: dict, subject: str, relearned: list[str], out_dir: str | Path,
              relearn_root: str | Path | None, reference_dir: str | Path | None, only: list[str] | None,
              quants: list[str]) -> None:
    """evaluate()'s scoring, loading the model from ``local`` (its one copy, see ``read_once``)."""
    import math

    from ..attacks.quantization import qcode_changes
    from ..models import load_model, load_tokenizer
    from ..provenance import environment

    tok = load_tokenizer(local)
    # the target's own evaluation compares the model with itself (no code changes, nothing read)
    same = reference_dir is not None and Path(reference_dir).resolve() == Path(model_dir).resolve()
    qcodes = (qcode_changes(local if same else reference_dir, local, quants)
              if quants and reference_dir is not None else {})
    env = environment()
    info = unlearning_info(local)
    for attack in attacks:
        t0 = time.time()
        if stage_attack(attack) is not None:  # a checkpoint the attack's stage wrote (relearn{steps})
            if relearn_root is None:
                raise ValueError(f"attack {attack} needs the relearned checkpoints (relearn_root)")
            model = load_model(Path(relearn_root) / attack)
        else:  # as saved, or quantized at load (registry.ATTACKS)
            model = load_model(local, quant=attack if attack_entry(attack).quantization else None)
        items: dict[str, list[float]] = {}
        metrics = score(model, tok, data_dir, kind, params, subject, relearned, items,
                        only=set(only) if only else None)
        if attack == "none":
            metrics.update(run_statistics(info))
        if attack in qcodes:
            metrics["qcode_change"] = qcodes[attack]
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"non-finite metrics for {meta} under {attack}: {bad}")
        # No timings here: the same config and seed must give byte-identical JSON (Snakemake's
        # benchmark files record time). Per-item values (``items``) only where a benchmark has them.
        record = {**meta, "attack": attack, "metrics": metrics, "env": env, **run_multiplier(info)}
        if items:
            record["items"] = items
        write_json(Path(out_dir) / f"{attack}.json", record)
        log.info("%s %s: %s (%.1fs)", meta, attack, metrics, time.time() - t0)
        del model


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--attacks", nargs="+", required=True)
    p.add_argument("--meta", type=json_arg, required=True, help="benchmark/method/optimizer/grade/seed")
    p.add_argument("--params", type=json_arg, required=True, help="the evaluation config entry")
    p.add_argument("--subject", default="biology")
    p.add_argument("--relearn-fraction", type=float, required=True)
    p.add_argument("--relearned", default=None, help="folder holding relearn{steps}/ checkpoints")
    p.add_argument("--reference", default=None, help="target model, for qcode_change")
    p.add_argument("--metrics", nargs="+", default=None, help="compute only these metrics (default all)")
    p.add_argument("--out", required=True, help="folder receiving {attack}.json")


def _run(a: Namespace) -> None:
    evaluate(a.model, a.data, a.kind, a.attacks, a.meta, a.params, a.subject, a.relearn_fraction,
             a.out, relearn_root=a.relearned, reference_dir=a.reference, only=a.metrics)


STAGE = Stage(_arguments, _run, needs_torch=True)
