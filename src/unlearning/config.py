"""Validate a study config against workflow/schemas/config.schema.yaml, fill schema defaults, and
check the cross-references JSON schema cannot express. Torch-free: the Snakefile imports it."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from .registry import attacks_of

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid study config; the message is one line naming the key."""


def _with_defaults(cls):
    """A validator class that also writes each property's schema default into the instance."""
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_Filling = _with_defaults(Draft202012Validator)


# libyaml's parser where PyYAML was built with it: the schema (50 kB) is read at every Snakemake start (the
# suite starts about 120, two per SLURM job) and took 0.17 CPU-s in the pure-Python parser, 0.02 in libyaml's;
# both build the same objects (PyYAML's Python constructors).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The config schema as a dict."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_SAFE_LOADER)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(err) -> str:
    key = _key(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        where = ".".join(str(p) for p in err.absolute_path)
        names = ", ".join(f"{where + '.' if where else ''}{e}" for e in extra)
        return f"unknown key {names}; allowed: {', '.join(allowed)}"
    if v == "enum":
        return f"{key}: {err.instance!r} is not allowed; expected one of {', '.join(map(str, err.validator_value))}"
    if v == "propertyNames":
        return (f"{key}: invalid name {err.instance!r} "
                "(lower-case letters, digits and _; not 'target'/'retrain'/'control')")
    return f"{key}: {err.message}"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (defaults filled) and return it; raise ConfigError on the first problem."""
    schema = schema or load_schema()
    validator = _Filling(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        # Prefer the deepest, most specific error of an if/then branch over the generic parent.
        best = max(errors, key=lambda e: len(list(e.absolute_path)))
        leaf = best
        while leaf.context:
            leaf = max(leaf.context, key=lambda e: len(list(e.absolute_path)))
        raise ConfigError(_describe(leaf))
    _check_references(config)
    _check_model(config["model"])
    _check_ablation(config)
    _check_relearn_report(config["attacks"]["relearn"])
    _check_per_seed(config)
    _check_calibration(config)
    return config


def _check_per_seed(config: dict) -> None:
    """A role trained per seed must be trained here: a hub or folder model cannot be retrained."""
    for role in config["training"]["per_seed"]:
        for bench, entry in config["benchmarks"].items():
            if isinstance(entry.get(role), str):
                raise ConfigError(f"training.per_seed: {role} of benchmark {bench} is copied from "
                                  f"benchmarks.{bench}.{role} ({entry[role]}), so it cannot be trained per seed")


def _check_calibration(config: dict) -> None:
    cal = config["calibration"]
    if cal is False:
        return
    known = set(config["optimizers"]) | set(ablation_optimizers(config))
    unknown = sorted(set(cal["grids"]) - known)
    if unknown:
        raise ConfigError(f"calibration.grids: unknown optimizer {unknown[0]!r}; "
                          f"configured: {', '.join(sorted(known))}")
    below = (cal["early_stop"] or {}).get("below", [])
    if below:
        lowest = min(min(g) for g in [cal["grid"], *cal["grids"].values()])
        if max(below) >= lowest:
            raise ConfigError(f"calibration.early_stop.below: {max(below):g} is not under every ladder's first "
                              f"multiplier ({lowest:g}, calibration.grid / grids)")
    if cal["criterion"] == "forget_at_most" and "threshold" not in cal:
        raise ConfigError("calibration.threshold: required by criterion forget_at_most")
    if cal["criterion"] == "match_retrain":
        for bench, entry in config["benchmarks"].items():
            if entry.get("retrain") is False:
                raise ConfigError(f"calibration.criterion: match_retrain needs a retrain model, and benchmark "
                                  f"{bench} has none (benchmarks.{bench}.retrain: false); use forget_at_most")


def _check_relearn_report(relearn: dict) -> None:
    """`attacks.relearn.report` names one of the configured relearning step counts."""
    report = relearn.get("report")
    if report is not None and report not in relearn["steps"]:
        raise ConfigError(f"attacks.relearn.report: {report} is not one of attacks.relearn.steps {relearn['steps']}")


def _check_model(arch: dict) -> None:
    """Shapes a Llama built from ``model`` can take, refused here instead of inside a training job.

    Quantization adds no constraint: 4-bit layers on the CPU take bitsandbytes' portable path, which
    loads any layer width (tests/test_quantization.py); only its AVX512-BF16 packed path, which the
    project turns off, needs output widths divisible by 32.
    """
    hidden, heads = arch["hidden_size"], arch["num_heads"]
    if hidden % heads:
        raise ConfigError(f"model.num_heads: {heads} does not divide model.hidden_size {hidden}")
    if (hidden // heads) % 2:
        raise ConfigError(f"model.hidden_size: {hidden} / model.num_heads {heads} = {hidden // heads}, "
                          "an odd head size; rotary position embeddings need an even one")


def _check_ablation(config: dict) -> None:
    """`ablation:` runs extra (hybrid) optimizer entries on one benchmark and method only. Its
    entries join `optimizers`, so the wildcard-generic rules find them; `optimizers_for` leaves
    them out of the study's own grid."""
    ablation = config.get("ablation")
    if not ablation:
        return
    extra = dict(ablation.get("optimizers", {}))
    bench, method = ablation["benchmark"], ablation["method"]
    if bench not in config["benchmarks"]:
        raise ConfigError(f"ablation.benchmark: unknown benchmark {bench!r}; "
                          f"configured: {', '.join(config['benchmarks'])}")
    if method not in methods_for(config, bench):
        raise ConfigError(f"ablation.method: {method!r} is not run on {bench}; "
                          f"run there: {', '.join(methods_for(config, bench))}")
    clash = sorted(set(extra) & set(config["optimizers"]) - set(ablation_optimizers(config)))
    if clash:
        raise ConfigError(f"ablation.optimizers: {', '.join(clash)} already named in optimizers; use new names")
    config["optimizers"].update(extra)


def ablation_optimizers(config: dict) -> list[str]:
    """Names of the ablation-only optimizer entries (empty without `ablation:`)."""
    return list((config.get("ablation") or {}).get("optimizers", {}))


def _check_references(config: dict) -> None:
    methods, optimizers = set(config["methods"]), set(config["optimizers"])
    for bench, entry in config["benchmarks"].items():
        for name in entry.get("methods", []):
            if name not in methods:
                raise ConfigError(f"benchmarks.{bench}.methods: unknown method {name!r}; "
                                  f"configured: {', '.join(sorted(methods))}")
        for name in entry.get("optimizers", []):
            if name not in optimizers:
                raise ConfigError(f"benchmarks.{bench}.optimizers: unknown optimizer {name!r}; "
                                  f"configured: {', '.join(sorted(optimizers))}")
        if entry.get("source", "synthetic") == "hub" and "dataset" not in entry:
            raise ConfigError(f"benchmarks.{bench}.dataset: required when source is 'hub'")
        if entry["kind"] == "tofu" and entry.get("retrain") is False:
            raise ConfigError(f"benchmarks.{bench}.retrain: TOFU's Forget Quality needs a retrain (retain) model")
    for name, spec in config["optimizers"].items():
        if spec.get("type") == "hybrid":
            for part in ("fo", "zo"):
                if part in spec and not isinstance(spec[part], dict):
                    raise ConfigError(f"optimizers.{name}.{part}: must be a mapping with a 'type'")
    ref = config.get("report", {}).get("reference_optimizer")
    # The schema's default ("adam") may be absent from a study without Adam: linear-mode-connectivity
    # paths are then skipped. A reference named explicitly must exist.
    if ref is not None and ref not in optimizers and ref != "adam":
        raise ConfigError(f"report.reference_optimizer: unknown optimizer {ref!r}; "
                          f"configured: {', '.join(sorted(optimizers))}")


def methods_for(config: dict, bench: str) -> list[str]:
    """Methods run on ``bench`` (its own list, else all configured)."""
    return list(config["benchmarks"][bench].get("methods") or config["methods"])


def optimizers_for(config: dict, bench: str) -> list[str]:
    """Optimizers of the study's grid on ``bench`` (its own list, else all configured but the
    ablation-only entries)."""
    skip = set(ablation_optimizers(config))
    return [o for o in config["benchmarks"][bench].get("optimizers") or config["optimizers"] if o not in skip]


def attacks_for_unlearned(config: dict) -> list[str]:
    """Attack names evaluated on every unlearned model (registry.attacks_of)."""
    return attacks_of(config)


def attacks_for_reference(config: dict) -> list[str]:
    """Attack names evaluated on the target and retrain models (no relearning)."""
    return attacks_of(config, reference=True)
