"""The registry (src/unlearning/registry.py) agrees with the modules, the classes the builders
construct, the config schema and the paper's taxonomy; adding an optimizer type or objective without
its registry entry, its module or its schema entry fails here."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unlearning import objectives, optim, registry
from unlearning.config import load_schema

PACKAGE = Path(registry.__file__).resolve().parent
# Modules of optim/ and objectives/ that define no registered type themselves.
SHARED = {"optim": {"__init__", "build", "_common"}, "objectives": {"__init__", "base"}}

# The paper's grade of each optimizer it studies (REFERENCE.md, "Optimizer grades"; SAM and RS are the
# robust first-order baselines). Known values: the registry may add types, never regrade these.
PAPER_GRADES = {
    "sophia": "second", "adam": "first", "adamw": "first", "sam": "first", "rs": "first",
    "signsgd": "compressed", "signadam": "compressed", "nbit_adam": "compressed", "adamw8bit": "compressed",
    "zo_sgd": "zeroth", "adazo": "zeroth", "hybrid": "hybrid",
}


def problems(optimizers: dict, objectives_: dict, schema: dict, package: Path = PACKAGE) -> list[str]:
    """Every disagreement between a registry, the package's modules and a config schema."""
    out = []
    defs = schema["definitions"]["optimizer"]
    enum = set(defs["properties"]["type"]["enum"])
    # Types with an if/then block of hyperparameters (each block names its types by const or enum).
    blocks = set()
    for block in defs["allOf"]:
        cond = block["if"]["properties"]["type"]
        blocks |= {cond["const"]} if "const" in cond else set(cond["enum"])
    for name, entry in optimizers.items():
        if entry.grade not in registry.GRADES:
            out.append(f"optimizer {name}: unknown grade {entry.grade!r}")
        if not (package / "optim" / f"{entry.module}.py").exists():
            out.append(f"optimizer {name}: no module optim/{entry.module}.py")
        elif not hasattr(importlib.import_module(f"unlearning.optim.{entry.module}"), entry.factory):
            out.append(f"optimizer {name}: optim/{entry.module}.py defines no {entry.factory}")
        if name not in enum:
            out.append(f"optimizer {name}: not in the schema's optimizer type enum")
        if name not in blocks:
            out.append(f"optimizer {name}: no if/then block of hyperparameters in the schema")
    out += [f"schema optimizer type {t}: no registry entry" for t in sorted((enum | blocks) - set(optimizers))]
    grades = set(schema["definitions"]["common_opt"]["grade"]["enum"])
    if grades != set(registry.GRADES):
        out.append(f"schema grades {sorted(grades)} != registry grades {sorted(registry.GRADES)}")
    obj_enum = set(schema["properties"]["methods"]["additionalProperties"]["properties"]["objective"]["enum"])
    for name, entry in objectives_.items():
        if not (package / "objectives" / f"{entry.module}.py").exists():
            out.append(f"objective {name}: no module objectives/{entry.module}.py")
        elif not hasattr(importlib.import_module(f"unlearning.objectives.{entry.module}"), entry.cls):
            out.append(f"objective {name}: objectives/{entry.module}.py defines no {entry.cls}")
        if name not in obj_enum:
            out.append(f"objective {name}: not in the schema's objective enum")
    out += [f"schema objective {o}: no registry entry" for o in sorted(obj_enum - set(objectives_))]
    # A module nobody registers: a type whose registry entry is missing.
    for pkg, entries in (("optim", optimizers), ("objectives", objectives_)):
        used = {e.module for e in entries.values()} | SHARED[pkg]
        out += [f"{pkg}/{p.name}: no registry entry names it" for p in sorted((package / pkg).glob("*.py"))
                if p.stem not in used]
    return out


def test_registry_schema_and_modules_agree():
    assert problems(registry.OPTIMIZERS, registry.OBJECTIVES, load_schema()) == []


def test_a_missing_registry_entry_module_or_schema_entry_is_found():
    schema = load_schema()
    lion = registry.OptimizerType("first", "lion", "Lion")
    found = problems({**registry.OPTIMIZERS, "lion": lion}, registry.OBJECTIVES, schema)
    assert found == [
        "optimizer lion: no module optim/lion.py",
        "optimizer lion: not in the schema's optimizer type enum",
        "optimizer lion: no if/then block of hyperparameters in the schema",
    ]
    without_sam = {t: o for t, o in registry.OPTIMIZERS.items() if t != "sam"}
    assert problems(without_sam, registry.OBJECTIVES, schema) == [
        "schema optimizer type sam: no registry entry", "optim/sam.py: no registry entry names it"]
    wrong_class = {**registry.OPTIMIZERS, "sam": registry.OptimizerType("first", "sam", "Sam")}
    assert problems(wrong_class, registry.OBJECTIVES, schema) == ["optimizer sam: optim/sam.py defines no Sam"]
    without_npo = {n: o for n, o in registry.OBJECTIVES.items() if n != "npo"}
    assert problems(registry.OPTIMIZERS, without_npo, schema) == [
        "schema objective npo: no registry entry", "objectives/npo.py: no registry entry names it"]


