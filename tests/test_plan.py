"""The study plan in-process (src/unlearning/plan.py): job lists, paths, wildcards and what an edit of the
config or of a module replans, for the default, smoke, TOFU and paper studies, without starting
Snakemake. tests/test_paper_configs.py keeps one dry run checking that the rules plan what these say."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unlearning import calibration as C
from unlearning.config import (
    attacks_for_reference,
    attacks_for_unlearned,
    load_schema,
    methods_for,
    optimizers_for,
    validate,
)
from unlearning.plan import EVAL_CODE, StudyPlan

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted(p.stem for p in ROOT.glob("configs/paper-*.yaml"))
STUDIES = ["config", "smoke", "tofu", *PAPER]
SCHEMA = load_schema()  # read once: validating is then cheap


def raw(name: str) -> dict:
    path = ROOT / ("config.yaml" if name == "config" else f"configs/{name}.yaml")
    return yaml.safe_load(path.read_text())


def plan_of(cfg: dict) -> StudyPlan:
    """The plan of a raw config; the calibration's choice is x1 everywhere (a stand-in for the checkpoint)."""
    return StudyPlan(validate(copy.deepcopy(cfg), SCHEMA), chosen=lambda b, m, o, s: "1")


@pytest.fixture(scope="module")
def plans() -> dict[str, StudyPlan]:
    return {name: plan_of(raw(name)) for name in STUDIES}


def files_under(plan: StudyPlan) -> list[str]:
    """Every path the plan names: the default target's inputs, each run's evaluations and models, the
    reference evaluations and the calibration's points and choices."""
    out = list(plan.all_outputs())
    for b in plan.config["benchmarks"]:
        out += plan.reference_evals(b) + plan.unlearned_evals(b)
    out += [plan.unlearned_model(*r) for r in plan.runs()]
    for combo in plan.calibration_combos():
        out += [p for ps in plan.calibration_points(*combo).values() for p in ps] + [plan.choice_file(*combo)]
        out += [p for ps in plan.calibration_runs(*combo, never).values() for p in ps]
    return out


def never(*rung) -> str:
    """A ladder's runs that never reach the level: the whole ladder is walked."""
    return C.SHORT


def first(*rung) -> str:
    """A ladder's runs that all reach the level on their first rung."""
    return C.REACHED


# ------------------------------------------------------------------------------ job lists


def test_smoke_study_jobs_and_paths(plans):
    p = plans["smoke"]
    runs = list(p.runs())
    assert len(runs) == 9 and ("muse", "graddiff", "adam", 0) in runs and ("wmdp", "npo", "hybrid", 0) in runs
    assert {o for b, _, o, _ in runs if b == "tofu"} == {"adam", "zo"}
    assert list(p.ablation_runs()) == []
    # every entry calibrated on seed 0 by early stopping up a ladder of x0.5 and x1, its choice, then
    # the study's run at the choice; no calibration evaluations (each run's last check holds them)
    assert len(p.calibration_combos()) == 9
    assert p.calibration_points("muse", "graddiff", "adam") == {}
    assert p.calibration_runs("muse", "graddiff", "adam", never) == {
        "0.5": ["results/unlearned/muse/graddiff/adam/x0.5/seed0"],
        "1": ["results/unlearned/muse/graddiff/adam/x1/seed0"],
    }
    assert p.calibration_runs("muse", "graddiff", "adam", first) == {
        "0.5": ["results/unlearned/muse/graddiff/adam/x0.5/seed0"]}
    assert p.calibration_args("muse", "graddiff", "adam", first) == (
        "--runs 0.5=results/unlearned/muse/graddiff/adam/x0.5/seed0 --top 1")
    # each run stops at its own seed's retrain level, checked every step within the 2-step budget
    assert p.stop_reference("muse", "graddiff", "adam", 0) == ["results/eval/muse/none/retrain/seed0/none.json"]
    stop = json.loads(p.stop_params("muse", "graddiff", "adam"))
    assert (stop["every"], stop["budget"], stop["criterion"], stop["margin"]) == (1, 2, "match_retrain", 5.0)
    assert stop["evaluation"] == p.config["evaluation"] and "stages/evaluate.py" in p.stop_code("muse", "npo", "adam")
    # the positive control runs its fixed steps
    assert p.stop_params("muse", "none", "control") == "" and p.stop_reference("muse", "none", "control", 0) == []
    retrain = p.calibration_reference("muse", "graddiff", "adam", "retrain")
    assert retrain == ["results/eval/muse/none/retrain/seed0/none.json"]
    assert p.unlearned_model("muse", "npo", "signadam", 0) == "results/unlearned/muse/npo/signadam/x1/seed0"
    assert p.eval_files(("muse", "npo", "adam", 0)) == [
        f"results/eval/muse/npo/adam/seed0/{a}.json" for a in attacks_for_unlearned(p.config)
    ]
    # the target unattacked and quantized (4); the attacks' controls, the retrain model and the positive
    # control, under every attack an unlearned model goes through (2 x 6: none, 3 quantizations, relearn1/2)
    assert len(attacks_for_reference(p.config)) == 4 and len(attacks_for_unlearned(p.config)) == 6
    assert len(p.reference_evals("wmdp")) == 4 + 2 * 6
    assert p.tofu_tables("tofu") == ["results/tables/tofu/tofu.csv", "results/tables/tofu/tofu.md"]
    assert p.tofu_tables("muse") == []
    assert len(p.all_outputs()) == 33 and "results/README/findings.md" in p.all_outputs()
    assert p.lmc_jobs("muse") == [("graddiff", 0), ("npo", 0)]
    assert p.lmc_optimizers("wmdp", "npo", "0") == ["adam", "zo", "hybrid"]


