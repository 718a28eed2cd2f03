"""The registry (src/unlearning/registry.py) agrees with the modules, the classes the builders
construct, the config schema and the paper's taxonomy; adding an optimizer type or objective without
its registry entry, its module or its schema entry fails here."""

from __future__ import annotations

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
