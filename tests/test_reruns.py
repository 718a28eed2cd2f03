"""Partial reruns: changing one config entry or one source module replans exactly what depends on it;
a killed job leaves nothing that looks finished and the rerun gives identical results."""

from __future__ import annotations

import json
import os
import re
import shutil
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


def jobs_in(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job Snakemake announced in ``output`` (a dry run's plan or a run's log)."""
    jobs, rule = set(), None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):", line.strip())
        if m:
            rule = m.group(1)
            jobs.add((rule, ""))
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and rule:
            jobs.discard((rule, ""))
            jobs.add((rule, m.group(1)))
    return jobs


def planned(study: Path, configfile: str = "configs/smoke.yaml") -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute."""
    res = snakemake(study, "-n", "--cores", "1", configfile=configfile)
    return jobs_in(res.stdout + res.stderr)


def core(jobs):
    """Jobs of the computing rules (everything but tables, figures and reports)."""
    return {(r, w) for r, w in jobs if r not in REPORTING and not r.startswith(("report", "lmc", "ablation", "paper"))}


# configs/smoke.yaml's calibration is a ladder with early stopping (grid [0.5, 1]): each entry's run at the
# first rung stops at the retrain model's level, and in the smoke study every entry reached it there, so
# x0.5 is every entry's only grid point (seed 0) and its choice; a run's last check holds the criterion's
# metrics (no calibration_point job). A dry run lists a ladder's rungs one at a time: the first.
FIRST_RUNG = "0.5"


def branch(bench, method, opt, scales=(FIRST_RUNG,)):
    """One entry's jobs: its calibration runs and choice, then the study's run (seed 0)."""
    run = f"bench={bench}, method={method}, optimizer={opt}"
    return ({("unlearn", f"{run}, scale={x}, seed=0") for x in scales}
            | {("calibrate", run)} | {(r, f"{run}, seed=0") for r in ("relearn", "evaluate")})


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


# Which entries list optim/zeroth.py or an objective's module as inputs (so editing it replans them alone):
# tests/test_plan.py, in-process. The metric module below is the integration check of code inputs.


def test_editing_a_metric_module_replans_evaluation_and_the_early_stopped_runs(smoke_copy):
    module = smoke_copy / "src" / "unlearning" / "eval" / "muse.py"
    module.write_text(module.read_text() + "\n# edited\n")
    jobs = core(planned(smoke_copy))
    # the evaluations, the calibration's runs (their early-stopping checks score with the evaluation's
    # code) and so the choices; not the controls' unlearning. The relearning jobs are listed pending the
    # recomputed choices (a dry run cannot know that a choice stays)
    assert {r for r, _ in jobs} == {"evaluate", "evaluate_reference", "unlearn", "calibrate", "relearn"}
    # every unlearned model (muse, wmdp, tofu) and the attacks' two controls (retrain, positive) x 3 benches
    assert len([j for j in jobs if j[0] == "evaluate"]) == 4 + 3 + 2 + 2 * 3
    assert len([j for j in jobs if j[0] == "evaluate_reference"]) == 3  # the target x 3 benches
    # every calibrated entry's first rung, and no control's run
    assert {j for j in jobs if j[0] == "unlearn"} == set().union(
        *({j for j in branch(b, m, o) if j[0] == "unlearn"} for b, m, o in ENTRIES))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_killed_unlearning_job_leaves_nothing_finished_and_rerun_is_identical(smoke_copy):
    scale = f"x{_choice(smoke_copy, 'wmdp', 'npo', 'zo'):g}"  # the study's run: its calibration's choice
    target = smoke_copy / "results" / "unlearned" / "wmdp" / "npo" / "zo" / scale / "seed0"
    evals = smoke_copy / "results" / "eval" / "wmdp" / "npo" / "zo" / "seed0"
    before = _tree_bytes(evals)
    assert before
    log = smoke_copy / "results" / "logs" / "unlearn" / "wmdp" / "npo" / "zo" / scale / "seed0.log"
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


# configs/smoke.yaml's calibrated entries (benchmark, method, optimizer)
ENTRIES = [("muse", "graddiff", "adam"), ("muse", "graddiff", "signadam"), ("muse", "npo", "adam"),
           ("muse", "npo", "signadam"), ("wmdp", "npo", "adam"), ("wmdp", "npo", "zo"), ("wmdp", "npo", "hybrid"),
           ("tofu", "npo", "adam"), ("tofu", "npo", "zo")]


def _set_calibration(study: Path, **changes) -> None:
    cfg_path = study / "configs" / "smoke.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["calibration"] = changes.pop("whole") if "whole" in changes else {**cfg["calibration"], **changes}
    cfg_path.write_text(yaml.safe_dump(cfg))


def _choice(study: Path, bench: str, method: str, opt: str) -> float:
    return json.loads((study / "results" / "calibration" / bench / method / opt / "choice.json").read_text())["scale"]


def _executed(res) -> set[tuple[str, str]]:
    """(rule, wildcards) of the jobs a real run executed."""
    return jobs_in(res.stdout + res.stderr)


def test_widening_one_grid_reruns_its_calibration_and_not_its_unchanged_branch(smoke_copy):
    before = {m: _choice(smoke_copy, "muse", m, "signadam") for m in ("graddiff", "npo")}
    _set_calibration(smoke_copy, grids={"signadam": [0.5, 1, 2]})
    calib = {("calibrate", f"bench=muse, method={m}, optimizer=signadam") for m in ("graddiff", "npo")}
    # the ladder is climbed from its lowest rung, where both runs already reached the level: the new rung
    # x2 is not run. The plan: the two choices and (until they exist) the study's evaluations of that
    # entry, which a dry run cannot tell apart from evaluations whose choice moves
    pending = {("evaluate", f"bench=muse, method={m}, optimizer=signadam, seed=0") for m in ("graddiff", "npo")}
    assert core(planned(smoke_copy)) == calib | pending
    ran = core(_executed(snakemake(smoke_copy, "--cores", "2")))
    after = {m: _choice(smoke_copy, "muse", m, "signadam") for m in ("graddiff", "npo")}
    # no grid point is recomputed; the study's runs rerun only where the choice moved
    moved = {m for m in after if after[m] != before[m]}
    assert ran == calib | set().union(*(branch("muse", m, "signadam", scales=()) - calib for m in moved))
    assert core(planned(smoke_copy)) == set()


def test_replanning_a_finished_study_walks_every_rung_an_earlier_run_climbed(smoke_copy):
    """A ladder that an earlier run climbed rung by rung is walked whole when Snakemake replans the
    study: each rung's record is read though Snakemake does not yet count its checkpoint as done in this
    invocation. (It re-evaluates calibrate's input only after a checkpoint finishes, so the walk stopped
    two rungs deep: the default study's x10 choices were replanned over x1 and x3.) Here the entry's
    x0.5 and x1 runs did not reach the level, as an earlier run left them, and a third rung is added:
    the plan climbs to it."""
    base = smoke_copy / "results/unlearned/muse/graddiff/adam"
    shutil.copytree(base / "x0.5", base / "x1", copy_function=shutil.copy2)
    for rung in ("x0.5", "x1"):
        folder = base / rung / "seed0"
        record = folder / "unlearning.json"
        times = [(p, p.stat()) for p in (record, folder, folder.parent)]
        info = json.loads(record.read_text())
        info["early_stop"]["reached"] = False
        record.write_text(json.dumps(info))
        for path, st in times:  # as the earlier run wrote them: no input looks newer than its job
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _set_calibration(smoke_copy, grids={"adam": [0.5, 1, 2]})
    run = "bench=muse, method=graddiff, optimizer=adam"
    jobs = planned(smoke_copy)
    assert ("unlearn", f"{run}, scale=2, seed=0") in jobs, sorted(j for j in jobs if j[1].startswith(run))
    assert ("unlearn", f"{run}, scale=1, seed=0") not in jobs  # read, not rerun


def test_a_choice_that_moves_reruns_its_branch_and_reuses_the_grid_point(smoke_copy):
    # the smoke model's KnowMem is 0 at every grid point, at the retrain model's level: the ladder's
    # lowest rung reaches it, so a new rung below x0.5 becomes the choice
    points = json.loads((smoke_copy / "results/calibration/muse/graddiff/adam/choice.json").read_text())["points"]
    assert {(p["forget"], p["utility"]) for p in points} == {(0.0, 0.0)}
    _set_calibration(smoke_copy, grids={"adam": [0.25, 0.5, 1]})
    ran = core(_executed(snakemake(smoke_copy, "--cores", "2")))
    assert _choice(smoke_copy, "muse", "graddiff", "adam") == 0.25
    # the study's seed-0 run is the calibration's grid point at 0.25: unlearned once, then attacked
    run = "bench=muse, method=graddiff, optimizer=adam"
    assert {j for j in ran if j[1].startswith(run)} == {
        ("unlearn", f"{run}, scale=0.25, seed=0"), ("calibrate", run), ("relearn", f"{run}, seed=0"),
        ("evaluate", f"{run}, seed=0")}
    rec = json.loads((smoke_copy / "results/eval/muse/graddiff/adam/seed0/none.json").read_text())
    assert rec["lr_multiplier"] == 0.25


def test_turning_calibration_off_runs_every_entry_at_its_written_rate(smoke_copy):
    assert {_choice(smoke_copy, *entry) for entry in ENTRIES} == {float(FIRST_RUNG)}
    _set_calibration(smoke_copy, whole=False)
    jobs = core(planned(smoke_copy))
    # every entry's run at x1, whole (the calibration's runs stopped early at x0.5), then its attacks and
    # evaluations; nothing else
    expected = set().union(*({(r, f"bench={b}, method={m}, optimizer={o}, seed=0") for r in ("relearn", "evaluate")}
                             | {("unlearn", f"bench={b}, method={m}, optimizer={o}, scale=1, seed=0")}
                             for b, m, o in ENTRIES))
    assert jobs == expected


def test_calibrating_each_seed_by_itself_reuses_every_grid_point(smoke_copy):
    """`calibration.seeds: each` with the smoke study's one seed: the same grid points (seed 0's), so no
    unlearning or evaluation reruns; the choices are remade per seed and the reports show them."""
    before = {f: _choice(smoke_copy, *f) for f in [("muse", "graddiff", "adam"), ("wmdp", "npo", "zo")]}
    _set_calibration(smoke_copy, seeds="each")
    ran = _executed(snakemake(smoke_copy, "--cores", "2"))
    assert {r for r, _ in core(ran)} == {"calibrate"}
    for (b, m, o), scale in before.items():
        rec = json.loads((smoke_copy / "results" / "calibration" / b / m / o / "choice.json").read_text())
        assert list(rec["by_seed"]) == ["0"] and rec["by_seed"]["0"]["scale"] == scale
    table = (smoke_copy / "results" / "tables" / "calibration.csv").read_text().splitlines()
    assert table[0].split(",")[4] == "seed" and all(line.split(",")[4] == "0" for line in table[1:])
    assert core(planned(smoke_copy)) == set()