def test_default_study_jobs(plans):
    p = plans["config"]
    cfg = p.config
    assert len(list(p.runs())) == 96 and len(list(p.ablation_runs())) == 6 and len(p.calibration_combos()) == 34
    # `calibration.seeds: each`: every seed of an entry is calibrated, over the zo entry's wider grid
    assert p.calibration_seeds("muse", "graddiff", "zo") == cfg["seeds"]
    # early stopping: a ladder per entry and seed, one run per entry and seed
    # where the first rung reaches the level (102, against 318 grid points and 318 evaluations before),
    # 306 where none does
    assert C.grid(cfg, "adam") == C.grid(cfg, "zo") == [1.0, 3.0, 10.0]
    assert p.calibration_points("muse", "graddiff", "zo") == {}
    assert list(p.calibration_runs("muse", "graddiff", "zo", never)) == ["1", "3", "10"]
    assert sum(len(v) for c in p.calibration_combos() for v in p.calibration_runs(*c, first).values()) == 102
    assert sum(len(v) for c in p.calibration_combos() for v in p.calibration_runs(*c, never).values()) == 306
    assert json.loads(p.stop_params("wmdp", "npo", "zo"))["budget"] == cfg["unlearning"]["steps"] == 50
    # a seed whose x1 run overshoots runs x0.3 (`early_stop.below`), not a rung up; the stop settings the
    # runs get do not hold `below`, so adding a rung below reruns no run of the ladder
    assert C.below(cfg) == [0.3] and "below" not in p.stop_params("muse", "npo", "adam")
    seed2 = {("1", 2): C.OVERSHOT}
    assert p.calibration_runs("muse", "npo", "adam", lambda b, m, o, x, s: seed2.get((x, s), C.REACHED)) == {
        "1": [f"results/unlearned/muse/npo/adam/x1/seed{s}" for s in (0, 1, 2)],
        "0.3": ["results/unlearned/muse/npo/adam/x0.3/seed2"]}
    assert p.stop_reference("wmdp", "npo", "zo", 2) == ["results/eval/wmdp/none/retrain/seed2/none.json"]
    # one shared calibration seed: its ladder decides for all, and every seed's run stops at its ceiling
    raw_cfg = raw("config")
    raw_cfg["calibration"].update(seeds=[0], early_stop={"every": 10, "max_steps": 80})
    shared = plan_of(raw_cfg)
    assert shared.calibration_runs("muse", "npo", "adam", never) == {
        x: [f"results/unlearned/muse/npo/adam/x{x}/seed0"] for x in ("1", "3", "10")}
    assert shared.stop_reference("muse", "npo", "adam", 2) == ["results/eval/muse/none/retrain/seed0/none.json"]
    assert json.loads(shared.stop_params("muse", "npo", "adam"))["budget"] == 80
    assert p.all_outputs()[:2] == ["results/tables/muse.csv", "results/tables/wmdp.csv"]
    assert {"results/ablation/table.csv", "results/tables/calibration.csv"} <= set(p.all_outputs())
    assert len(p.all_outputs()) == 24
    # the attacks' controls: per benchmark and seed a retrain model (the negative) and a positive control,
    # each relearned (one job) and evaluated under all 6 attacks (one job); a positive control is one
    # unlearning job more: 2 benchmarks x 3 seeds x (2 + 2 + 1) = 30 jobs more than before issue 24
    controls = [r for b in cfg["benchmarks"] for r in p.control_runs(b)]
    assert len(controls) == 12 and {o for _, _, o, _ in controls} == {"retrain", "control"}
    assert len(p.reference_evals("muse")) == 3 * 4 + 6 * 6 and len(set(p.all_evals())) == len(p.all_evals())


