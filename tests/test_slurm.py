"""The workflow on a real SLURM cluster: the single-node one of scripts/slurm/start.sh.

Every job goes through sbatch with profiles/slurm (as `snakemake --profile profiles/slurm` does from the
repository root), plus test-only overrides on the command line: memory scaled down to fit the test node,
no GPU request (the node has none), and a 2 s delay before the first status check.

Skipped when no cluster answers (`sinfo` missing or failing, or no usable node), or when SLURM_TESTS=0.
Each SLURM job costs 10-14 s of overhead here (Snakemake starts twice inside it), so these run nine jobs,
one of every kind the smoke study's tables need, in short chains from a copy of the completed smoke
study. The plugin's status checks back off by 10 s after every check that finds no job finished (20-30 s
lost per step of a chain here); the tests' Snakemake checks every POLL_S seconds instead (FIXED_POLL).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
MEM_SCALE = 64  # the profile's paper-scale memory / 64: 64 GB -> 1000 MB, fits the test node

pytestmark = pytest.mark.slurm


def cluster_problem() -> str | None:
    """Why the cluster can't be used, or None when it is up."""
    if os.environ.get("SLURM_TESTS", "1") == "0":
        return "SLURM_TESTS=0"
    for tool in ("sinfo", "sbatch", "squeue"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (start the cluster: bash scripts/slurm/start.sh)"
    try:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld not answering (bash scripts/slurm/start.sh)"
    if r.returncode != 0:
        return f"sinfo failed: {r.stderr.strip()} (bash scripts/slurm/start.sh)"
    # comp(leting): the last test's jobs are being cleaned up; the node takes new ones
    if not re.search(r"^(idle|mix|alloc|comp)", r.stdout, re.M):
        return f"no usable node (states: {r.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        pytest.skip(f"no SLURM cluster: {problem}")


def scaled(expr) -> str:
    """A memory expression of `attempt`, divided down to fit the test node, still growing with attempt."""
    # Snakemake evaluates it with only `attempt` (and a few helpers) in scope: plain arithmetic
    return f"max(100, ({expr}) // {MEM_SCALE})"


# The SLURM plugin (2.8) sleeps `init_seconds_before_status_checks` between status checks after one that
# saw a job finish and 10 s longer after each that saw none, up to 180 s: a job of 15 s waits for checks at
# 2, 14 and 36 s. The tests' Snakemake keeps every interval at POLL_S (one `squeue` each, milliseconds),
# so a finished job is seen within POLL_S. Scheduling only: what runs, through sbatch, is unchanged.
POLL_S = 2
FIXED_POLL = (
    "from snakemake_executor_plugin_slurm import Executor; "
    f"Executor.next_seconds_between_status_checks = property(lambda self: {POLL_S}, lambda self, value: None); "
    "from snakemake.cli import main; main()"
)


def cluster_args() -> list[str]:
    """Command-line overrides for the test cluster, derived from the profile itself.

    On the command line, --default-resources/--set-resources replace the profile's whole entries, so
    every rule of the profile is restated: runtime as in the profile, memory scaled, GPU keys dropped.
    """
    cfg = yaml.safe_load((PROFILE / "config.yaml").read_text())
    default = [f"{k}={scaled(v) if k == 'mem_mb' else v}" for k, v in cfg["default-resources"].items()]
    per_rule = [
        f"{rule}:{k}={scaled(v) if k == 'mem_mb' else v}"
        for rule, res in cfg["set-resources"].items()
        for k, v in res.items()
        if k not in ("gpu", "gpu_model", "gres")
    ]
    return [
        "--default-resources", *default,
        "--set-resources", *per_rule,
        "--slurm-init-seconds-before-status-checks", str(POLL_S),
        "--slurm-keep-successful-logs",
    ]  # fmt: skip


def run_on_slurm(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-c", FIXED_POLL, "--profile", str(PROFILE), *cluster_args(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (cwd / "snakemake.out").write_text(r.stdout + r.stderr)  # for a failing test's post-mortem
    return r


SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: \S*?/rule_(\w+)/")


def submissions(out: str) -> list[tuple[str, str]]:
    """(rule, SLURM job id) of every sbatch submission, in order."""
    return [(rule, slurm_id) for _, slurm_id, rule in SUBMITTED.findall(out)]


def slurm_jobs(ids) -> dict[str, dict[str, str]]:
    """SLURM's own record of jobs (squeue keeps finished ones for MinJobAge=3600 s here)."""
    r = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%m|%j"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    jobs = {}
    for line in r.stdout.splitlines():
        jid, state, mem, name = line.strip().split("|")
        jobs[jid] = {"state": state, "mem": mem, "name": name}
    return jobs


def mem_mb(squeue_mem: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", squeue_mem)
    assert m, squeue_mem
    return int(float(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[m.group(2)])


def test_start_script_is_idempotent(cluster):
    """scripts/slurm/start.sh on a running cluster reuses it (what .ci/run relies on) and says so."""
    if os.geteuid() != 0:
        pytest.skip("start.sh runs as root")
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm" / "start.sh")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "slurm up" in r.stdout
    assert cluster_problem() is None


# --- a workflow fully in this test's control: retries with more memory, and a job that fails ---------

FAILING = """
rule all:
    input: "results/flaky.txt", "results/broken.txt"

# needs more memory than attempt 1 gets: simulated out-of-memory kill, then a retry with more
rule flaky:
    output: "results/flaky.txt"
    threads: 1
    shell:
        "if [ {resources.mem_mb} -lt {config[need_mb]} ]; then echo 'simulated out-of-memory' >&2; exit 137; fi; "
        "echo mem_mb={resources.mem_mb} job=${{SLURM_JOB_ID:-none}} > {output}"

rule broken:
    output: "results/broken.txt"
    threads: 1
    shell: "echo 'deliberate failure' >&2; exit 3"
"""


def test_failures_surface_and_retries_ask_for_more_memory(cluster, tmp_path):
    cfg = yaml.safe_load((PROFILE / "config.yaml").read_text())
    default_mem = cfg["default-resources"]["mem_mb"]
    first, second = (eval(scaled(default_mem), {"attempt": a}) for a in (1, 2))
    assert second > first
    (tmp_path / "Snakefile").write_text(FAILING)

    r = run_on_slurm("--retries", "1", "--config", f"need_mb={second}", cwd=tmp_path, timeout=240)
    out = r.stdout + r.stderr

    # the run fails, and says which rule and why
    assert r.returncode != 0, out
    assert "Error in rule broken" in out
    assert not (tmp_path / "results" / "broken.txt").exists()
    # keep-going: the independent job still finished, on its second attempt, with more memory
    assert (tmp_path / "results" / "flaky.txt").read_text().split()[0] == f"mem_mb={second}"

    subs = submissions(out)
    assert [rule for rule, _ in subs].count("flaky") == 2, subs
    assert [rule for rule, _ in subs].count("broken") == 2, subs  # retried once, failed again
    jobs = slurm_jobs([jid for _, jid in subs])
    flaky = [jobs[jid] for rule, jid in subs if rule == "flaky"]
    broken = [jobs[jid] for rule, jid in subs if rule == "broken"]
    assert [j["state"] for j in flaky] == ["FAILED", "COMPLETED"], flaky
    assert [mem_mb(j["mem"]) for j in flaky] == [first, second], flaky  # sbatch --mem grew
    assert [j["state"] for j in broken] == ["FAILED", "FAILED"], broken
    # the job ran under slurmd: the output names the SLURM job that wrote it
    second_flaky = [jid for rule, jid in subs if rule == "flaky"][1]
    assert (tmp_path / "results" / "flaky.txt").read_text().split()[1] == f"job={second_flaky}"


# --- a slice of the smoke study: one job of every rule kind a table needs, in chains of at most 3 ---

# Outputs removed from a copy of the completed smoke study and asked for again: two short chains and
# three single jobs, one job of each rule kind, side by side (a whole chain from scratch is 9 jobs deep, at
# about 30 s each here). Every other input is the smoke study's; each job writes what the local run wrote.
# No calibration_point: the smoke study's calibration stops its runs early, whose last checks hold the
# criterion's metrics (docs/reference/calibration.md).
SLICE = [
    "results/data/tofu", "results/models/tofu/tokenizer", "results/models/tofu/target/seed0",  # data, tokenizer, model
    "results/eval/muse/none/target/seed0/none.json", "results/calibration/muse/graddiff/adam/choice.json",
    "results/unlearned/muse/graddiff/signadam/x0.5/seed0",
    "results/attacked/wmdp/npo/adam/seed0/relearn1", "results/eval/wmdp/npo/adam/seed0/relearn1.json",
    "results/tables/wmdp.csv",  # relearn, evaluate, aggregate
]
RULES = {"prepare_data", "train_tokenizer", "train_model", "evaluate_reference", "calibrate", "unlearn",
         "relearn", "evaluate", "aggregate"}
# what the SLURM jobs wrote, byte for byte the local run's
SAME = ["results/models/tofu/target/seed0/model.safetensors", "results/calibration/muse/graddiff/adam/choice.json",
        "results/unlearned/muse/graddiff/signadam/x0.5/seed0/model.safetensors", "results/tables/wmdp.csv"]
TABLE_COLUMNS = ["benchmark", "method", "optimizer", "grade", "seed", "attack", "metric", "value"]


def test_smoke_slice_runs_under_slurm(cluster, smoke_run, smoke_copy, tmp_path):
    work = smoke_copy
    for path in SLICE:
        assert (work / path).exists(), f"{path}: not in the smoke study any more; update SLICE"
        shutil.rmtree(work / path) if (work / path).is_dir() else (work / path).unlink()
    env_path = os.pathsep.join(p for p in (str(work / "src"), os.environ.get("PYTHONPATH")) if p)

    r = subprocess.run(
        [
            sys.executable, "-c", FIXED_POLL, "--profile", str(PROFILE), *cluster_args(),
            "--configfile", "configs/smoke.yaml", "--slurm-logdir", str(tmp_path / "slurm_logs"),
            "--", *SLICE,
        ],
        cwd=work, capture_output=True, text=True, timeout=600,  # a hang guard: 330 s was outlasted at load 8
        env={**os.environ, "PYTHONPATH": env_path},  # sbatch exports it to the jobs
    )  # fmt: skip
    out = r.stdout + r.stderr
    (tmp_path / "snakemake.out").write_text(out)
    assert r.returncode == 0, out[-6000:]

    # every job of the slice went through sbatch, one of each kind, and SLURM ran each to completion
    subs = submissions(out)
    assert sorted(rule for rule, _ in subs) == sorted(RULES), subs
    stats = re.search(r"Job stats:\n(.*?)\ntotal\s+(\d+)", out, re.S)
    assert stats, out[:3000]
    assert len(subs) == int(stats.group(2)), (stats.group(0), subs)  # no job ran outside SLURM
    jobs = slurm_jobs([jid for _, jid in subs])
    assert {jobs[jid]["state"] for _, jid in subs} == {"COMPLETED"}, jobs

    # the workflow completed: every removed output is back, the table is tidy, and the SLURM jobs wrote
    # what the local run wrote
    assert all((work / path).exists() for path in SLICE)
    lines = (work / "results/tables/wmdp.csv").read_text().splitlines()
    assert lines[0].split(",") == TABLE_COLUMNS and any(",npo,adam," in line for line in lines[1:])
    differ = [p for p in SAME if (work / p).read_bytes() != (smoke_run / p).read_bytes()]
    assert not differ, differ
