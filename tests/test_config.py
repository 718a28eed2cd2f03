"""Config validation: every bad value stops with one line naming the key, before any job runs."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unlearning.config import ConfigError, attacks_for_unlearned, load_schema, validate

ROOT = Path(__file__).resolve().parents[1]


def base() -> dict:
    return yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())


def test_defaults_are_filled_from_the_schema():
    cfg = validate(base())
    assert cfg["benchmarks"]["muse"]["source"] == "synthetic"
    assert cfg["methods"]["npo"]["beta"] == 0.1  # REFERENCE.md
    assert cfg["optimizers"]["adam"]["betas"] == [0.9, 0.999]
    assert cfg["attacks"]["relearn"]["fraction"] == 0.25
    assert cfg["evaluation"]["mink_k"] == 0.4
    assert attacks_for_unlearned(cfg) == ["none", "int8", "fp4", "nf4", "relearn1", "relearn2"]


def test_default_and_paper_configs_are_valid():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]:
        if path.name != "onset.yaml":  # not a study: the onset scan's config (tests/test_onset.py validates it)
            validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs" / "overlays").glob("*.yaml")))
def test_every_overlay_makes_a_valid_study_with_the_default(name):
    from snakemake.utils import update_config

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    # as Snakemake merges a second --configfile: nested keys one by one, lists replaced
    update_config(config, yaml.safe_load((ROOT / "configs" / "overlays" / name).read_text()))
    validate(config)


def test_hybrid_phases_get_their_own_defaults():
    cfg = base()
    cfg["optimizers"]["hyb"] = {"type": "hybrid", "fo": {"type": "adam", "lr": 0.01}}
    validate(cfg)
    hyb = cfg["optimizers"]["hyb"]
    assert hyb["zo"]["type"] == "adazo" and hyb["zo"]["mu"] == 0.001
    assert hyb["fo"]["lr"] == 0.01 and hyb["n_fo"] == 20


def _set(cfg: dict, dotted: str, value) -> dict:
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return cfg


_DELETE = object()

BAD = [
    # (dotted key, value, text the one-line message must contain)
    ("benchmarks.muse.kind", "lambada", "benchmarks.muse.kind"),
    ("benchmarks", {}, "benchmarks"),
    ("methods.graddiff.objective", "gradient_magic", "methods.graddiff.objective"),
    ("methods.npo.beta", -1, "methods.npo.beta"),
    ("methods.npo.betta", 0.1, "methods.npo.betta"),
    ("optimizers.adam.type", "adamax", "optimizers.adam.type"),
    ("optimizers.adam.lr", 0, "optimizers.adam.lr"),
    ("optimizers.adam.lr", -0.001, "optimizers.adam.lr"),
    ("optimizers.adam.lr", "fast", "optimizers.adam.lr"),
    ("optimizers.adam.momentum", 0.9, "optimizers.adam.momentum"),
    ("optimizers.zo", {"type": "zo_sgd", "q": 0}, "optimizers.zo.q"),
    ("optimizers.zo", {"type": "zo_sgd", "direction": "cube"}, "optimizers.zo.direction"),
    ("optimizers.target", {"type": "adam"}, "target"),
    ("seeds", [], "seeds"),
    ("seeds", [0, 0], "seeds"),
    ("attacks.quantization", ["int4"], "attacks.quantization.0"),
    ("attacks.relearn.steps", [0], "attacks.relearn.steps.0"),
    ("attacks.relearn.fraction", 1.5, "attacks.relearn.fraction"),
    ("unlearning.steps", 0, "unlearning.steps"),
    ("unlearning.stepz", 10, "unlearning.stepz"),
    ("trainig", {"steps": 3}, "trainig"),
    ("model.hidden_size", 12.5, "model.hidden_size"),
    ("benchmarks.muse.methods", ["simnpo"], "benchmarks.muse.methods"),
    ("benchmarks.wmdp.optimizers", ["sophia"], "benchmarks.wmdp.optimizers"),
    ("benchmarks.muse.source", "hub", "benchmarks.muse.dataset"),
    ("evaluation.mink_k", 0, "evaluation.mink_k"),
    ("report.reference_optimizer", "sgd", "report.reference_optimizer"),  # explicit, not configured
    ("calibration.early_stop.below", [0.5], "calibration.early_stop.below: 0.5 is not under"),  # grid [0.5, 1]
]


@pytest.mark.parametrize("key,value,expect", BAD, ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD])
def test_bad_values_name_the_key(key, value, expect):
    cfg = _set(copy.deepcopy(base()), key, value)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    assert expect in msg, msg


def test_a_bad_ablation_benchmark_names_the_key():
    """(Checked through Snakemake by test_report_workflow.py before; the bootstrap's one-line stop is
    test_snakemake_stops_before_any_job_with_one_line.)"""
    cfg = base()
    cfg["ablation"] = {"benchmark": "nope", "method": "npo", "optimizers": {
        "hybrid_2to1": {"type": "hybrid", "n_fo": 2, "n_zo": 1, "fo": {"type": "adam", "lr": 0.001},
                        "zo": {"type": "adazo", "lr": 0.001}}}}
    with pytest.raises(ConfigError, match="^ablation.benchmark: unknown benchmark 'nope'"):
        validate(cfg)


def test_unknown_enum_lists_allowed_values():
    cfg = _set(base(), "optimizers.adam.type", "adamax")
    with pytest.raises(ConfigError, match="expected one of .*signadam"):
        validate(cfg)


@pytest.mark.slow
def test_snakemake_stops_before_any_job_with_one_line(tmp_path):
    cfg = base()
    cfg["optimizers"]["adam"]["lr"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode != 0
    lines = [l for l in (res.stdout + res.stderr).splitlines() if "config error" in l]
    assert lines and "optimizers.adam.lr" in lines[0], res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_every_optimizer_type_builds_from_its_schema_defaults():
    """Schema and constructors agree: each type's filled-in entry is accepted by build_optimizer."""
    import torch

    from unlearning.optim import GRADES, build_optimizer

    schema_types = load_schema()["definitions"]["optimizer"]["properties"]["type"]["enum"]
    assert set(schema_types) == set(GRADES)
    for type_ in schema_types:
        cfg = base()
        cfg["optimizers"] = {"x": {"type": type_}}
        for bench in cfg["benchmarks"].values():
            bench.pop("optimizers", None)
        spec = dict(validate(cfg)["optimizers"]["x"])
        spec.pop("steps", None)
        param = torch.nn.Parameter(torch.zeros(3))
        opt = build_optimizer([param], spec, total_steps=4)
        assert isinstance(opt, torch.optim.Optimizer), type_


