"""The paper-scale studies follow the labs' protocols, and plan their full DAG offline with job counts equal to
the configured grid (one dry run here; every paper study's counts in-process in tests/test_plan.py)."""

from __future__ import annotations

import re

import pytest
import yaml

from unlearning import calibration as C
from unlearning.config import methods_for, optimizers_for, validate
from unlearning.plan import StudyPlan

from conftest import ROOT, make_study, snakemake

STUDIES = ["paper-muse-news", "paper-muse-books", "paper-wmdp", "paper-wmdp-cyber", "paper-tofu"]


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("paper") / "study")


# The integration check: the rules plan what the study plan says (tests/test_plan.py checks the plan's
# counts against the grid for every paper study in-process). paper-muse-news has the ablation.
@pytest.mark.parametrize("name", ["paper-muse-news"])
@pytest.mark.slow
def test_dry_run_job_counts_equal_the_grid(study, name):
    cfg = validate(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))
    res = snakemake(study, "-n", "--cores", "1", configfile=f"configs/{name}.yaml", timeout=300)
    counts = job_counts(res.stdout + res.stderr)
    runs = sum(len(methods_for(cfg, b)) * len(optimizers_for(cfg, b)) * len(cfg["seeds"])
               for b in cfg["benchmarks"])
    if cfg.get("ablation"):  # the hybrid ablation's own runs (findings A1, A2)
        runs += len(cfg["ablation"]["optimizers"]) * len(cfg["ablation"].get("seeds") or cfg["seeds"])
    plan = StudyPlan(cfg, chosen=lambda b, m, o, s: "1")
    assert runs == len([*plan.runs(), *plan.ablation_runs()])
    # the attacks' controls (retrain model, positive control) are relearned and evaluated like runs
    controls = [r for b in cfg["benchmarks"] for r in plan.control_runs(b)]
    assert counts["relearn"] == counts["evaluate"] == runs + len(controls)
    # calibration: every entry unlearns at each grid multiplier (seed 0); the other seeds' runs at the
    # chosen multiplier are planned once the `calibrate` checkpoint has run
    entries = [(b, o) for b in cfg["benchmarks"] for _ in methods_for(cfg, b) for o in optimizers_for(cfg, b)]
    if cfg.get("ablation"):
        entries += [(cfg["ablation"]["benchmark"], o) for o in cfg["ablation"]["optimizers"]]
    points = sum(len(C.grid(cfg, o)) * len(C.seeds(cfg)) for _, o in entries)
    assert counts["calibrate"] == len(entries) == len(plan.calibration_combos())
    positives = len([r for r in controls if r[2] == "control"])  # one thin unlearning each
    assert counts["unlearn"] - positives == counts["calibration_point"] == points
    refs = sum(1 + (b.get("retrain") is not False) for b in cfg["benchmarks"].values())
    assert counts["evaluate_reference"] == len(cfg["benchmarks"])  # the target; the retrain model: `evaluate`
    # hub / folder models are copied by the CPU rule copy_model, the others trained (a GPU job)
    copied = sum(isinstance(b.get(role), str) for b in cfg["benchmarks"].values() for role in ("target", "retrain"))
    assert counts.get("copy_model", 0) == copied and counts.get("train_model", 0) == refs - copied
    assert counts["prepare_data"] == len(cfg["benchmarks"])
    # hub models bring their own tokenizer: none is trained
    assert "train_tokenizer" not in counts
    assert counts["aggregate"] == len(cfg["benchmarks"])


def test_every_grade_is_in_every_paper_study():
    from unlearning.optim import GRADES

    for name in STUDIES:
        cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        grades = {GRADES[o["type"]] for o in cfg["optimizers"].values()}
        assert grades == {"second", "first", "compressed", "zeroth", "hybrid"}, name
        assert len(cfg["seeds"]) >= 3