def test_the_attacks_controls_are_planned_like_runs(plans):
    """The positive control is the unlearn rule's method `none`, optimizer `control` (at x1, from the
    seed's target, with `controls.positive`'s entries); relearning and evaluation take it and the retrain
    model (the negative control) like an unlearned model; the target is evaluated only unattacked and
    quantized (evaluate_reference)."""
    p = plans["smoke"]
    assert p.control_runs("muse") == [("muse", "none", "retrain", 0), ("muse", "none", "control", 0)]
    assert p.attacked_model("muse", "none", "control", 0) == "results/unlearned/muse/none/control/x1/seed0"
    assert p.attacked_model("muse", "none", "retrain", 0) == "results/models/muse/retrain/seed0"
    assert p.attacked_model("muse", "npo", "adam", 0) == "results/unlearned/muse/npo/adam/x1/seed0"
    assert p.eval_files(("muse", "none", "control", 0))[-1] == "results/eval/muse/none/control/seed0/relearn2.json"
    assert p.method_spec("none")["objective"] == "grad_diff" and p.method_spec("npo") == p.config["methods"]["npo"]
    assert p.optimizer_spec("control") == {**p.config["controls"]["positive"]["optimizer"], "steps": 20}
    assert p.run_meta("muse", "none", "control", 0) == (
        '{"benchmark":"muse","grade":"reference","method":"none","optimizer":"control","seed":0}')
    assert p.objective_code("none")[-1] == "objectives/grad_diff.py" and "optim/first.py" in p.optimizer_code("control")
    wc = p.wildcard_constraints()
    path = re.compile(r"unlearned/muse/(?P<method>{})/(?P<optimizer>[a-z_]+)/x1".format(wc["method_or_control"]))
    assert path.fullmatch("unlearned/muse/none/control/x1") and path.fullmatch("unlearned/muse/npo/adam/x1")
    assert not path.fullmatch("unlearned/muse/none/retrain/x1")
    both = re.compile(r"eval/muse/(?P<method>{})/(?P<optimizer>[a-z_]+)/".format(wc["method_or_controls"]))
    assert both.fullmatch("eval/muse/none/retrain/") and both.fullmatch("eval/muse/none/control/")
    assert not both.fullmatch("eval/muse/none/target/")
    # a benchmark without a retrain model has the positive control only
    assert {o for *_, o, _ in plans["paper-wmdp"].control_runs("wmdp_bio")} == {"control"}
    # the name is reserved: no optimizer entry may be called `control`
    cfg = raw("smoke")
    cfg["optimizers"]["control"] = {"type": "adam"}
    with pytest.raises(Exception, match="control"):
        validate(cfg, SCHEMA)


@pytest.mark.parametrize("name", [*PAPER, "tofu"])
def test_job_counts_equal_the_grid(plans, name):
    """The counts test_paper_configs.py's dry run reads from Snakemake's job stats, from the plan."""
    p, cfg = plans[name], plans[name].config
    runs = sum(len(methods_for(cfg, b)) * len(optimizers_for(cfg, b)) * len(cfg["seeds"]) for b in cfg["benchmarks"])
    if cfg.get("ablation"):
        runs += len(cfg["ablation"]["optimizers"]) * len(cfg["ablation"].get("seeds") or cfg["seeds"])
    assert len([*p.runs(), *p.ablation_runs()]) == runs
    entries = [(b, o) for b in cfg["benchmarks"] for _ in methods_for(cfg, b) for o in optimizers_for(cfg, b)]
    if cfg.get("ablation"):
        entries += [(cfg["ablation"]["benchmark"], o) for o in cfg["ablation"]["optimizers"]]
    if C.enabled(cfg):
        assert len(p.calibration_combos()) == len(entries)
        points = [x for c in p.calibration_combos() for xs in p.calibration_points(*c).values() for x in xs]
        assert len(set(points)) == len(points) == sum(len(C.grid(cfg, o)) * len(C.seeds(cfg)) for _, o in entries)
    refs = sum(1 + (b.get("retrain") is not False) for b in cfg["benchmarks"].values())
    models = {p.model_dir(b, r, s) for b in cfg["benchmarks"] for r in p.reference_roles(b) for s in cfg["seeds"]}
    assert len(models) == refs
    assert len(set(p.all_evals())) == len(p.all_evals())
    # hub / folder models are copied (copy_model), the others trained; a paper study trains none, so
    # no tokenizer either (hub models bring their own)
    copied = {(b, r) for b in cfg["benchmarks"] for r in p.reference_roles(b) if p.model_source(b, r) is not None}
    sources = [b.get(r) for b in cfg["benchmarks"].values() for r in ("target", "retrain")]
    assert len(copied) == sum(isinstance(v, str) for v in sources)
    if name in PAPER:
        assert len(copied) == refs and p.model_role_constraint(copied=False) == "(?!)"