@pytest.mark.parametrize("entry,expected", [
    ({"objective": "grad_diff"}, {"forget_weight": 1.0, "retain_weight": 1.0}),
    ({"objective": "grad_diff", "gamma": 0.5}, {"forget_weight": 1.0, "retain_weight": 0.5}),  # deprecated name
    ({"objective": "npo"}, {"beta": 0.1, "aggregation": "sum", "forget_weight": 1.0, "retain_weight": 1.0}),
    ({"objective": "npo", "aggregation": "mean", "beta": 0.0225},
     {"beta": 0.0225, "aggregation": "mean", "retain_weight": 1.0}),
    ({"objective": "simnpo"}, {"beta": 4.5, "delta": 0.0, "forget_weight": 0.125, "retain_weight": 1.0}),
    ({"objective": "simnpo", "beta": 0.75, "gamma": 3.0}, {"delta": 3.0}),  # the lab's gamma = delta
    ({"objective": "rmu"}, {"layer": 7, "alpha": 100.0}),
])
def test_every_objective_builds_from_its_schema_defaults(entry, expected):
    """Schema and constructors agree on the methods: the filled-in entry builds, with these values."""
    import warnings

    from unlearning.objectives import build_objective

    cfg = base()
    cfg["methods"] = {"m": dict(entry)}
    for bench in cfg["benchmarks"].values():
        bench.pop("methods", None)
    spec = dict(validate(cfg)["methods"]["m"])
    spec.pop("lr_scale")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        obj = build_objective(spec.pop("objective"), spec)
    assert {k: obj.params[k] for k in expected} == expected


@pytest.mark.parametrize("entry,key", [
    ({"objective": "grad_diff", "gamma": 0.5, "retain_weight": 1.0}, "methods.m"),
    ({"objective": "simnpo", "gamma": 3.0, "delta": 1.0}, "methods.m"),
    ({"objective": "npo", "aggregation": "median"}, "methods.m.aggregation"),
])
def test_conflicting_or_bad_method_keys_name_the_key(entry, key):
    cfg = base()
    cfg["methods"] = {"m": entry}
    for bench in cfg["benchmarks"].values():
        bench.pop("methods", None)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_schema_reads_the_same_with_either_yaml_parser():
    """load_schema takes libyaml's parser when PyYAML has it (a Snakemake start reads the schema): the
    schema it returns is the pure-Python parser's, value for value and type for type."""
    from unlearning.config import SCHEMA_PATH

    fast = load_schema()
    slow = yaml.load(SCHEMA_PATH.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    assert fast == slow and repr(fast) == repr(slow)  # repr: 1 and 1.0 and True compare equal
    assert fast["properties"]["calibration"]  # not an empty document
