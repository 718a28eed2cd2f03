"""profiles/workstation: a machine with GPUs and no scheduler (issue 28).

The card count is a Snakemake resource (`--resources gpu=N`), each GPU rule asks for its cards in the
profile, and src/unlearning/gpu_pool.py gives each running job its own (CUDA_VISIBLE_DEVICES). On the
CPU with fake cards: stub jobs record what they see and when they ran, through the workflow's own
workflow/rules/gpus.smk, the fork server and the real workflow's dry runs.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unlearning import forkserver, gpu_pool

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "workstation"
BIN = str(Path(sys.executable).parent)  # `python` of the jobs' prefix, as common.smk puts it on PATH

RECORD = """\
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
json.dump({"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()},
          open(sys.argv[1], "w"))
"""


def stub_workflow(path: Path, gpu_jobs: dict[str, int], cpu_jobs: int = 0, sleep: float = 1.5) -> Path:
    """A Snakefile including the workflow's gpus.smk: `gpu_jobs` rule -> job count (rule names of the
    profile, so its set-resources apply), plus `cpu_jobs` jobs of a CPU rule; each job records what it saw."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "record.py").write_text(RECORD)
    outs = [f"out/{r}{i}.json" for r, n in gpu_jobs.items() for i in range(n)]
    outs += [f"out/aggregate{i}.json" for i in range(cpu_jobs)]
    rules = "".join(
        f"rule {r}:\n"
        f"    output: 'out/{r}{{i}}.json'\n"
        "    params: claim=lambda wc, resources: gpu_claim(resources)\n"
        f"    shell: '{{params.claim}}python record.py {{output}} {sleep}'\n"
        for r in gpu_jobs
    )
    (path / "Snakefile").write_text(
        "import os, sys\n"
        f"include: {str(REPO / 'workflow' / 'rules' / 'gpus.smk')!r}\n"
        f"rule all:\n    input: {outs!r}\n"
        + rules
        + "rule aggregate:\n"
        "    output: 'out/aggregate{i}.json'\n"
        f"    shell: 'python record.py {{output}} {sleep}'\n"
        "onstart:\n    hide_cards_from_cpu_jobs()\n"
        "check_machine_gpus()\n"
    )
    return path


def snakemake(*args, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", forkserver.ENV)}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**base, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
                                                **(env or {})})


def records(wf: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((wf / "out").glob("*.json"))}


