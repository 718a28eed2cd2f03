"""Stage unlearn: one method, one optimizer entry, one seed."""

from __future__ import annotations

import logging
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path

from ..commands import KINDS, Stage, json_arg
from ..data.chunking import examples, steps_per_epoch
from ..lr_schedule import warmup_steps
from ..registry import SEEDED_TYPES
from .common import forget_retain, write_json

log = logging.getLogger(__name__)


def unlearn(target_dir: str | Path, data_dir: str | Path, kind: str, method: dict, optimizer: dict,
            run: dict, out_dir: str | Path) -> dict:
    """Unlearn the forget set from the target with one method and one optimizer; save the model."""
    import copy
    import gc

    from .. import distributed
    from ..models import TRAIN_DTYPE, device, dtype_for, enable_checkpointing, load_model, load_tokenizer, save_model
    from ..objectives import build_objective
    from ..train import cache_reference, seed_everything, sharded_unlearn
    from ..train import unlearn as loop

    sharded = distributed.world_size() > 1  # launched by torchrun (the rule's `ranks`, docs/guides/clusters.md)
    if sharded:
        distributed.check_shardable(optimizer, optimizer.get("type", "?"))
    checkpointing = bool(run.get("activation_checkpointing", False))
    seed_everything(run["seed"])
    tok = load_tokenizer(target_dir)
    method = dict(method)
    lr_scale = float(method.pop("lr_scale", 1.0))
    objective = build_objective(method["objective"], {k: v for k, v in method.items() if k != "objective"})
    ref = None
    if sharded:  # rank 0 reads the weights once; each rank keeps its shards (model and reference)
        model, ref = distributed.load_sharded(target_dir, distributed.init(), ref=objective.needs_ref,
                                              checkpointing=checkpointing)
    else:
        dev = device()
        model = load_model(target_dir, dev=dev, dtype=TRAIN_DTYPE)  # fp32 masters (bf16 compute on CUDA)
        if checkpointing:
            enable_checkpointing(model)
    if objective.needs_ref and not sharded:
        # the frozen reference: on the CPU a copy (fp32, as before); on a GPU read again in bf16
        ref = (copy.deepcopy(model) if dev.type == "cpu" else load_model(target_dir, dev=dev, dtype=dtype_for(dev)))
        ref.eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    forget, retain = forget_retain(data_dir, kind)
    chunking = run.get("chunking", "truncate")
    n_examples = len(examples(tok, forget, run["max_len"], chunking))
    per_epoch = steps_per_epoch(n_examples, run["batch_size"])
    spec = dict(optimizer)
    steps = int(spec.pop("steps", unlearning_steps(run, per_epoch)))
    log.info("forget set: %d examples (%s chunking) -> %d steps per epoch at batch %d; %d steps",
             n_examples, chunking, per_epoch, run["batch_size"], steps)
    _seed_spec(spec, run["seed"])
    # the method's lr_scale, times the calibration grid's multiplier (workflow/rules/calibrate.smk)
    multiplier = float(run.get("lr_multiplier", 1.0))
    _scale_lr(spec, lr_scale * multiplier)
    t0 = time.time()
    kw = dict(objective=objective, opt_spec=spec, steps=steps, batch_size=run["batch_size"],
              max_len=run["max_len"], seed=run["seed"], chunking=chunking,
              warmup_steps=warmup_steps(run.get("warmup_epochs", 0), n_examples, run["batch_size"]),
              schedule=run.get("schedule", "constant"))
    # NPO: the reference's scores of every forget batch up front, then the reference freed before the
    # first step (train.cache_reference; RMU keeps its frozen model)
    if cache_reference(objective, ref, tok, forget, steps=steps, batch_size=run["batch_size"],
                       max_len=run["max_len"], seed=run["seed"], chunking=chunking, data_parallel=sharded):
        ref = None
        gc.collect()
    if sharded:
        trace, state = sharded_unlearn(model, ref, tok, forget, retain, sharded=True, **kw)
        if distributed.rank() != 0:
            return {}
        save_model(model, tok, out_dir, state_dict=state)
    else:
        trace = loop(model, tok, forget, retain, ref=ref, **kw)
        save_model(model, tok, out_dir)
    info = {"steps": steps, "steps_per_epoch": per_epoch, "epochs": steps / per_epoch, "chunking": chunking,
            "forget_examples": n_examples, "seconds": time.time() - t0, "final_loss": trace[-1]["loss"],
            **run_metrics(trace)}
    write_json(Path(out_dir) / "unlearning.json", {**info, "trace": trace, "method": method,
                                                    "optimizer": optimizer, "lr_multiplier": multiplier,
                                                    "optimizer_as_run": spec, "seed": run["seed"]})
    return info


def unlearning_steps(run: dict, per_epoch: int) -> int:
    """``run["epochs"]`` epochs over the forget examples when given (rounded to whole steps), else
    ``run["steps"]``."""
    if run.get("epochs") is not None:
        return max(1, round(float(run["epochs"]) * per_epoch))
    return int(run["steps"])


def run_metrics(trace: list[dict]) -> dict:
    """Per-run summaries of the optimizer statistics in the trace: ``sophia_unclipped``, the mean over
    Sophia's steps of the share of coordinates its clip left alone (SophiaG's win rate), and
    ``adazo_move_over_lr``, the mean over AdaZO's steps of its per-weight move divided by lr."""
    out = {}
    for key, name in (("unclipped", "sophia_unclipped"), ("move_over_lr", "adazo_move_over_lr")):
        values = [t[key] for t in trace if key in t]
        if values:
            out[name] = sum(values) / len(values)
    return out


# Optimizer types whose randomness is drawn from a `seed` hyperparameter (per-step seeds): the registry's.
_SEEDED = SEEDED_TYPES


def _scale_lr(spec: dict, scale: float) -> None:
    """Multiply the entry's learning rate(s) by the method's ``lr_scale`` (a hybrid's phases too)."""
    if "lr" in spec:
        spec["lr"] = spec["lr"] * scale
    for part in ("fo", "zo"):
        if isinstance(spec.get(part), dict):
            _scale_lr(spec[part], scale)


def _seed_spec(spec: dict, seed: int) -> None:
    """Give seeded optimizers (and a hybrid's phases) the run's seed unless the entry sets one."""
    if spec.get("type") in _SEEDED:
        spec.setdefault("seed", seed)
    for part in ("fo", "zo"):
        if isinstance(spec.get(part), dict):
            spec[part] = dict(spec[part])
            _seed_spec(spec[part], seed)


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--target", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--method", type=json_arg, required=True)
    p.add_argument("--optimizer", type=json_arg, required=True)
    p.add_argument("--run", type=json_arg, required=True, help="steps, batch_size, max_len, seed")
    p.add_argument("--out", required=True)


def _run(a: Namespace) -> None:
    unlearn(a.target, a.data, a.kind, a.method, a.optimizer, a.run, a.out)


STAGE = Stage(_arguments, _run, needs_torch=True)