@pytest.mark.parametrize("type_", sorted(registry.OPTIMIZERS))
def test_build_optimizer_constructs_the_registered_class(type_):
    entry = registry.OPTIMIZERS[type_]
    factory = getattr(importlib.import_module(f"unlearning.optim.{entry.module}"), entry.factory)
    assert optim._REGISTRY[type_] == (factory, entry.grade)
    assert optim.GRADES[type_] == entry.grade
    opt = optim.build_optimizer([torch.nn.Parameter(torch.zeros(3))], {"type": type_}, total_steps=4)
    if inspect.isclass(factory):
        assert type(opt) is factory
    else:  # a factory function: what it returns is what build_optimizer returns
        assert type(opt) is type(factory([torch.nn.Parameter(torch.zeros(3))]))
    # Seeded types take the run's seed through a `seed` hyperparameter; the others have none to take.
    assert entry.seeded == ("seed" in optim.accepted_keys(type_))


@pytest.mark.parametrize("name", sorted(registry.OBJECTIVES))
def test_build_objective_constructs_the_registered_class(name):
    entry = registry.OBJECTIVES[name]
    cls = getattr(importlib.import_module(f"unlearning.objectives.{entry.module}"), entry.cls)
    assert objectives.REGISTRY[name] is cls and cls.name == name
    assert type(objectives.build_objective(name)) is cls


def test_grades_are_the_papers():
    assert {t: registry.grade(t) for t in PAPER_GRADES} == PAPER_GRADES
    assert registry.GRADES == ("second", "first", "compressed", "zeroth", "hybrid")
    # The report's roles: sign-based compressed updates, zeroth-order estimates.
    assert registry.SIGN_TYPES == {"signsgd", "signadam"}
    assert registry.ZO_TYPES == {"zo_sgd", "adazo"}
    with pytest.raises(ValueError, match="unknown optimizer type 'lion'.*adam"):
        registry.grade("lion")


def test_types_used_include_a_hybrids_phases_and_their_defaults():
    assert registry.types_used({"type": "adam"}) == ["adam"]
    assert registry.types_used({"type": "hybrid"}) == ["hybrid", "adam", "adazo"]
    assert registry.types_used({"type": "hybrid", "fo": {"type": "sophia"}, "zo": {"type": "zo_sgd"}}) == [
        "hybrid", "sophia", "zo_sgd"]


def test_the_unlearning_stage_seeds_the_registrys_seeded_types():
    from unlearning.stages.unlearn import _seed_spec

    for type_, entry in registry.OPTIMIZERS.items():
        spec = {"type": type_}
        _seed_spec(spec, 7)
        assert ("seed" in spec) == entry.seeded, type_
    spec = {"type": "hybrid", "fo": {"type": "rs"}, "zo": {"type": "adazo", "seed": 3}}
    _seed_spec(spec, 7)
    assert "seed" not in spec and spec["fo"]["seed"] == 7 and spec["zo"]["seed"] == 3


@pytest.mark.slow
def test_registry_imports_without_torch():
    """The Snakefile imports it (workflow/rules/common.smk), so it must not pull in torch."""
    code = "import sys, unlearning.registry, unlearning.config; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


# --- benchmark kinds and attacks -------------------------------------------------------------------


def kind_problems(kinds: dict, schema: dict) -> list[str]:
    """Every disagreement between the benchmark-kind registry, the code it names and the schema's kind enum."""
    out = []
    enum = set(schema["properties"]["benchmarks"]["additionalProperties"]["properties"]["kind"]["enum"])
    for name, k in kinds.items():
        refs = {"layout": k.layout, "generator": k.generator, "shape": k.shape, "scorer": k.scorer}
        if k.adapter:
            refs["adapter"] = k.adapter
        resolved = {}
        for field, ref in refs.items():
            try:
                resolved[field] = registry.resolve(ref)
            except (ImportError, AttributeError) as err:
                out.append(f"kind {name}: {field} {ref} does not resolve ({err})")
        if "layout" in resolved:
            files = set(resolved["layout"])
            out += [f"kind {name}: {role} file {f} not in its layout" for role, f in k.roles.items() if f not in files]
            out += [f"kind {name}: file {f} not in its layout" for f in k.training_extra + k.tokenizer_extra
                    if f not in files]
        if set(k.roles) != {"forget", "retain"}:
            out.append(f"kind {name}: roles {sorted(k.roles)} are not forget and retain")
        metrics = set(k.forget_metrics) | set(k.utility_metrics)
        out += [f"kind {name}: metric {m} is none of its forget or utility metrics"
                for m in k.criterion + k.primary if m not in metrics]
        if name not in enum:
            out.append(f"kind {name}: not in the schema's benchmarks.<name>.kind enum")
    out += [f"schema kind {k}: no registry entry" for k in sorted(enum - set(kinds))]
    return out


