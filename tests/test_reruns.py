"""Partial reruns: changing one config entry or one source module replans exactly what depends on it;
a killed job leaves nothing that looks finished and the rerun gives identical results."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import snakemake

pytestmark = pytest.mark.e2e

# Rules downstream of the tables: they rerun whenever any evaluation does.
REPORTING = {"aggregate", "figures", "summary", "all"}


def planned(study: Path, configfile: str = "configs/smoke.yaml") -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute."""
    res = snakemake(study, "-n", "--cores", "1", configfile=configfile)
    jobs, rule = set(), None
    for line in (res.stdout + res.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            jobs.add((rule, ""))
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and rule:
            jobs.discard((rule, ""))
            jobs.add((rule, m.group(1)))
    return jobs


def core(jobs):
    """Jobs of the computing rules (everything but tables, figures and reports)."""
    return {(r, w) for r, w in jobs if r not in REPORTING and not r.startswith(("report", "lmc", "ablation", "paper"))}


def branch(bench, method, opt, rules=("unlearn", "relearn", "evaluate")):
    return {(r, f"bench={bench}, method={method}, optimizer={opt}, seed=0") for r in rules}


def test_nothing_to_do_after_a_complete_run(smoke_copy):
    assert core(planned(smoke_copy)) == set()


def test_one_optimizer_learning_rate_replans_only_its_branch(smoke_copy):
    cfg_path = smoke_copy / "configs" / "smoke.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["optimizers"]["signadam"]["lr"] = 0.002
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert core(planned(smoke_copy)) == branch("muse", "graddiff", "signadam") | branch("muse", "npo", "signadam")


def test_marking_relearned_checkpoints_temporary_replans_nothing(smoke_copy):
    cfg_path = smoke_copy / "configs" / "smoke.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["attacks"]["relearn"]["keep_checkpoints"] = False
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert planned(smoke_copy) == set()


def test_editing_the_zeroth_order_module_replans_zo_and_hybrid_only(smoke_copy):
    module = smoke_copy / "src" / "unlearning" / "optim" / "zeroth.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert core(planned(smoke_copy)) == (branch("wmdp", "npo", "zo") | branch("wmdp", "npo", "hybrid")
                                         | branch("tofu", "npo", "zo"))


def test_editing_a_metric_module_replans_evaluation_not_unlearning(smoke_copy):
    module = smoke_copy / "src" / "unlearning" / "eval" / "muse.py"
    module.write_text(module.read_text() + "\n# edited\n")
    jobs = core(planned(smoke_copy))
    assert {r for r, _ in jobs} == {"evaluate", "evaluate_reference"}
    assert len([j for j in jobs if j[0] == "evaluate"]) == 4 + 3 + 2  # every unlearned model (muse, wmdp, tofu)
    assert len([j for j in jobs if j[0] == "evaluate_reference"]) == 6  # target, retrain x 3 benches


def test_editing_an_objective_replans_its_method_only(smoke_copy):
    module = smoke_copy / "src" / "unlearning" / "objectives" / "grad_diff.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert core(planned(smoke_copy)) == branch("muse", "graddiff", "adam") | branch("muse", "graddiff", "signadam")


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_killed_unlearning_job_leaves_nothing_finished_and_rerun_is_identical(smoke_copy):
    target = smoke_copy / "results" / "unlearned" / "wmdp" / "npo" / "zo" / "seed0"
    evals = smoke_copy / "results" / "eval" / "wmdp" / "npo" / "zo" / "seed0"
    before = _tree_bytes(evals)
    assert before
    log = smoke_copy / "results" / "logs" / "unlearn" / "wmdp" / "npo" / "zo" / "seed0.log"
    log.unlink()
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "configs/smoke.yaml",
           "--forcerun", str(target.relative_to(smoke_copy))]
    proc = subprocess.Popen(cmd, cwd=smoke_copy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    # Kill the whole process group (Snakemake and the job) as soon as the job is computing.
    while time.time() < deadline and not (log.exists() and "unlearning" in log.read_text(errors="ignore")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Whatever was left, nothing half-written carries the final name: the folder is either absent or
    # complete, and a rerun repairs the study.
    if target.exists():
        assert (target / "model.safetensors").exists() and (target / "unlearning.json").exists()
    # A Snakemake killed mid-job leaves its directory lock behind (it says so and asks for --unlock).
    snakemake(smoke_copy, "--unlock")
    snakemake(smoke_copy, "--cores", "2", "--rerun-incomplete")
    assert _tree_bytes(evals) == before
