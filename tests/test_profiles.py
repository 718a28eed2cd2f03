"""The Snakemake profiles in profiles/ and scripts/install-slurm-profile.sh.

Scheduling only: these tests run Snakemake on tiny throwaway Snakefiles that carry the workflow's rule
names, so they check what the profiles ask for (executor, resources per rule, attempt-dependent memory
and runtime, retries) without running the study. No cluster needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
INSTALL = REPO / "scripts" / "install-slurm-profile.sh"

GPU_RULES = ["train_model", "unlearn", "relearn", "evaluate", "evaluate_reference", "lmc", "calibration_point"]
CPU_RULES = ["prepare_data", "train_tokenizer", "aggregate", "figures", "summary", "report_tables",
             "lmc_figure", "ablation", "report_findings", "report_provenance", "report_grade_distance",
             "report_tofu_table", "calibrate", "report_calibration_table", "report_calibration_figure",
             "copy_model"]
ALL_RULES = CPU_RULES + GPU_RULES


def load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def evaluate(expr, attempt: int):
    """Evaluate a resource value the way Snakemake does (a Python expression of `attempt`)."""
    if isinstance(expr, (int, float)):
        return expr
    return eval(str(expr), {"attempt": attempt})  # noqa: S307 - our own profile


def stub_workflow(tmp_path: Path, shell: str = "touch {output}") -> Path:
    """A Snakefile with the workflow's rule names, each writing results/<rule>.txt."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Snakefile").write_text(
        f"RULES = {ALL_RULES!r}\n"
        "rule all:\n"
        "    input: expand('results/{r}.txt', r=RULES)\n"
        "for _r in RULES:\n"
        "    rule:\n"
        "        name: _r\n"
        "        output: f'results/{_r}.txt'\n"
        "        threads: 1\n"
        f"        shell: {shell!r}\n"
    )
    return tmp_path


def snakemake(*args, cwd: Path, env: dict | None = None, timeout: int = 120):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dry_run_resources(out: str) -> dict[str, dict[str, str]]:
    """rule name -> {resource: value} from the `resources:` lines of a dry run."""
    found: dict[str, dict[str, str]] = {}
    rule = None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+resources: (.*)$", line)
        if m and rule:
            found[rule] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
    return found


# --- layout -----------------------------------------------------------------------------------------


def test_profiles_exist_and_the_default_profile_names_no_key_of_another():
    assert (PROFILES / "local" / "config.yaml").is_file()
    assert (PROFILES / "slurm" / "config.yaml").is_file()
    # profiles/default is loaded implicitly and replaces whole keys of the profile the user names: it
    # may only hold scheduling keys that no named profile sets
    default = load("default")
    assert set(default) == {"scheduler-subsample", "max-jobs-per-timespan"}
    assert not set(default) & (set(load("local")) | set(load("slurm")) | set(load("workstation")))


@pytest.mark.parametrize("name", ["local", "slurm", "workstation", "default"])
def test_profile_is_scheduling_only(name):
    cfg = load(name)
    forbidden = {"config", "configfile", "configfiles", "directory", "snakefile", "software-deployment-method", "sdm"}
    assert not forbidden & set(cfg), f"profiles/{name} should hold scheduling only"


def test_local_profile():
    cfg = load("local")
    assert cfg["executor"] == "local"
    assert cfg["cores"] == 2
    assert cfg["keep-going"] is False
    assert cfg["rerun-incomplete"] is True
    assert cfg["printshellcmds"] is True
    text = (PROFILES / "local" / "config.yaml").read_text()
    assert not re.search(r"^\s*gpu\w*\s*:", text, re.M), "the local profile asks for no GPU resources"


# --- slurm profile: what it asks for ------------------------------------------------------------------


def test_slurm_profile_settings():
    cfg = load("slurm")
    assert cfg["executor"] == "slurm"
    assert cfg["retries"] >= 1
    assert cfg["jobs"] >= 1
    assert cfg["latency-wait"] >= 10
    # the test cluster has no accounting: sacct fails and plugin 2.x would wait for ever
    assert cfg["slurm-status-command"] == "squeue"
    # test-only tuning belongs on the test's command line, not in the user's profile
    assert "slurm-init-seconds-before-status-checks" not in cfg
    # flags the plugin manages must not be smuggled through slurm_extra
    for res in [cfg.get("default-resources", {}), *cfg.get("set-resources", {}).values()]:
        assert "slurm_extra" not in res