# ------------------------------------------------------------------------------ folders and models


def test_a_study_plans_only_inside_its_folder(plans):
    """Each paper / TOFU study writes under results/<name>/; the default studies under results/ only,
    and no two studies share a file (README.md shows the default study's folder)."""
    for name in [*PAPER, "tofu"]:
        files = files_under(plans[name])
        assert files and all(f.startswith(f"results/{name}/") for f in files), name
        assert f"results/{name}/README/findings.md" in files
    default = files_under(plans["smoke"])
    assert "results/README/findings.md" in default
    assert not [f for f in default if f.startswith(tuple(f"results/{n}/" for n in [*PAPER, "tofu"]))]
    assert not set(files_under(plans["paper-wmdp"])) & set(default)


def matches(pattern: str, path: str) -> bool:
    return re.search(f"/({pattern})/seed", path) is not None


@pytest.mark.parametrize("name", STUDIES)
def test_exactly_one_rule_makes_each_model(plans, name):
    """copy_model takes the hub / folder models, train_model the others (the `role` lookbehinds)."""
    p = plans[name]
    copied, trained = p.model_role_constraint(copied=True), p.model_role_constraint(copied=False)
    for b in p.config["benchmarks"]:
        for role in p.reference_roles(b):
            path = p.model_dir(b, role, 0)
            assert matches(copied, path) != matches(trained, path), path
            assert matches(copied, path) == (p.model_source(b, role) is not None)


def test_hub_models_are_copied_on_the_cpu_and_others_trained(plans):
    p = plans["paper-wmdp"]
    # paper-wmdp: the target is a hub id (copied), the benchmark has no retrain model
    assert p.model_role_constraint(copied=False) == "(?!)"
    assert [p.model_source(b, "target") is not None for b in p.config["benchmarks"]] == [True]
    assert not [f for f in files_under(p) if "/retrain/" in f]
    # the smoke study trains every model here
    assert plans["smoke"].model_role_constraint(copied=True) == "(?!)"


# ------------------------------------------------------------------------------ wildcards


def test_wildcards(plans):
    wc = plans["smoke"].wildcard_constraints()
    full = {k: re.compile(v) for k, v in wc.items()}
    assert full["bench"].fullmatch("muse") and not full["bench"].fullmatch("provenance")
    assert not full["bench"].fullmatch("grade_distance")
    assert full["method"].fullmatch("graddiff") and not full["method"].match("none/target")
    assert full["scale"].fullmatch("0.5") and full["scale"].fullmatch("1e-3") and not full["scale"].fullmatch("x1")
    assert full["seed"].fullmatch("12") and not full["seed"].fullmatch("s1")
    assert full["role"].fullmatch("retrain") and not full["role"].fullmatch("tokenizer")


# ------------------------------------------------------------------------------ what an edit replans


def test_adding_an_optimizer_adds_exactly_its_runs():
    cfg = raw("smoke")
    before = plan_of(cfg)
    cfg["optimizers"]["adam2"] = {**cfg["optimizers"]["adam"]}
    for b in cfg["benchmarks"].values():
        if "optimizers" in b:
            b["optimizers"] = [*b["optimizers"], "adam2"]
    after = plan_of(cfg)
    new_runs = set(after.runs()) - set(before.runs())
    assert set(before.runs()) <= set(after.runs())
    assert new_runs and {o for _, _, o, _ in new_runs} == {"adam2"}
    assert {(b, m) for b, m, _, _ in new_runs} == {(b, m) for b, m, o, _ in before.runs() if o == "adam"}
    assert set(after.all_evals()) - set(before.all_evals()) == {f for r in new_runs for f in after.eval_files(r)}
    assert set(before.calibration_combos()) <= set(after.calibration_combos())


