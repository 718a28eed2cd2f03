"""The fork server changes how fast a stage starts, never what it computes: a stage run through it
writes the same bytes as one run by itself, exit statuses and logs reach the caller, and a killed
job's worker dies with it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from unlearning import forkserver

# Every test here starts a process (docs/extending/tests.md).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2, "max_len": 128}
TRAINING = {"steps": 3, "lr": 0.003, "batch_size": 4, "schedule": "cosine", "warmup": 0.0, "seed": 0}


def _env(server: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop(forkserver.ENV, None)
    if server:
        env[forkserver.ENV] = server
    return env


def _stage(args: list[str], cwd: Path, server: str | None, log: Path) -> subprocess.CompletedProcess:
    with open(log, "w") as out:
        return subprocess.run([sys.executable, "-m", "unlearning", "--threads", "1", *args], cwd=cwd,
                              env=_env(server), stdout=out, stderr=subprocess.STDOUT, timeout=300)


def _model_args(work: Path, out: str, steps: int) -> list[str]:
    return ["model", "--data", "data", "--kind", "muse", "--role", "target", "--tokenizer", "tok",
            "--arch", json.dumps(ARCH), "--training", json.dumps({**TRAINING, "steps": steps}), "--out", out]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running server (light preload: what the stages import, they import in the worker)."""
    name = f"unlearning-test-{secrets.token_hex(4)}"
    log = tmp_path_factory.mktemp("fs") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c",
                                 "import sys; from unlearning import forkserver; "
                                 f"sys.exit(forkserver.serve({name!r}, preload=('torch', 'transformers')))"],
                                env=_env(None), stdout=out, stderr=out, start_new_session=True)
    deadline = time.time() + 120
    while "ready" not in log.read_text() and time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    yield name, proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def study(tmp_path_factory, server):
    """Synthetic MUSE data and a tokenizer, made through the server."""
    work = tmp_path_factory.mktemp("work")
    bench = json.dumps({"kind": "muse", "source": "synthetic"})
    assert _stage(["data", "--bench", bench, "--out", "data"], work, server[0], work / "data.log").returncode == 0
    res = _stage(["tokenizer", "--data", "data", "--kind", "muse", "--vocab-size", "300", "--out", "tok"],
                 work, server[0], work / "tok.log")
    assert res.returncode == 0, (work / "tok.log").read_text()
    return work


def test_a_stage_through_the_server_writes_the_same_bytes_as_one_run_alone(study, server):
    assert _stage(_model_args(study, "served", 3), study, server[0], study / "served.log").returncode == 0
    assert _stage(_model_args(study, "alone", 3), study, None, study / "alone.log").returncode == 0
    served = (study / "served" / "model.safetensors").read_bytes()
    assert served == (study / "alone" / "model.safetensors").read_bytes()
    # The worker's report lands in the job's own log; a job that ran alone has none.
    assert "forkserver: worker" in (study / "served.log").read_text()
    assert "forkserver: worker" not in (study / "alone.log").read_text()


def test_exit_status_and_error_line_reach_the_caller(study, server):
    res = _stage(["model", "--data", "missing", "--kind", "muse", "--role", "target", "--tokenizer", "tok",
                  "--arch", json.dumps(ARCH), "--training", json.dumps(TRAINING), "--out", "x"],
                 study, server[0], study / "bad.log")
    log = (study / "bad.log").read_text()
    assert res.returncode == 1 and "error [model]" in log and "forkserver: worker" in log
    res = _stage(["model", "--kind", "nonsense"], study, server[0], study / "usage.log")
    assert res.returncode == 2 and "usage:" in (study / "usage.log").read_text()


def test_no_server_means_the_stage_runs_by_itself(study):
    assert forkserver.delegate(f"unlearning-absent-{secrets.token_hex(4)}", ["--help"]) is None
    res = _stage(_model_args(study, "fallback", 1), study, f"absent-{secrets.token_hex(4)}", study / "fb.log")
    assert res.returncode == 0 and (study / "fallback" / "model.safetensors").exists()


def test_killing_the_job_kills_its_worker(study, server):
    name, proc = server
    log = study / "long.log"
    with open(log, "w") as out:
        client = subprocess.Popen([sys.executable, "-m", "unlearning", "--threads", "1",
                                   *_model_args(study, "long", 100000)], cwd=study, env=_env(name),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 60
    workers: list[psutil.Process] = []
    while time.time() < deadline and not workers:
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if p.ppid() != proc.pid]  # handler's children: the worker
        time.sleep(0.1)
    assert workers, "no worker forked"
    time.sleep(1.0)
    assert workers[0].is_running()
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert not (study / "long").exists()  # models are written under a temporary name, then renamed


def test_a_command_that_gives_up_before_committing_never_gets_a_worker(study, server):
    import socket

    name, proc = server
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect("\0" + name)
    request = json.dumps({"argv": ["--threads", "1", *_model_args(study, "abandoned", 100000)],
                          "cwd": str(study), "env": _env(None)}).encode()
    socket.send_fds(conn, [len(request).to_bytes(4, "big") + request], [0, 1, 2])
    assert forkserver._recv(conn) == {"status": "ready"}
    conn.close()  # what delegate() does when it stops waiting: run the stage itself instead
    time.sleep(1.0)
    assert not psutil.Process(proc.pid).children(recursive=True)
    assert not (study / "abandoned").exists() and not (study / "abandoned.tmp").exists()


def test_start_returns_once_the_server_listens(tmp_path):
    """Snakemake starts its first jobs right after `onstart`: start() must not return before the socket
    listens, or those jobs (on a loaded machine) find nothing and run by themselves."""
    name = f"unlearning-test-{secrets.token_hex(4)}"
    proc = forkserver.start(name, str(tmp_path / "logs" / "forkserver.log"))
    try:
        assert forkserver.reachable(name)  # at once: no waiting here
    finally:
        proc.terminate()
        proc.wait(timeout=60)
