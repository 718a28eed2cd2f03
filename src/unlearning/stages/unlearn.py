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
            run: dict, out_dir: str | Path, stop: dict | None = None, stop_reference: list[str] = ()) -> dict:
    """Unlearn the forget set from the target with one method and one optimizer; save the model.

    ``stop`` (an early-stopped calibration run, plan.StudyPlan.stop_params): run at most its
    ``budget`` steps, score the criterion's forget metrics every ``every`` steps and stop at the first
    check where each is at most its ceiling (the retrain model's level from the ``stop_reference``
    evaluations + margin, or the fixed threshold); the saved model is that check's state, and the
    record's ``early_stop`` holds every check, the stop step, ``reached`` and ``overshot``. When that
    check overshoots (every forget metric more than the margin below the retrain level) and the check
    before it was at step p < s - 1, the run is replayed from the start (``one_pass`` again: the
    same seed, a fresh model, objective, optimizer and batches) with a check at every step p+1..s, and
    stops at the first that meets every ceiling (s at the latest)."""
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
        if stop:
            raise ValueError("calibration.early_stop: not supported for a run sharded over several ranks "
                             "(the checks score the whole model on one process)")
    checkpointing = bool(run.get("activation_checkpointing", False))
    tok = load_tokenizer(target_dir)
    method = dict(method)
    lr_scale = float(method.pop("lr_scale", 1.0))
    forget, retain = forget_retain(data_dir, kind)
    chunking = run.get("chunking", "truncate")
    n_examples = len(examples(tok, forget, run["max_len"], chunking))
    per_epoch = steps_per_epoch(n_examples, run["batch_size"])
    spec = dict(optimizer)
    steps = int(spec.pop("steps", stop["budget"] if stop else unlearning_steps(run, per_epoch)))
    log.info("forget set: %d examples (%s chunking) -> %d steps per epoch at batch %d; %d steps",
             n_examples, chunking, per_epoch, run["batch_size"], steps)
    _seed_spec(spec, run["seed"])
    # the method's lr_scale, times the calibration grid's multiplier (workflow/rules/calibrate.smk)
    multiplier = float(run.get("lr_multiplier", 1.0))
    _scale_lr(spec, lr_scale * multiplier)
    t0 = time.time()
    kw = dict(opt_spec=spec, steps=steps, batch_size=run["batch_size"], max_len=run["max_len"],
              seed=run["seed"], chunking=chunking,
              warmup_steps=warmup_steps(run.get("warmup_epochs", 0), n_examples, run["batch_size"]),
              schedule=run.get("schedule", "constant"))
    stopper = None
    if stop:
        stopper = EarlyStop(stop, stop_reference, kind, tok, data_dir)
        if kw["warmup_steps"] or kw["schedule"] != "constant" or spec.get("type") == "hybrid":
            log.warning("early stopping: the learning-rate schedule (warmup %d, %s) and a hybrid's phases "
                        "span the budget of %d steps; a run that stops at step k keeps that layout's first "
                        "k steps (not a k-step schedule)", kw["warmup_steps"], kw["schedule"], steps)

    def one_pass(check_steps):
        """One run from the target, everything built afresh in the same order (the seed, the objective,
        the model and reference, NPO's reference scores; the loop its optimizer, schedule and batches),
        checked at ``check_steps`` when early-stopped. Returns the model, the trace and a sharded run's
        state dict."""
        seed_everything(run["seed"])
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
        checks = {}
        if stopper is not None:
            checks = dict(check_steps=check_steps, check=lambda step: stopper.check(model, step))
        # NPO: the reference's scores of every forget batch up front, then the reference freed before the
        # first step (train.cache_reference; RMU keeps its frozen model)
        if cache_reference(objective, ref, tok, forget, steps=steps, batch_size=run["batch_size"],
                           max_len=run["max_len"], seed=run["seed"], chunking=chunking, data_parallel=sharded):
            ref = None
            gc.collect()
        if sharded:
            trace, state = sharded_unlearn(model, ref, tok, forget, retain, sharded=True, objective=objective, **kw)
            return model, trace, state
        return model, loop(model, tok, forget, retain, ref=ref, objective=objective, **kw, **checks), None

    every = int(stop["every"]) if stop else 0
    model, trace, state = one_pass({*range(every, steps + 1, every), steps} if stop else None)
    replay = stopper.overshooting_stop() if stopper is not None else None
    if replay is not None:
        # the check interval jumped over the window retrain +- margin: run again from the start with a
        # check at every step after the previous check, and stop at the first that meets every ceiling
        p, s = replay
        log.info("early stop: the check at step %d overshoots (every forget metric more than the margin below "
                 "the retrain level) and the check before was at step %d; replaying from the start with a "
                 "check at every step %d-%d", s, p, p + 1, s)
        del model
        gc.collect()
        stopper.start_replay(s)
        model, trace, state = one_pass(set(range(p + 1, s + 1)))
        if stopper.replay_met:
            log.info("early stop: the replay stops at step %d (the first pass at %d)", len(trace), s)
        else:
            log.warning("early stop: no replayed check in steps %d-%d met every ceiling (a run that is not "
                        "deterministic?); keeping the replay's state at step %d", p + 1, s, s)
    if sharded:
        if distributed.rank() != 0:
            return {}
        save_model(model, tok, out_dir, state_dict=state)
    else:
        save_model(model, tok, out_dir)
    ran = len(trace)  # the budget, or the step an early-stopped run stopped at
    info = {"steps": ran, "steps_per_epoch": per_epoch, "epochs": ran / per_epoch, "chunking": chunking,
            "forget_examples": n_examples, "seconds": time.time() - t0, "final_loss": trace[-1]["loss"],
            **run_metrics(trace)}
    if stopper is not None:
        info["early_stop"] = stopper.record(model, steps, ran)
    write_json(Path(out_dir) / "unlearning.json", {**info, "trace": trace, "method": method,
                                                    "optimizer": optimizer, "lr_multiplier": multiplier,
                                                    "optimizer_as_run": spec, "seed": run["seed"]})
    return info


