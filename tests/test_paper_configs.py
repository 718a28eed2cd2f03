"""The paper-scale studies plan their full DAG offline, with job counts equal to the configured grid."""

from __future__ import annotations

import re

import pytest
import yaml

from unlearning.config import methods_for, optimizers_for, validate

from conftest import ROOT, make_study, snakemake

STUDIES = ["paper-muse-news", "paper-muse-books", "paper-wmdp", "paper-tofu"]


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("paper") / "study")


@pytest.mark.parametrize("name", STUDIES)
def test_dry_run_job_counts_equal_the_grid(study, name):
    cfg = validate(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))
    res = snakemake(study, "-n", "--cores", "1", configfile=f"configs/{name}.yaml", timeout=300)
    counts = job_counts(res.stdout + res.stderr)
    runs = sum(len(methods_for(cfg, b)) * len(optimizers_for(cfg, b)) * len(cfg["seeds"])
               for b in cfg["benchmarks"])
    assert counts["unlearn"] == counts["relearn"] == counts["evaluate"] == runs
    refs = sum(1 + (b.get("retrain") is not False) for b in cfg["benchmarks"].values())
    assert counts["train_model"] == counts["evaluate_reference"] == refs
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