def max_overlap(runs: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def overlapping(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def profile_copy(tmp: Path, **gpus: int) -> Path:
    """profiles/workstation with other GPU counts per rule (as a user's edited copy would have)."""
    cfg = yaml.safe_load((PROFILE / "config.yaml").read_text())
    for rule, n in gpus.items():
        cfg["set-resources"][rule]["gpu"] = n
    (tmp / "profile").mkdir(parents=True, exist_ok=True)
    (tmp / "profile" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "profile"


# --- the profile --------------------------------------------------------------------------------------


def test_workstation_profile_asks_for_the_slurm_profiles_gpus():
    ws = yaml.safe_load((PROFILE / "config.yaml").read_text())
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert ws["executor"] == "local"
    assert ws["resources"] == {"gpu": 1}  # a machine has at least one card; --resources gpu=N says more
    gpu_rules = {r: s["gpu"] for r, s in slurm["set-resources"].items() if "gpu" in s}
    assert gpu_rules and {r: s["gpu"] for r, s in ws["set-resources"].items()} == gpu_rules
    assert set(yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())).isdisjoint(ws)


# --- running jobs with fake cards -------------------------------------------------------------------


@pytest.mark.slow
def test_two_cards_four_gpu_jobs_two_at_a_time_each_on_its_own_card(tmp_path):
    wf = stub_workflow(tmp_path / "wf", {"evaluate": 4}, cpu_jobs=3)
    r = snakemake("--profile", str(PROFILE), "--resources", "gpu=2", "--cores", "6", cwd=wf,
                  env={gpu_pool.LOCKS_ENV: str(tmp_path / "locks")})
    assert r.returncode == 0, r.stderr[-3000:]
    rec = records(wf)
    gpu = [v for k, v in rec.items() if k.startswith("evaluate")]
    cpu = [v for k, v in rec.items() if k.startswith("aggregate")]
    assert len(gpu) == 4 and len(cpu) == 3
    assert max_overlap(gpu) == 2  # never more than the machine's cards, and both cards used at once
    assert {g["cvd"] for g in gpu} == {"0", "1"}
    for a, b in itertools.combinations(gpu, 2):
        if overlapping(a, b):
            assert a["cvd"] != b["cvd"], (a, b)
    # CPU-only jobs run beside the GPU jobs (6 cores) and see no card
    assert all(c["cvd"] == "" for c in cpu)
    assert any(overlapping(c, g) for c in cpu for g in gpu)
    assert max_overlap(gpu + cpu) > 2


@pytest.mark.slow
def test_a_sharded_job_given_two_cards_sees_both(tmp_path):
    wf = stub_workflow(tmp_path / "wf", {"unlearn": 1, "evaluate": 2})
    profile = profile_copy(tmp_path, unlearn=2)
    r = snakemake("--profile", str(profile), "--resources", "gpu=2", "--cores", "4", cwd=wf,
                  env={gpu_pool.LOCKS_ENV: str(tmp_path / "locks")})
    assert r.returncode == 0, r.stderr[-3000:]
    rec = records(wf)
    assert sorted(rec["unlearn0"]["cvd"].split(",")) == ["0", "1"]
    for e in ("evaluate0", "evaluate1"):  # one card each, never while the sharded job holds both
        assert rec[e]["cvd"] in ("0", "1")
        assert not overlapping(rec[e], rec["unlearn0"])


@pytest.mark.slow
def test_the_pool_is_the_cards_cuda_visible_devices_lists(tmp_path):
    wf = stub_workflow(tmp_path / "wf", {"evaluate": 2}, sleep=0.5)
    r = snakemake("--profile", str(PROFILE), "--resources", "gpu=2", "--cores", "2", cwd=wf,
                  env={gpu_pool.LOCKS_ENV: str(tmp_path / "locks"), "CUDA_VISIBLE_DEVICES": "5,7"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert {v["cvd"] for v in records(wf).values()} == {"5", "7"}


@pytest.mark.slow
def test_a_rule_asking_for_more_gpus_than_the_machine_has_stops_before_any_job(tmp_path):
    wf = stub_workflow(tmp_path / "wf", {"unlearn": 1, "evaluate": 1}, cpu_jobs=1)
    profile = profile_copy(tmp_path, unlearn=4)
    r = snakemake("--profile", str(profile), "--resources", "gpu=2", "--cores", "2", cwd=wf)
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error:")]
    assert errors == ["error: rule unlearn asks for 4 GPUs per job (set-resources: unlearn: gpu) but the machine "
                      "has 2 (--resources gpu=2; the workstation profile's `resources: gpu`): lower set-resources: "
                      "unlearn: gpu or give more cards"]
    assert not (wf / "out").exists()
    # a pool shorter than the count would leave jobs waiting for cards that do not exist
    r = snakemake("--profile", str(PROFILE), "--resources", "gpu=2", "-n", cwd=wf, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert r.returncode != 0
    assert "error: --resources gpu=2 but CUDA_VISIBLE_DEVICES='3' lists 1 card(s)" in r.stderr


# --- the lock files -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_claim_is_all_or_none_and_a_killed_holder_frees_its_cards(tmp_path):
    locks = str(tmp_path / "locks")
    holder = subprocess.Popen([sys.executable, "-m", "unlearning.gpu_pool", "--cards", "1", "--pool", "0,1",
                               "--locks", locks, "--", "sleep", "60"], stderr=subprocess.PIPE, text=True)
    assert holder.stderr.readline().strip() == "gpu_pool: CUDA_VISIBLE_DEVICES=0"  # exec'd sleep holds card 0
    assert gpu_pool.try_claim(2, ["0", "1"], locks) is None  # only card 1 is free: nothing held
    got = gpu_pool.try_claim(1, ["0", "1"], locks)
    assert got is not None and got[0] == ["1"]
    for fd in got[1]:
        os.close(fd)
    os.kill(holder.pid, signal.SIGKILL)  # a job killed outright releases its card (the kernel drops the lock)
    holder.wait()
    got = gpu_pool.try_claim(2, ["0", "1"], locks)
    assert got is not None and got[0] == ["0", "1"]
    for fd in got[1]:
        os.close(fd)


@pytest.mark.slow
def test_a_failing_job_releases_its_card_and_keeps_its_exit_status(tmp_path):
    locks = str(tmp_path / "locks")
    cmd = [sys.executable, "-m", "unlearning.gpu_pool", "--cards", "1", "--pool", "0", "--locks", locks, "--"]
    assert subprocess.run([*cmd, "sh", "-c", "exit 3"], timeout=60).returncode == 3
    r = subprocess.run([*cmd, "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER"'], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["0", "PCI_BUS_ID"]


@pytest.mark.slow
def test_a_job_waits_for_a_card_another_run_holds(tmp_path):
    locks = str(tmp_path / "locks")
    held = gpu_pool.try_claim(1, ["0"], locks)
    assert held is not None
    job = subprocess.Popen([sys.executable, "-m", "unlearning.gpu_pool", "--cards", "1", "--pool", "0",
                            "--locks", locks, "--", "true"], stderr=subprocess.PIPE, text=True)
    assert "waiting for 1 free card(s) of 0" in job.stderr.readline()
    time.sleep(1.0)
    assert job.poll() is None
    for fd in held[1]:
        os.close(fd)
    assert job.wait(timeout=30) == 0


@pytest.mark.slow
def test_the_claim_imports_no_torch():
    """CUDA is first touched in the job, after its cards are set: the claim itself never imports torch."""
    code = "import sys, unlearning.gpu_pool; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


@pytest.mark.parametrize("n, visible, message", [(2, "0", "lists 1 card"), (2, "0,0", "names a card twice"),
                                                 (-1, None, "a count of 0 or more")])
def test_bad_pools_are_refused_in_one_line(n, visible, message):
    with pytest.raises(gpu_pool.PoolError, match=message):
        gpu_pool.pool_of(n, visible)


# --- the fork server ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_jobs_through_the_fork_server_see_their_own_cards(tmp_path):
    """A worker forked by the server runs with the job's CUDA_VISIBLE_DEVICES (set before anything
    touches CUDA; the server never initialised it)."""
    name = f"unlearning-test-{secrets.token_hex(4)}"
    log = tmp_path / "server.log"
    # The server's stage entry point replaced by a recorder: what a stage's process would see.
    patch = ("import json, os, sys, time, torch; import unlearning.cli as cli\n"
             "def record(argv):\n"
             "    json.dump({'cvd': os.environ.get('CUDA_VISIBLE_DEVICES'), 'pid': os.getpid(),\n"
             "               'cuda_initialized': torch.cuda.is_initialized()}, open(argv[-1], 'w'))\n"
             "    return 0\n"
             "cli.main = record\n"
             "from unlearning import forkserver\n"
             f"sys.exit(forkserver.serve({name!r}, preload=('torch',)))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", forkserver.ENV)}
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-c", patch], env=env, stdout=out, stderr=out,
                                  start_new_session=True)
    try:
        deadline = time.time() + 120
        while "ready" not in log.read_text():
            assert server.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.2)
        locks = str(tmp_path / "locks")
        jobs = [subprocess.Popen([sys.executable, "-m", "unlearning.gpu_pool", "--cards", "1", "--pool", "0,1",
                                  "--locks", locks, "--", sys.executable, "-m", "unlearning", "stub",
                                  str(tmp_path / f"job{i}.json")],
                                 env={**env, forkserver.ENV: name, "CUDA_VISIBLE_DEVICES": ""},
                                 stderr=subprocess.PIPE, text=True) for i in range(2)]
        for job in jobs:
            _, err = job.communicate(timeout=120)
            assert job.returncode == 0, err
            assert "forkserver: worker" in err  # it ran in a forked worker, not by itself
        seen = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(2)]
        assert all(s["pid"] != server.pid and not s["cuda_initialized"] for s in seen)
        # held at once (each holds its lock until its worker ends) or one after the other: a card each time
        assert {s["cvd"] for s in seen} <= {"0", "1"} and all(s["cvd"] for s in seen)
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- the study's dry runs -----------------------------------------------------------------------------


def job_stats(out: str) -> dict[str, int]:
    lines = out.split("Job stats:", 1)[1].splitlines()[3:]
    stats = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    return stats


@pytest.mark.slow
def test_paper_config_dry_run_plans_every_job_each_gpu_job_claims_its_card():
    config = "configs/paper-muse-news.yaml"
    ws = snakemake("-n", "-p", "--profile", str(PROFILE), "--resources", "gpu=8", "--configfile", config, cwd=REPO)
    assert ws.returncode == 0, ws.stderr[-3000:]
    local = snakemake("-n", "--profile", "profiles/local", "--configfile", config, cwd=REPO)
    assert local.returncode == 0, local.stderr[-3000:]
    stats = job_stats(ws.stdout)
    assert stats == job_stats(local.stdout) and stats["total"] > 300
    gpu_rules = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]
    gpu_jobs = sum(n for rule, n in stats.items() if rule in gpu_rules)
    claims = [line for line in ws.stdout.splitlines() if "python -m unlearning.gpu_pool --cards 1 " in line]
    assert len(claims) == gpu_jobs
    assert all("--pool 0,1,2,3,4,5,6,7 " in c for c in claims)  # CPU-only jobs claim nothing


@pytest.mark.slow
def test_sharded_unlearning_on_a_workstation_starts_torchrun_with_its_cards(tmp_path):
    profile = profile_copy(tmp_path, unlearn=2, relearn=2)
    results = yaml.safe_load((REPO / "configs" / "paper-muse-news.yaml").read_text())["results"]
    r = snakemake(f"{results}/unlearned/muse_news/npo/adam/x1/seed0", "-n", "-p", "--profile", str(profile),
                  "--resources", "gpu=2", "--configfile", "configs/paper-muse-news.yaml", cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "python -m unlearning.gpu_pool --cards 2 --pool 0,1 --locks " in r.stdout
    assert " -- torchrun --standalone --nproc-per-node 2 --no-python -- unlearning --threads 1 unlearn" in r.stdout


# --- on a GPU (marker gpu; skipped without CUDA) ----------------------------------------------------


@pytest.mark.gpu
def test_smoke_study_through_the_workstation_profile_on_the_machines_cards(tmp_path):
    """Every GPU job of the smoke study claims one of the machine's cards and computes on it."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from conftest import make_study

    cards = torch.cuda.device_count()
    study = make_study(tmp_path / "study")
    r = snakemake("--profile", "profiles/workstation", "--resources", f"gpu={cards}", "--cores", "4",
                  "--configfile", "configs/smoke.yaml", cwd=study, timeout=900,
                  env={gpu_pool.LOCKS_ENV: str(tmp_path / "locks"), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    logs = [p for rule in ("train_model", "unlearn", "relearn", "evaluate", "calibration_point", "lmc")
            for p in (study / "results" / "logs" / rule).rglob("*.log")]
    assert logs
    for log in logs:
        first = log.read_text().splitlines()[0]
        assert first.startswith("gpu_pool: CUDA_VISIBLE_DEVICES="), (log, first)
        assert first.split("=", 1)[1] in {str(i) for i in range(cards)}, (log, first)
    for result in (study / "results" / "eval").rglob("none.json"):
        assert json.loads(result.read_text())["env"]["device"] != "cpu", result