def _cfg(name: str) -> dict:
    return validate(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("name", ["paper-muse-news", "paper-muse-books"])
def test_muse_studies_follow_the_labs_protocol(name):
    cfg = _cfg(name)
    news = name.endswith("news")
    # unlearning: lr 1e-5, batch 4, 2048-token chunks of the joined text, 10 epochs (News) / 1 (Books)
    assert cfg["model"]["max_len"] == 2048 and cfg["unlearning"]["chunking"] == "concat"
    assert cfg["unlearning"]["batch_size"] == 4 and cfg["unlearning"]["epochs"] == (10 if news else 1)
    assert cfg["optimizers"]["adam"]["lr"] == 1e-5
    assert cfg["optimizers"]["sam"]["rho"] == 0.01  # the lab's MUSE SAM
    # relearning: whole forget set, cosine, no warmup, a run per count; the paper reports Relearn100
    rel = cfg["attacks"]["relearn"]
    assert rel["steps"] == ([100, 125, 150] if news else [50, 75, 100]) and rel["report"] == 100
    assert (rel["fraction"], rel["schedule"], rel["warmup"], rel["lr"], rel["batch_size"]) == (1.0, "cosine", 0.0,
                                                                                                1e-5, 4)


@pytest.mark.parametrize("name", ["paper-wmdp", "paper-wmdp-cyber"])
def test_wmdp_studies_follow_the_labs_protocol(name):
    from unlearning.prompts import mc_subject

    cfg = _cfg(name)
    (bench,) = cfg["benchmarks"].values()
    assert mc_subject(bench) == ("biology" if name == "paper-wmdp" else "cybersecurity")
    if name == "paper-wmdp":  # the paper's forget metric; the gated corpus is read from a local file
        assert bench["dataset"] == "wmdp-bio" and bench["data_options"]["forget_corpus"]
    assert cfg["optimizers"]["sam"]["rho"] == 0.1  # the lab's WMDP SAM
    assert (cfg["optimizers"]["rs"]["sigma"], cfg["optimizers"]["rs"]["n_samples"]) == (0.1, 3)
    rel = cfg["attacks"]["relearn"]
    assert (rel["fraction"], rel["warmup"], rel["lr"], rel["batch_size"], max(rel["steps"])) == (1.0, 0.1, 1e-5, 4, 100)
    assert cfg["evaluation"]["mc_bos"] is True


def test_paper_zeroth_order_samples_the_unit_sphere():
    for name in STUDIES:
        cfg = _cfg(name)
        entries = [*cfg["optimizers"].values(), *(cfg.get("ablation") or {}).get("optimizers", {}).values()]
        zo = [e for e in entries if e["type"] in ("zo_sgd", "adazo")]
        zo += [e["zo"] for e in entries if e["type"] == "hybrid"]
        assert zo and all(e["direction"] == "sphere" for e in zo), name


def test_the_ablation_runs_at_paper_scale_with_one_to_one_and_other_ratios():
    cfg = _cfg("paper-muse-news")
    abl = cfg["ablation"]
    assert abl["method"] in cfg["methods"] and abl["benchmark"] in cfg["benchmarks"]
    ratios = {(e["n_fo"], e["n_zo"]) for e in [*abl["optimizers"].values(), cfg["optimizers"]["hybrid"]]}
    assert {(20, 20), (20, 40), (40, 20), (10, 10), (40, 40)} == ratios


def test_tofu_study_follows_tofus_recipe():
    from unlearning.data.io import qa_document
    from unlearning.lr_schedule import warmup_steps

    cfg = _cfg("paper-tofu")
    bench = cfg["benchmarks"]["tofu"]
    # locuslab/tofu config/model_config.yaml (llama2-7b tags) = open-unlearning's Llama-2-7b-chat-hf template
    assert str(qa_document("Who?", "Me.", bench["qa_template"])) == "[INST] Who? [/INST]Me."
    un = cfg["unlearning"]
    # forget.py: max_steps = 5 epochs x 400 // (4 per GPU x 4 accumulation x 2 GPUs); warmup one epoch
    assert (un["batch_size"], un["steps"], un["schedule"]) == (32, 5 * 400 // 32, "linear")
    assert warmup_steps(un["warmup_epochs"], 400, un["batch_size"]) == max(1, 400 // 32)
    entries = list(cfg["optimizers"].values())
    entries += [e[part] for e in entries if e["type"] == "hybrid" for part in ("fo", "zo")]
    assert all(e["weight_decay"] == 0.01 for e in entries if e["type"] != "hybrid")
    adam = cfg["optimizers"]["adam"]
    assert (adam["type"], adam["lr"], adam["weight_decay"]) == ("adamw", 1e-5, 0.01)  # paged_adamw_32bit
    ev = cfg["evaluation"]
    assert (ev["tofu_max_items"], ev["tofu_max_new_tokens"]) == (300, 200)  # ds_size 300; 200-token cap