def test_slurm_profile_rule_resources():
    cfg = load("slurm")
    per_rule = cfg["set-resources"]
    assert set(per_rule) == set(ALL_RULES)
    for rule in GPU_RULES:
        assert per_rule[rule]["gpu"] == 1, rule
    for rule in CPU_RULES:
        assert not {"gpu", "gpu_model", "gres"} & set(per_rule[rule]), rule
    for rule, res in [("default-resources", cfg["default-resources"]), *per_rule.items()]:
        for key in ("mem_mb", "runtime"):
            first, second, third = (evaluate(res[key], a) for a in (1, 2, 3))
            assert 0 < first < second < third, f"{rule} {key} must grow with attempt"
    # paper scale: 7B models on the GPU rules need far more than the CPU stages
    assert min(evaluate(per_rule[r]["mem_mb"], 1) for r in GPU_RULES) >= 32000
    assert min(evaluate(per_rule[r]["runtime"], 1) for r in GPU_RULES) >= 60


def test_slurm_rule_names_match_workflow():
    """Every rule the profile sizes exists in workflow/rules (once the workflow is there)."""
    smk = list((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]
    text = "\n".join(p.read_text() for p in smk if p.is_file())
    defined = set(re.findall(r"^\s*(?:rule|checkpoint) (\w+)\s*:", text, re.M)) | set(
        re.findall(r"^\s*name:\s*['\"](\w+)['\"]", text, re.M)
    )
    if not defined:
        pytest.skip("workflow rules not written yet")
    sized = set(load("slurm")["set-resources"])
    assert not sized - defined, f"profiles/slurm sizes rules the workflow does not define: {sorted(sized - defined)}"
    # and every rule that runs a job is sized (else it gets the small default on the cluster)
    unsized = defined - sized - {"all"}
    assert not unsized, f"rules without resources in profiles/slurm: {sorted(unsized)}"


@pytest.mark.slow
def test_slurm_profile_resources_as_snakemake_sees_them(tmp_path):
    wf = stub_workflow(tmp_path)
    r = snakemake("--profile", str(PROFILES / "slurm"), "-n", cwd=wf)
    assert r.returncode == 0, r.stderr + r.stdout
    res = dry_run_resources(r.stdout + r.stderr)
    assert set(ALL_RULES) <= set(res), res
    for rule in GPU_RULES:
        assert res[rule].get("gpu") == "1", (rule, res[rule])
    for rule in CPU_RULES:
        assert "gpu" not in res[rule], (rule, res[rule])
    assert res["train_model"]["mem_mb"] == str(evaluate(load("slurm")["set-resources"]["train_model"]["mem_mb"], 1))


@pytest.mark.slow
def test_retry_asks_for_more_memory_and_time(tmp_path):
    """A job that fails for lack of memory is retried with the attempt-2 request (real run, local executor)."""
    cfg = load("slurm")
    spec = cfg["set-resources"]["unlearn"]
    need = evaluate(spec["mem_mb"], 2)  # more than attempt 1 gets
    wf = stub_workflow(
        tmp_path,
        "if [ {resources.mem_mb} -lt %d ]; then echo 'simulated out-of-memory' >&2; exit 137; fi; "
        "echo {resources.mem_mb} {resources.runtime} > {output}" % need,
    )
    r = snakemake(
        "--profile", str(PROFILES / "slurm"), "--executor", "local", "--cores", "1", "results/unlearn.txt",
        cwd=wf,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "simulated out-of-memory" in r.stderr + r.stdout
    mem, runtime = (wf / "results" / "unlearn.txt").read_text().split()
    assert int(mem) == evaluate(spec["mem_mb"], 2)
    assert int(runtime) == evaluate(spec["runtime"], 2)


@pytest.mark.slow
def test_local_profile_runs(tmp_path):
    wf = stub_workflow(tmp_path)
    r = snakemake("--profile", str(PROFILES / "local"), cwd=wf)
    assert r.returncode == 0, r.stderr + r.stdout
    assert all((wf / "results" / f"{rule}.txt").is_file() for rule in ALL_RULES)


@pytest.mark.slow
def test_local_profile_stops_at_first_failure(tmp_path):
    wf = stub_workflow(tmp_path, "echo deliberate >&2; exit 1")
    r = snakemake("--profile", str(PROFILES / "local"), cwd=wf)
    assert r.returncode != 0
    assert "deliberate" in r.stderr + r.stdout


# --- install-slurm-profile.sh ----------------------------------------------------------------------------


def install(*args, xdg: Path):
    return subprocess.run(
        ["bash", str(INSTALL), *args],
        env={**os.environ, "XDG_CONFIG_HOME": str(xdg)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_install_slurm_profile(tmp_path):
    xdg = tmp_path / "xdg"
    r = install("proj123", "batch", "a100", "--gpu-partition", "gpu", xdg=xdg)
    assert r.returncode == 0, r.stderr
    installed = xdg / "snakemake" / "slurm" / "config.yaml"
    cfg = yaml.safe_load(installed.read_text())
    src = load("slurm")
    assert cfg["default-resources"]["slurm_account"] == "proj123"
    assert cfg["default-resources"]["slurm_partition"] == "batch"
    assert "slurm-status-command" not in cfg  # real clusters: the plugin's default (sacct)
    for rule in GPU_RULES:
        assert cfg["set-resources"][rule]["gpu_model"] == "a100"
        assert cfg["set-resources"][rule]["slurm_partition"] == "gpu"
    for rule in CPU_RULES:
        assert "gpu_model" not in cfg["set-resources"][rule]
        assert cfg["set-resources"][rule]["mem_mb"] == src["set-resources"][rule]["mem_mb"]
    for key in ("executor", "retries", "jobs", "latency-wait"):
        assert cfg[key] == src[key]
    # a second run with the same arguments changes nothing and leaves no backup
    before = installed.read_text()
    assert install("proj123", "batch", "a100", "--gpu-partition", "gpu", xdg=xdg).returncode == 0
    assert installed.read_text() == before
    assert not (installed.parent / "config.yaml.bak").exists()


@pytest.mark.slow
def test_profile_name_slurm_finds_installed_profile(tmp_path):
    """`snakemake --profile slurm`, typed as is, finds the installed profile (not profiles/)."""
    xdg = tmp_path / "xdg"
    assert install("proj123", "batch", xdg=xdg).returncode == 0
    wf = stub_workflow(tmp_path / "wf")
    r = snakemake("--profile", "slurm", "-n", cwd=wf, env={"XDG_CONFIG_HOME": str(xdg)})
    assert r.returncode == 0, r.stderr + r.stdout
    res = dry_run_resources(r.stdout + r.stderr)
    assert res["train_model"]["slurm_account"] == "proj123"
    assert res["train_model"]["slurm_partition"] == "batch"
    assert res["train_model"]["gpu"] == "1"
    assert "gpu_model" not in res["train_model"]


@pytest.mark.parametrize(
    "args",
    [[], ["only-account"], ["acc", "part", "model", "extra"], ["bad account", "part"], ["acc", "p;rm"]],
)
@pytest.mark.slow
def test_install_slurm_profile_rejects_bad_arguments(tmp_path, args):
    r = install(*args, xdg=tmp_path)
    assert r.returncode != 0
    assert "install-slurm-profile.sh" in r.stderr
    assert not (tmp_path / "snakemake").exists()


# --- sharded unlearning (issue 16) ------------------------------------------------------------------
@pytest.mark.slow
def test_install_with_unlearn_gpus_shards_the_unlearn_rule(tmp_path):
    xdg = tmp_path / "xdg"
    r = install("proj123", "batch", "h100", "--unlearn-gpus", "4", xdg=xdg)
    assert r.returncode == 0, r.stderr
    profile = xdg / "snakemake" / "slurm"
    cfg = yaml.safe_load((profile / "config.yaml").read_text())
    unlearn = cfg["set-resources"]["unlearn"]
    assert unlearn["gpu"] == 4 and unlearn["gpu_model"] == "h100"
    assert evaluate(unlearn["mem_mb"], 1) == 120000 and evaluate(unlearn["mem_mb"], 2) == 240000
    relearn = cfg["set-resources"]["relearn"]  # relearning is first-order training of the whole model
    assert relearn["gpu"] == 4 and evaluate(relearn["mem_mb"], 1) == 120000
    # torchrun's 4 ranks get 4 CPUs each (sbatch --cpus-per-task), not the rule's one thread
    assert unlearn["cpus_per_task"] == relearn["cpus_per_task"] == 16
    assert "cpus_per_task" not in cfg["set-resources"]["evaluate"]
    assert cfg["set-threads"] == {"report_grade_distance": 9}  # a thread per streamed group
    for rule in set(GPU_RULES) - {"unlearn", "relearn"}:  # only unlearning and relearning shard
        assert cfg["set-resources"][rule]["gpu"] == 1, rule
    assert install("p", "b", "--unlearn-gpus", "0", xdg=tmp_path / "x").returncode != 0
    # the workflow turns 4 GPUs per job into torchrun with 4 ranks (dry run of a paper config, one run)
    results = yaml.safe_load((REPO / "configs" / "paper-muse-news.yaml").read_text())["results"]
    target = f"{results}/unlearned/muse_news/npo/adam/x1/seed0"
    r = snakemake(target, "-n", "-p", "--profile", str(profile), "--configfile", "configs/paper-muse-news.yaml",
                  cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "torchrun --standalone --nproc-per-node 4 --no-python -- unlearning --threads 1 unlearn" in r.stdout
    # every optimizer type shards now (issue 23), 8-bit AdamW included: it plans torchrun too
    r = snakemake(f"{results}/unlearned/muse_news/npo/adamw8bit/x1/seed0", "-n", "-p", "--profile", str(profile),
                  "--configfile", "configs/paper-muse-news.yaml", cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "torchrun --standalone --nproc-per-node 4 --no-python -- unlearning --threads 1 unlearn" in r.stdout


# --- storage and larger cards on retry (issue 16) ---------------------------------------------------
def test_rules_that_write_models_request_disk_for_them():
    """disk_mb covers the models a job writes (7B in bf16: 13.5 GB each; README, "Storage")."""
    per_rule = load("slurm")["set-resources"]
    for rule in ("train_model", "copy_model", "unlearn"):
        assert evaluate(per_rule[rule]["disk_mb"], 1) >= 13500, rule
    steps = max(len(yaml.safe_load(p.read_text())["attacks"]["relearn"]["steps"])
                for p in (REPO / "configs").glob("paper-*.yaml"))
    assert evaluate(per_rule["relearn"]["disk_mb"], 1) >= 13500 * steps
    # a copy is a CPU job: small memory, no GPU (it downloads and writes files)
    assert not {"gpu", "gpu_model", "gres"} & set(per_rule["copy_model"])
    assert evaluate(per_rule["copy_model"]["mem_mb"], 1) <= 8000


@pytest.mark.slow
def test_gpu_retry_moves_to_the_larger_card(tmp_path):
    """--gpu-models/--gpu-constraints: attempt 1 asks for the first card, the retry for the next
    (a real run of the installed profile, local executor; the job fails unless it got the larger card)."""
    xdg = tmp_path / "xdg"
    r = install("proj123", "batch", "--gpu-models", "a100,h100", "--gpu-constraints", "gpu40g,gpu80g,gpu141g",
                xdg=xdg)
    assert r.returncode == 0, r.stderr
    profile = xdg / "snakemake" / "slurm"
    cfg = yaml.safe_load((profile / "config.yaml").read_text())
    for rule in GPU_RULES:
        spec = cfg["set-resources"][rule]
        assert [evaluate(spec["gpu_model"], a) for a in (1, 2, 3)] == ["a100", "h100", "h100"], rule
        assert [evaluate(spec["constraint"], a) for a in (1, 2, 3)] == ["gpu40g", "gpu80g", "gpu141g"], rule
    for rule in CPU_RULES:
        assert not {"gpu_model", "constraint"} & set(cfg["set-resources"][rule]), rule
    wf = stub_workflow(
        tmp_path / "wf",
        "if [ {resources.gpu_model} != h100 ]; then echo 'simulated CUDA out of memory' >&2; exit 1; fi; "
        "echo {resources.gpu_model} {resources.constraint} > {output}",
    )
    r = snakemake("--profile", str(profile), "--executor", "local", "--cores", "1", "results/unlearn.txt", cwd=wf)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "simulated CUDA out of memory" in r.stderr + r.stdout
    assert (wf / "results" / "unlearn.txt").read_text().split() == ["h100", "gpu80g"]


@pytest.mark.parametrize("args", [["a", "b", "a100", "--gpu-models", "a100,h100"], ["a", "b", "--gpu-models", "a100,"],
                                  ["a", "b", "--gpu-constraints", "x;y"]])
@pytest.mark.slow
def test_install_rejects_bad_card_lists(tmp_path, args):
    r = install(*args, xdg=tmp_path)
    assert r.returncode != 0
    assert "install-slurm-profile.sh: error" in r.stderr
    assert not (tmp_path / "snakemake").exists()