def attack_problems(attacks: dict, schema: dict) -> list[str]:
    """Every disagreement between the attack registry, the code it names and the schema's quantization enum."""
    out = []
    enum = set(schema["properties"]["attacks"]["properties"]["quantization"]["items"]["enum"])
    quants = [n for n, a in attacks.items() if a.quantization]
    for name, a in attacks.items():
        if a.quantization and (a.bnb is None) == (a.apply is None):
            out.append(f"quantization {name}: needs exactly one of bnb and apply")
        for ref in filter(None, (a.apply, a.codes)):
            try:
                registry.resolve(ref)
            except (ImportError, AttributeError) as err:
                out.append(f"attack {name}: {ref} does not resolve ({err})")
        if a.quantization and not a.codes:
            out.append(f"quantization {name}: no codes function (qcode_change)")
        if a.quantization and name not in enum:
            out.append(f"quantization {name}: not in the schema's attacks.quantization enum")
    out += [f"schema quantization {q}: no registry entry" for q in sorted(enum - set(quants))]
    return out


def test_kinds_and_attacks_agree_with_their_code_and_the_schema():
    schema = load_schema()
    assert kind_problems(registry.BENCHMARK_KINDS, schema) == []
    assert attack_problems(registry.ATTACKS, schema) == []
    assert registry.PRIMARY_QUANTIZATION in registry.four_bit()


def test_a_kind_or_quantization_missing_from_the_schema_or_its_code_is_found():
    schema = load_schema()
    toy = dataclasses.replace(registry.BENCHMARK_KINDS["wmdp"], scorer="unlearning.eval.scorers:score_toy")
    assert kind_problems({**registry.BENCHMARK_KINDS, "toy": toy}, schema) == [
        "kind toy: scorer unlearning.eval.scorers:score_toy does not resolve "
        "(module 'unlearning.eval.scorers' has no attribute 'score_toy')",
        "kind toy: not in the schema's benchmarks.<name>.kind enum"]
    roles = {"forget": "raw/nope.jsonl", "retain": "raw/retain1.jsonl"}
    bad_roles = dataclasses.replace(registry.BENCHMARK_KINDS["muse"], roles=roles)
    assert kind_problems({**registry.BENCHMARK_KINDS, "muse": bad_roles}, schema) == [
        "kind muse: forget file raw/nope.jsonl not in its layout"]
    int4 = registry.Attack("INT4", "x", "#000000", True, {"load_in_4bit": True}, codes=None)
    assert attack_problems({**registry.ATTACKS, "int4": int4}, schema) == [
        "quantization int4: no codes function (qcode_change)",
        "quantization int4: not in the schema's attacks.quantization enum"]
    kinds = dict(registry.BENCHMARK_KINDS)
    del kinds["tofu"]
    assert kind_problems(kinds, schema) == ["schema kind tofu: no registry entry"]


def test_attack_names_order_and_config_lists():
    assert registry.quantizations()[:3] == ["int8", "fp4", "nf4"] and registry.four_bit() == ["fp4", "nf4"]
    assert registry.quantizations()[3:] == ["nf4_b4096", "nf4_b64_emb", "int3_g32", "int3_g32_emb", "int2_g32",
                                            "int2_g32_emb", "int2_g128"]  # attacks/lowbit.py's
    assert registry.attack_order(["relearn100", "nf4", "zz", "relearn5", "none", "int8"]) == \
        ["none", "int8", "nf4", "relearn5", "relearn100", "zz"]
    assert registry.stage_attack("relearn50") == ("relearn", 50) and registry.stage_attack("relearnx") is None
    assert registry.is_relearn("relearn7") and not registry.is_relearn("nf4")
    assert registry.relearn_steps("relearn25") == 25 and registry.relearn_steps("none") == 0
    cfg = {"attacks": {"quantization": ["nf4", "int8"], "relearn": {"steps": [50, 10]}}}
    assert registry.attacks_of(cfg) == ["none", "nf4", "int8", "relearn10", "relearn50"]
    assert registry.attacks_of(cfg, reference=True) == ["none", "nf4", "int8"]
    with pytest.raises(ValueError, match="unknown attack 'int3'"):
        registry.attack("int3")
    with pytest.raises(ValueError, match="unknown benchmark kind 'toy'"):
        registry.benchmark_kind("toy")


def test_the_report_vocabulary_comes_from_the_registry():
    from unlearning.calibration import CRITERION_METRICS
    from unlearning.commands import KINDS
    from unlearning.report import findings, style, tidy

    assert KINDS == ["muse", "wmdp", "tofu"]
    assert tidy.FORGET_METRICS == ["verbmem_f", "knowmem_f", "wmdp_acc", "tofu_prob_f", "tofu_rouge_f"]
    assert tidy.UTILITY_METRICS == ["knowmem_r", "mmlu_acc", "model_utility"]
    assert CRITERION_METRICS["tofu"] == ("tofu_rouge_f", "model_utility")
    assert findings.PRIMARY_METRICS["forget"] == {"muse": "knowmem_f", "wmdp": "wmdp_acc", "tofu": "tofu_prob_f"}
    markers, colours = style.attack_styles(["none", "nf4", "relearn10", "relearn5"])
    assert markers["nf4"] == "v" and markers["relearn5"] == "D" and markers["relearn10"] == "P"
    assert colours["relearn10"] == "#8c564b" and colours["fp4"] == "#e377c2"