@pytest.mark.parametrize("early_stop", [True, False], ids=["ladder", "grid"])
def test_changing_one_grid_changes_only_that_entrys_calibration_points(early_stop):
    cfg = raw("smoke")
    if not early_stop:
        cfg["calibration"]["early_stop"] = False
    before = plan_of(cfg)
    cfg["calibration"]["grids"] = {"signadam": [0.5, 1, 2]}
    after = plan_of(cfg)

    def points(plan, combo):
        return plan.calibration_runs(*combo, never) if early_stop else plan.calibration_points(*combo)

    for combo in before.calibration_combos():
        old, new = points(before, combo), points(after, combo)
        assert new
        if combo[2] == "signadam":
            assert set(new) - set(old) == {"2"} and {k: new[k] for k in old} == old
        else:
            assert new == old
    assert after.calibration_criterion() == before.calibration_criterion()  # the choice jobs' param
    assert list(after.runs()) == list(before.runs()) and after.all_outputs() == before.all_outputs()


def test_one_optimizers_learning_rate_changes_only_its_parameters():
    cfg = raw("smoke")
    before = plan_of(cfg)
    cfg["optimizers"]["signadam"]["lr"] = 0.002
    after = plan_of(cfg)
    old, new = before.config["optimizers"], after.config["optimizers"]
    assert {o for o in old if old[o] != new[o]} == {"signadam"}
    assert after.all_outputs() == before.all_outputs() and list(after.runs()) == list(before.runs())


def test_relearned_checkpoints_kept_or_temporary_changes_no_parameter():
    """`attacks.relearn.keep_checkpoints`: kept in the tiny studies, temporary at paper scale; switching
    it changes nothing the relearning stage reads."""
    cfg = raw("smoke")
    kept = plan_of(cfg)
    cfg["attacks"]["relearn"]["keep_checkpoints"] = False
    temp = plan_of(cfg)
    assert kept.keep_relearned() and not temp.keep_relearned()
    assert kept.relearn_params() == temp.relearn_params() and "keep_checkpoints" not in kept.relearn_params()
    assert all(not plan_of(raw(n)).keep_relearned() for n in ("paper-muse-news", "paper-muse-books", "paper-wmdp"))


def test_code_inputs_tie_each_module_to_the_entries_that_run_it(plans):
    """Editing optim/zeroth.py replans the zeroth-order and hybrid entries only, an objective its methods
    only, a metric module no unlearning (test_reruns.py shows Snakemake rerunning from these inputs)."""
    p = plans["smoke"]
    zeroth = {o for o in p.config["optimizers"] if "optim/zeroth.py" in p.optimizer_code(o)}
    assert zeroth == {"zo", "hybrid"}  # of the smoke study's adam, signadam, zo and hybrid entries
    grad_diff = {m for m in p.config["methods"] if "objectives/grad_diff.py" in p.objective_code(m)}
    assert grad_diff == {"graddiff"}
    unlearn_code = {f for o in p.config["optimizers"] for f in p.optimizer_code(o)}
    unlearn_code |= {f for m in p.config["methods"] for f in p.objective_code(m)}
    assert "eval/muse.py" in EVAL_CODE and not unlearn_code & set(EVAL_CODE)
    assert all((ROOT / "src" / "unlearning" / f).is_file() for f in [*EVAL_CODE, *unlearn_code])


def test_turning_calibration_off_plans_the_x1_models():
    cfg = raw("smoke")
    cfg["calibration"] = False
    p = StudyPlan(validate(cfg, SCHEMA))  # no choices needed
    assert p.calibration_outputs() == [] and p.calibration_table() == []
    assert {p.unlearned_model(*r).split("/")[-2] for r in p.runs()} == {"x1"}
    with pytest.raises(ValueError, match="chosen"):
        StudyPlan(validate(raw("smoke"), SCHEMA)).unlearned_model("muse", "npo", "adam", 0)


def test_launchers_start_one_process_or_one_rank_per_gpu():
    from unlearning.launch import ranks_of, torchrun_launcher

    assert ranks_of({}) == 1 and ranks_of({"gpu": 4}) == 4 and ranks_of({"gpu": 4, "ranks": 2}) == 2
    assert torchrun_launcher(1) == "unlearning"
    assert torchrun_launcher(4) == "torchrun --standalone --nproc-per-node 4 --no-python -- unlearning"


@pytest.mark.slow
def test_the_plan_imports_without_torch():
    """The Snakefile imports the plan and the launchers (workflow/rules/common.smk): no torch there."""
    code = "import sys, unlearning.plan, unlearning.launch; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
