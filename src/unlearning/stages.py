"""The workflow's stages as plain functions: each reads its inputs, writes its outputs atomically, and
is exposed by ``python -m unlearning STAGE`` (cli.py) for one Snakemake rule."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .data.io import LAYOUT, ROLES, load_split

log = logging.getLogger(__name__)


def _write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _texts(data_dir: str | Path, kind: str, name: str) -> list[str]:
    return [r["text"] for r in load_split(data_dir, kind, name)]


def _forget_retain(data_dir: str | Path, kind: str) -> tuple[list[str], list[str]]:
    roles = ROLES[kind]
    return _texts(data_dir, kind, roles["forget"]), _texts(data_dir, kind, roles["retain"])


def training_texts(data_dir: str | Path, kind: str, role: str) -> list[str]:
    """Corpus a model is trained on: forget + all retain text (target) or retain only (retrain)."""
    forget, retain = _forget_retain(data_dir, kind)
    if kind == "muse":
        retain = retain + _texts(data_dir, kind, "raw/retain2.jsonl")
    if role == "target":
        return forget + retain
    if role == "retrain":
        return retain
    raise ValueError(f"unknown model role {role!r}; expected 'target' or 'retrain'")


# -------------------------------------------------------------------------------------------- data

def prepare_data(bench: dict, out_dir: str | Path, name: str | None = None) -> None:
    """Generate the synthetic benchmark or fetch the hub one into ``out_dir`` (atomically)."""
    import shutil

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    source = bench.get("source", "synthetic")
    if source == "synthetic":
        from .data.synthetic import generate

        generate(bench["kind"], tmp, seed=bench.get("seed", 0), **bench.get("shape", {}))
    else:
        from .data.hub import fetch

        fetch(bench["kind"], tmp, dataset=bench.get("dataset"),
              local_path=None if source == "hub" else source, name=name, **bench.get("data_options", {}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def train_tokenizer(data_dir: str | Path, kind: str, vocab_size: int, out_dir: str | Path) -> None:
    """Train the BPE tokenizer on every text field of the benchmark."""
    from .models import train_tokenizer as train

    texts: list[str] = []
    for name in LAYOUT[kind]:
        for rec in load_split(data_dir, kind, name):
            for key in ("text", "prompt", "gt", "question", "answer"):
                if isinstance(rec.get(key), str):
                    texts.append(rec[key])
            texts += [c for c in rec.get("choices", [])]
    train(texts, vocab_size, out_dir)


# ------------------------------------------------------------------------------------------ models

def train_model(data_dir: str | Path, kind: str, role: str, tokenizer_dir: str | Path, arch: dict,
                training: dict, source: str | None, out_dir: str | Path) -> dict:
    """Train the target (forget + retain) or retrain (retain only) model, or copy it from ``source``."""
    from .models import build_model, device, load_model, load_tokenizer, save_model
    from .train import fit_lm, seed_everything

    if source:  # a hub id or local folder: load it and save a local copy in our layout
        model = load_model(source)
        tok = load_tokenizer(source)
        save_model(model, tok, out_dir)
        return {"source": source}
    tok = load_tokenizer(tokenizer_dir)
    seed_everything(training["seed"])
    model = build_model(arch, len(tok), training["seed"]).to(device())
    texts = training_texts(data_dir, kind, role)
    t0 = time.time()
    trace = fit_lm(model, tok, texts, steps=training["steps"], lr=training["lr"],
                   batch_size=training["batch_size"], max_len=arch["max_len"], seed=training["seed"],
                   warmup=training["warmup"], schedule=training["schedule"], desc=f"train[{role}]")
    save_model(model, tok, out_dir)
    info = {"role": role, "documents": len(texts), "final_loss": trace[-1], "seconds": time.time() - t0}
    _write_json(Path(out_dir) / "training.json", {**info, "loss": trace})
    return info


# -------------------------------------------------------------------------------------- unlearning

def unlearn(target_dir: str | Path, data_dir: str | Path, kind: str, method: dict, optimizer: dict,
            run: dict, out_dir: str | Path) -> dict:
    """Unlearn the forget set from the target with one method and one optimizer; save the model."""
    import copy

    from .models import load_model, load_tokenizer, save_model
    from .objectives import build_objective
    from .train import seed_everything, unlearn as loop

    seed_everything(run["seed"])
    tok = load_tokenizer(target_dir)
    model = load_model(target_dir)
    objective = build_objective(method["objective"], {k: v for k, v in method.items() if k != "objective"})
    ref = None
    if objective.needs_ref:
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    forget, retain = _forget_retain(data_dir, kind)
    spec = dict(optimizer)
    steps = int(spec.pop("steps", run["steps"]))
    _seed_spec(spec, run["seed"])
    t0 = time.time()
    trace = loop(model, tok, forget, retain, objective=objective, opt_spec=spec, steps=steps,
                 batch_size=run["batch_size"], max_len=run["max_len"], seed=run["seed"], ref=ref)
    save_model(model, tok, out_dir)
    info = {"steps": steps, "seconds": time.time() - t0, "final_loss": trace[-1]["loss"]}
    _write_json(Path(out_dir) / "unlearning.json", {**info, "trace": trace, "method": method,
                                                    "optimizer": optimizer, "seed": run["seed"]})
    return info


# Optimizer types whose randomness is drawn from a `seed` hyperparameter (per-step seeds).
_SEEDED = {"zo_sgd", "adazo", "rs"}


def _seed_spec(spec: dict, seed: int) -> None:
    """Give seeded optimizers (and a hybrid's phases) the run's seed unless the entry sets one."""
    if spec.get("type") in _SEEDED:
        spec.setdefault("seed", seed)
    for part in ("fo", "zo"):
        if isinstance(spec.get(part), dict):
            spec[part] = dict(spec[part])
            _seed_spec(spec[part], seed)


def relearn(model_dir: str | Path, data_dir: str | Path, kind: str, params: dict, seed: int,
            max_len: int, out_root: str | Path) -> None:
    """Relearning attack on one unlearned model: a checkpoint per configured step count."""
    from .attacks.relearn import relearn as attack, relearn_subset
    from .models import load_model, load_tokenizer
    from .train import seed_everything

    seed_everything(seed)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir)
    forget, _ = _forget_retain(data_dir, kind)
    texts = relearn_subset(forget, params["fraction"])
    attack(model, tok, texts, steps=params["steps"], lr=params["lr"], batch_size=params["batch_size"],
           max_len=max_len, seed=seed, warmup=params["warmup"], out_root=out_root)


# -------------------------------------------------------------------------------------- evaluation

def _cap(records: list, n: int) -> list:
    return records[:n] if n else records


def score(model: Any, tok: Any, data_dir: str | Path, kind: str, params: dict, subject: str,
          relearned: list[str]) -> dict[str, float]:
    """Every metric of the benchmark ``kind`` for one loaded model (0-100 scale; ``mink_auc`` 0-1).

    ``relearned`` are the forget texts the relearning attack trains on; forget metrics are also
    reported on the items they contain (``*_relearned``) and on the rest (``*_heldout``).
    """
    from . import eval as E

    bs, cap = params["batch_size"], params["max_questions"]
    seen = "\n".join(relearned)
    out: dict[str, float] = {}

    def split(name: str, items: list[dict], key: str, scores: list[float]) -> None:
        inside = [s for it, s in zip(items, scores) if it[key] in seen]
        outside = [s for it, s in zip(items, scores) if it[key] not in seen]
        if inside and outside:
            out[f"{name}_relearned"] = sum(inside) / len(inside)
            out[f"{name}_heldout"] = sum(outside) / len(outside)

    if kind == "muse":
        vm = _cap(load_split(data_dir, kind, "verbmem/forget.jsonl"), cap)
        vm_scores = E.verbmem_scores(model, tok, vm, max_new_tokens=params["verbmem_max_new_tokens"],
                                     batch_size=bs)
        out["verbmem_f"] = sum(vm_scores) / len(vm_scores)
        split("verbmem_f", vm, "prompt", vm_scores)
        for which in ("forget", "retain"):
            qa = _cap(load_split(data_dir, kind, f"knowmem/{which}_qa.jsonl"), cap)
            icl = load_split(data_dir, kind, f"knowmem/{which}_qa_icl.jsonl")
            km = E.knowmem_scores(model, tok, qa, icl, max_new_tokens=params["knowmem_max_new_tokens"],
                                  batch_size=bs)
            out[f"knowmem_{which[0]}"] = sum(km) / len(km)
            if which == "forget":
                split("knowmem_f", qa, "question", km)
        forget = _texts(data_dir, kind, "privleak/forget.jsonl")
        holdout = _texts(data_dir, kind, "privleak/holdout.jsonl")
        f_scores = E.mink_scores(model, tok, forget, k=params["mink_k"], batch_size=bs)
        h_scores = E.mink_scores(model, tok, holdout, k=params["mink_k"], batch_size=bs)
        out["mink_auc"] = E.auc(f_scores, h_scores)
    elif kind == "wmdp":
        qs = _cap(load_split(data_dir, kind, "questions/forget.jsonl"), cap)
        correct = [int(c) for c in E.mc_correct(model, tok, qs, subject, batch_size=bs)]
        out["wmdp_acc"] = 100.0 * sum(correct) / len(correct)
        split("wmdp_acc", qs, "question", [100.0 * c for c in correct])
        util = _cap(load_split(data_dir, kind, "questions/utility.jsonl"), cap)
        by_subject: dict[str, list[dict]] = {}
        for q in util:
            by_subject.setdefault(q["subject"], []).append(q)
        hits = []
        for subj, group in sorted(by_subject.items()):
            hits += [int(c) for c in E.mc_correct(model, tok, group, subj, batch_size=bs)]
        out["mmlu_acc"] = 100.0 * sum(hits) / len(hits)
    else:
        raise ValueError(f"unknown benchmark kind {kind!r}")
    return out


def evaluate(model_dir: str | Path, data_dir: str | Path, kind: str, attacks: list[str], meta: dict,
             params: dict, subject: str, relearn_fraction: float, out_dir: str | Path,
             relearn_root: str | Path | None = None, reference_dir: str | Path | None = None) -> None:
    """Score one model under each attack and write ``out_dir/{attack}.json``.

    Quantization attacks load the weights through bitsandbytes; ``relearn{steps}`` attacks read the
    checkpoints under ``relearn_root``. With ``reference_dir`` (the target) each quantization attack
    also records ``qcode_change``, the percentage of quantization codes unlearning changed.
    """
    import math

    from .attacks.quantization import qcode_change
    from .attacks.relearn import relearn_subset
    from .models import QUANTS, load_model, load_tokenizer

    forget, _ = _forget_retain(data_dir, kind)
    relearned = relearn_subset(forget, relearn_fraction)
    tok = load_tokenizer(model_dir)
    for attack in attacks:
        t0 = time.time()
        if attack == "none":
            model = load_model(model_dir)
        elif attack in QUANTS:
            model = load_model(model_dir, quant=attack)
        elif attack.startswith("relearn"):
            if relearn_root is None:
                raise ValueError(f"attack {attack} needs the relearned checkpoints (relearn_root)")
            model = load_model(Path(relearn_root) / attack)
        else:
            raise ValueError(f"unknown attack {attack!r}")
        metrics = score(model, tok, data_dir, kind, params, subject, relearned)
        if attack in QUANTS and reference_dir is not None:
            metrics["qcode_change"] = qcode_change(reference_dir, model_dir, attack)
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"non-finite metrics for {meta} under {attack}: {bad}")
        # No timings here: the same config and seed must give byte-identical JSON (Snakemake's
        # benchmark files record time).
        _write_json(Path(out_dir) / f"{attack}.json", {**meta, "attack": attack, "metrics": metrics})
        log.info("%s %s: %s (%.1fs)", meta, attack, metrics, time.time() - t0)
        del model
