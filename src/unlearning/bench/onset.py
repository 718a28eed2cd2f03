"""The onset scan (issue 24 item 6): where does the quantization attack appear?

    unlearning onset-scan --configfile configs/onset.yaml --out results/onset

For each model width (``widths``) a target is trained on the scan's benchmark (the project's stages,
in-process: data, tokenizer, ``stages.models.train_model``); it is unlearned once per optimizer entry
and learning rate (``stages.unlearn.unlearn``), and the target and each unlearned model are scored
(``stages.evaluate.score``, the ``metrics``) before and under each quantizer (``models.load_model``,
the registry's attacks). Per point it records the update's size in quantization bins (``update_over_bin``),
the share of codes that changed (``attacks.quantization.qcode_changes``), the forget metrics before and
after each quantizer, and recovery = after - before; per width the target's own change under each
quantizer. Everything lands in ``OUT/onset.json`` (rewritten after each point, so a stopped scan keeps
what it did and a rerun skips it) and on stdout at the end; ``OUT/onset.png`` draws recovery against
update/bin (report/onset.py).

The bin (``bin_widths``) is the mean spacing of the quantizer's grid in the weight's quantization
group: the group's range over its number of steps. LLM.int8 (bitsandbytes): rows, absmax / 127;
bitsandbytes' 4-bit (fp4, nf4; blocks of 64, or the entry's ``blocksize``): 16 levels on
[-absmax, absmax], 2 absmax / 15 (NF4's levels crowd near 0: its spacing there is ~0.6 of this);
torchao's asymmetric n-bit groups: (max(w, 0) - min(w, 0)) / (2^n - 1), its ``scale``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any

import yaml

from ..commands import Stage

log = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "onset.schema.yaml"
STUDY_REF = "config.schema.yaml#"  # the onset schema's references into the study schema
CLOCK = "onset_clock.json"  # a target's training time (wall, CPU), kept for a rerun that reuses it


# ------------------------------------------------------------------------------------------ the config
def _inline(node: Any, study: dict) -> Any:
    """``node`` with every ``{$ref: config.schema.yaml#/...}`` replaced by the study schema's part it
    points at (its own ``#/definitions`` references then resolve in the onset schema, which carries them),
    so that the study's defaults apply here too."""
    if isinstance(node, list):
        return [_inline(n, study) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith(STUDY_REF):
        part: Any = study
        for key in ref[len(STUDY_REF):].strip("/").split("/"):
            part = part[key]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**copy.deepcopy(part), **_inline(rest, study)}
    return {k: _inline(v, study) for k, v in node.items()}


def schema() -> dict:
    """The onset scan's JSON schema, the study schema's shared sections inlined."""
    from ..config import load_schema

    study = load_schema()
    onset = _inline(load_schema(SCHEMA), study)
    onset["definitions"] = study["definitions"]
    # a section left out of the config gets its (inlined) default, as a study's does
    for section in ("tokenizer", "model", "training", "unlearning", "evaluation"):
        onset["properties"][section].setdefault("default", {})
    return onset


def validate(config: dict, source: str = "onset config") -> dict:
    """Validate ``config`` in place against the onset schema (defaults filled) and return it; one-line
    ``ConfigError`` naming ``source`` and the key on the first problem."""
    from ..config import ConfigError, _describe, _Filling
    from ..registry import benchmark_kind, optimizer

    errors = sorted(_Filling(schema()).iter_errors(config), key=lambda e: len(list(e.absolute_path)))
    if errors:
        leaf = max(errors, key=lambda e: len(list(e.absolute_path)))
        while leaf.context:
            leaf = max(leaf.context, key=lambda e: len(list(e.absolute_path)))
        raise ConfigError(f"{source}: {_describe(leaf)}")
    known = benchmark_kind(config["benchmark"]["kind"]).forget_metrics
    bad = [m for m in config["metrics"] if m not in known]
    if bad:
        raise ConfigError(f"{source}: metrics: {bad} are not forget metrics of kind "
                          f"{config['benchmark']['kind']!r} (known: {', '.join(known)})")
    for name, entry in config["optimizers"].items():
        if entry["type"] == "hybrid":
            raise ConfigError(f"{source}: optimizers.{name}: a hybrid has two learning rates; scan its phases")
        optimizer(entry["type"])
    for key in ("hidden_size", "intermediate_size"):  # set per width (`widths`, `intermediate_ratio`)
        config["model"].pop(key, None)
    return config


def load(path: str | Path) -> dict:
    """The validated onset config at ``path``."""
    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    return validate(config, str(path))


# ------------------------------------------------------------------------------------------ measuring
def bin_widths(w, quant: str):
    """Per weight of the 2-D float weight ``w``, the mean spacing of quantizer ``quant``'s grid in its
    quantization group (see the module docstring), as float32 of ``w``'s shape."""
    import torch

    from ..registry import attack

    entry = attack(quant)
    w = w.detach().to(torch.float32)
    settings = entry.settings or {}
    if entry.bnb is not None and entry.bnb.get("load_in_8bit"):
        return (w.abs().amax(dim=1, keepdim=True) / 127).expand_as(w).contiguous()
    if entry.bnb is not None or settings.get("library") == "bitsandbytes":
        size = int(settings.get("blocksize", 64))  # transformers' 4-bit layers: blocks of 64
        flat = w.flatten()
        pad = (-flat.numel()) % size
        blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, size)
        absmax = blocks.abs().amax(dim=1, keepdim=True).expand_as(blocks)
        return (2 * absmax / 15).flatten()[: w.numel()].reshape(w.shape)
    if settings.get("library") == "torchao":
        g, levels = int(settings["group_size"]), 2 ** int(settings["bits"]) - 1
        groups = w.reshape(-1, g)
        span = groups.amax(dim=1, keepdim=True).clamp_min(0) - groups.amin(dim=1, keepdim=True).clamp_max(0)
        return (span / levels).expand_as(groups).reshape(w.shape)
    raise ValueError(f"quantization {quant!r}: no bin width known (bench/onset.py bin_widths)")


def update_over_bin(before: dict, after: dict, quants: list[str]) -> dict[str, dict[str, float]]:
    """Per quantizer: ``update_over_bin``, the mean over its quantized weights of |after - before| in bins
    of ``before``'s grid; ``update_abs``, the mean |after - before|; ``bin``, the mean bin width; and
    ``weight_abs``, the mean |before| (state dicts of one model before and after unlearning)."""
    from ..attacks.lowbit import quantized
    from ..registry import attack

    out = {}
    for q in quants:
        embeddings = bool((attack(q).settings or {}).get("embeddings"))
        sums = {"update_over_bin": 0.0, "update_abs": 0.0, "bin": 0.0, "weight_abs": 0.0}
        n = 0
        for name, w in before.items():
            if not quantized(name, embeddings):
                continue
            step = (after[name].float() - w.float()).abs()
            bins = bin_widths(w, q)
            sums["update_over_bin"] += float((step / bins.clamp_min(1e-12)).sum())
            sums["update_abs"] += float(step.sum())
            sums["bin"] += float(bins.sum())
            sums["weight_abs"] += float(w.float().abs().sum())
            n += w.numel()
        if not n:
            raise ValueError(f"quantization {q!r}: the model has no weight it quantizes")
        out[q] = {k: v / n for k, v in sums.items()}
    return out


def _scores(model_dir: Path, tok: Any, config: dict, data_dir: Path) -> dict[str, dict[str, float]]:
    """The config's metrics of the saved model before (``none``) and under each quantizer."""
    from ..models import load_model
    from ..stages.evaluate import score

    bench = config["benchmark"]
    out = {}
    for q in ["none", *config["quantizers"]]:
        model = load_model(model_dir, quant=None if q == "none" else q)
        out[q] = score(model, tok, data_dir, bench["kind"], config["evaluation"], bench.get("subject", "biology"),
                       [], only=set(config["metrics"]))
        del model
    return out


def _changes(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """after - before, per quantizer and metric."""
    return {q: {m: v - scores["none"][m] for m, v in s.items()} for q, s in scores.items() if q != "none"}


def arch(config: dict, width: int) -> dict:
    """The study ``model`` entry of one width (the MLP ``intermediate_ratio`` times as wide)."""
    return {**config["model"], "hidden_size": width,
            "intermediate_size": int(round(config["intermediate_ratio"] * width))}


def _lr_name(lr: float) -> str:
    return f"lr{lr:.3g}"


class _Clock:
    """Wall and CPU seconds of a block (``with clock: ...``), added to ``seconds`` / ``cpu_seconds``."""

    def __init__(self) -> None:
        self.seconds = self.cpu_seconds = 0.0

    def __enter__(self):
        self._t = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._t[0]
        self.cpu_seconds += time.process_time() - self._t[1]


def _width(config: dict, width: int, data_dir: Path, tok_dir: Path, out: Path, result: dict, save) -> None:
    """Train one width's target, score it, and run every (optimizer, lr) point of it (skipping those
    a previous run of the same folder finished)."""
    from ..attacks.quantization import qcode_changes
    from ..models import load_tokenizer, read_weights
    from ..registry import grade
    from ..stages.common import write_json
    from ..stages.models import train_model
    from ..stages.unlearn import unlearn

    bench, quants, seed = config["benchmark"], config["quantizers"], config["seed"]
    root = out / f"w{width}"
    target = root / "target"
    clock = _Clock()
    if not (target / "training.json").exists():
        with clock:
            train_model(data_dir, bench["kind"], "target", tok_dir, arch(config, width),
                        {**config["training"], "seed": seed}, None, target, evaluation=config["evaluation"],
                        subject=bench.get("subject", "biology"))
        write_json(target / CLOCK, {"seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds})
    else:  # trained by an earlier run into this folder: its time still counts
        done = json.loads((target / CLOCK).read_text(encoding="utf-8")) if (target / CLOCK).exists() else {}
        clock.seconds, clock.cpu_seconds = done.get("seconds", 0.0), done.get("cpu_seconds", 0.0)
    with clock:
        training = json.loads((target / "training.json").read_text(encoding="utf-8"))
        tok = load_tokenizer(target)
        scores = _scores(target, tok, config, data_dir)
        before = read_weights(target)
    entry = {"width": width, "arch": arch(config, width),
             "params": sum(w.numel() for w in before.values()),
             "training": {k: training.get(k) for k in ("steps", "levels", "reached", "levels_met", "seconds")},
             "scores": scores, "quantization_change": _changes(scores),
             "seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds}
    result["widths"].append(entry)
    save()
    log.info("width %d: %d weights, target %s (%.0f s, %.0f CPU-s)", width, entry["params"], scores["none"],
             clock.seconds, clock.cpu_seconds)
    metric = config["metrics"][0]
    for name, spec in config["optimizers"].items():
        for lr in config["lrs"]:
            folder = root / name / _lr_name(lr)
            done = folder / "point.json"
            if done.exists():
                point = json.loads(done.read_text(encoding="utf-8"))
            else:
                clock = _Clock()
                with clock:
                    run = {**config["unlearning"], "max_len": config["model"]["max_len"], "seed": seed}
                    unlearn(target, data_dir, bench["kind"], config["method"], {**spec, "lr": lr}, run,
                            folder / "model")
                    moved = update_over_bin(before, read_weights(folder / "model"), quants)
                    codes = qcode_changes(target, folder / "model", quants, device="cpu")
                    after = _scores(folder / "model", tok, config, data_dir)
                gap = {m: scores["none"][m] - after["none"][m] for m in config["metrics"]}
                recovery = _changes(after)
                point = {"width": width, "optimizer": name, "type": spec["type"], "grade": grade(spec["type"]),
                         "lr": lr, "update_over_bin": {q: v["update_over_bin"] for q, v in moved.items()},
                         "update": moved, "qcode_change": codes, "scores": after, "gap": gap, "recovery": recovery,
                         "recovery_share": {q: {m: (r / gap[m] if gap[m] else None) for m, r in rec.items()}
                                            for q, rec in recovery.items()},
                         "seconds": clock.seconds, "cpu_seconds": clock.cpu_seconds}
                write_json(done, point)
            result["points"].append(point)
            save()
            log.info("width %d %s lr %.3g: %s %.1f -> %.1f; update/bin %s; recovery %s (%.0f s)", width, name, lr,
                     metric, scores["none"][metric], point["scores"]["none"][metric],
                     {q: round(v, 3) for q, v in point["update_over_bin"].items()},
                     {q: round(r[metric], 1) for q, r in point["recovery"].items()}, point["seconds"])


def scan(config: dict, out: str | Path) -> dict:
    """Run the onset scan of a validated ``config`` into folder ``out``; the result (also
    ``out/onset.json``; the figure ``out/onset.png``)."""
    from ..report.onset import figure
    from ..report.summaries import cpu_model
    from ..stages.common import write_json
    from ..stages.data import prepare_data, train_tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    result: dict = {"config": config, "cpu": cpu_model(), "widths": [], "points": []}

    def save() -> None:
        result["seconds"] = time.perf_counter() - t0
        result["cpu_seconds"] = time.process_time() - c0
        # the scan's own work, summed over its parts: what a rerun that skipped finished parts still reports
        for key in ("seconds", "cpu_seconds"):
            result[f"work_{key}"] = sum(x[key] for x in result["widths"] + result["points"])
        write_json(out / "onset.json", result)

    data_dir, tok_dir = out / "data", out / "tokenizer"
    if not (data_dir / "raw").exists():
        prepare_data(config["benchmark"], data_dir)
    if not (tok_dir / "tokenizer.json").exists():
        train_tokenizer(data_dir, config["benchmark"]["kind"], config["tokenizer"]["vocab_size"], tok_dir)
    for width in config["widths"]:
        _width(config, width, data_dir, tok_dir, out, result, save)
    save()
    figure(result, out / "onset.png")
    return result


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--configfile", required=True, help="the scan's config (configs/onset.yaml)")
    p.add_argument("--out", required=True, help="folder for the models, onset.json and onset.png")


def _run(a: Namespace) -> None:
    from . import harness

    harness.emit(scan(load(a.configfile), a.out), indent=1)


STAGE = Stage(_arguments, _run, needs_torch=True)