class EarlyStop:
    """The checks of one early-stopped run (``stop``: plan.StudyPlan.stop_params): each scores the
    criterion's forget metrics with the evaluation's own scorer (stages.evaluate.score, the study's
    questions and settings) and says whether every one is at most its ceiling."""

    def __init__(self, stop: dict, references: list[str], kind: str, tok, data_dir: str | Path):
        import json

        from .. import calibration as C

        self.stop, self.kind, self.tok, self.data_dir = stop, kind, tok, data_dir
        self.names = C.forget_metrics(kind)
        records = [json.loads(Path(p).read_text(encoding="utf-8"))["metrics"] for p in references]
        missing = [f"{p}: {n}" for p, r in zip(references, records) for n in self.names if n not in r]
        if missing:
            raise ValueError(f"early stop: no retrain level {missing[0]}")
        self.retrain = {n: sum(float(r[n]) for r in records) / len(records) if records else None
                        for n in self.names}
        self.ceilings = C.ceilings(stop, self.retrain, self.names)
        self.checks: list[dict] = []
        self.first: dict | None = None  # the check the run stopped at: the first that met every ceiling
        self.refined_from: int | None = None  # a replayed run's first-pass stop (start_replay)
        self.replay_met: bool | None = None  # whether a replayed check met every ceiling (None: no replay)

    def _score(self, model, names) -> dict[str, float]:
        from .evaluate import score

        return score(model, self.tok, self.data_dir, self.kind, self.stop["evaluation"], self.stop["subject"],
                     [], only=set(names))

    def check(self, model, step: int) -> bool:
        from .. import calibration as C

        t0 = time.time()
        levels = {n: v for n, v in self._score(model, self.names).items() if n in self.names}
        self.checks.append({"step": step, **levels, "seconds": round(time.time() - t0, 3)})
        if self.refined_from is not None:
            self.checks[-1]["replay"] = True
        log.info("early stop check at step %d%s: %s (ceilings %s)", step,
                 " (replay)" if self.refined_from is not None else "", levels, self.ceilings)
        if C.meets(levels, self.ceilings):
            self.first = self.checks[-1]
            self.replay_met = True if self.refined_from is not None else None
            return True
        # a replay stops at the first pass's step at the latest (its state kept, replay_met False)
        return self.refined_from is not None and step >= self.refined_from

    def overshooting_stop(self) -> tuple[int, int] | None:
        """``(p, s)`` when the run stopped at a check (step ``s``) that overshoots (calibration.overshoots)
        and the check before it was at step ``p < s - 1`` (0: none), so a step in between may meet the
        ceilings closer to the retrain level; else None (and after a replay)."""
        from .. import calibration as C

        if self.first is None or self.refined_from is not None:
            return None
        if not C.overshoots({n: self.first[n] for n in self.names}, self.stop, self.retrain):
            return None
        s = int(self.first["step"])
        p = max((int(c["step"]) for c in self.checks if c["step"] < s), default=0)
        return (p, s) if p < s - 1 else None

    def start_replay(self, s: int) -> None:
        """The checks that follow are a replay of the run whose check at step ``s`` overshot: marked
        ``replay``, and the one at ``s`` stops the replay whether or not it meets the ceilings."""
        self.refined_from, self.replay_met = s, False

    def record(self, model, budget: int, ran: int) -> dict:
        """The run's ``early_stop`` record: settings, ceilings, every check (a replay's marked
        ``replay``), where it stopped (``stop_step``; a replayed run's ``refined_from`` the first pass's
        overshooting step and ``replay_met`` whether a replayed check met every ceiling), and the
        criterion's metrics at the saved state (its last check's forget levels and its utility, so no
        separate calibration evaluation is needed); ``overshot`` is judged there."""
        import torch

        from .. import calibration as C

        last = self.checks[-1]
        with torch.no_grad():
            utility = self._score(model, [C.utility_metric(self.kind)])
        levels = {n: last[n] for n in self.names}
        return {
            "every": int(self.stop["every"]), "budget": budget, "criterion": self.stop["criterion"],
            "margin": self.stop.get("margin"), "retrain": self.retrain, "ceilings": self.ceilings,
            "checks": self.checks, "reached": self.first is not None,
            "stop_step": ran if self.first is not None else None,
            "refined_from": self.refined_from, "replay_met": self.replay_met,
            "overshot": self.first is not None and C.overshoots(levels, self.stop, self.retrain),
            "excess": C.excess(levels, self.ceilings),
            "metrics": {**levels, **utility},
        }


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
    p.add_argument("--stop", type=json_arg, default=None,
                   help="early stopping (every, budget, criterion, margin/threshold, evaluation, subject)")
    p.add_argument("--stop-reference", nargs="*", default=[],
                   help="the retrain model's unattacked evaluations (the level the checks stop at)")
    p.add_argument("--out", required=True)


def _run(a: Namespace) -> None:
    unlearn(a.target, a.data, a.kind, a.method, a.optimizer, a.run, a.out, stop=a.stop,
            stop_reference=a.stop_reference)


STAGE = Stage(_arguments, _run, needs_torch=True)
