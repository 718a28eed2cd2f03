"""The `unlearning` command the rules run: installed with the package (next to the interpreter, where
workflow/rules/common.smk finds it), handed to the fork server like `python -m unlearning`, and installed
into a fresh environment by the conda env's post-deploy script (envs/unlearning.post-deploy.sh)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from unlearning import forkserver

# Every test here starts a process (docs/extending/tests.md).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
COMMAND = Path(sys.executable).parent / "unlearning"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (forkserver.ENV, "PYTHONPATH")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def test_the_command_is_installed_next_to_the_interpreter_and_lists_every_stage():
    res = subprocess.run([str(COMMAND), "--help"], capture_output=True, text=True, env=_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    for stage in ("data", "tokenizer", "model", "unlearn", "relearn", "evaluate", "aggregate", "figures",
                  "summary", "report-tables", "lmc", "lmc-figure", "ablation", "findings"):
        assert stage in res.stdout
    res = subprocess.run([str(COMMAND), "nonsense"], capture_output=True, text=True, env=_env(), timeout=60)
    assert res.returncode == 2 and "usage: unlearning" in res.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fork server that preloads nothing (the data stage needs none of the heavy libraries)."""
    name = f"unlearning-test-{secrets.token_hex(4)}"
    log = tmp_path_factory.mktemp("fs") / "server.log"
    code = f"import sys; from unlearning import forkserver; sys.exit(forkserver.serve({name!r}, preload=()))"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=out, stderr=out,
                                start_new_session=True)
    deadline = time.time() + 120
    while "ready" not in log.read_text() and time.time() < deadline:
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    yield name
    proc.terminate()
    proc.wait(timeout=10)


def test_the_command_hands_its_stage_to_the_fork_server(server, tmp_path):
    bench = json.dumps({"kind": "wmdp", "source": "synthetic"})
    outs = {}
    for label, env in (("served", _env(**{forkserver.ENV: server})), ("alone", _env()),
                       ("off", _env(**{forkserver.ENV: "off"}))):
        with open(tmp_path / f"{label}.log", "w") as log:
            res = subprocess.run([str(COMMAND), "data", "--bench", bench, "--out", label], cwd=tmp_path, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, timeout=300)
        text = (tmp_path / f"{label}.log").read_text()
        assert res.returncode == 0, text
        assert ("forkserver: worker" in text) == (label == "served"), text
        outs[label] = {p.relative_to(tmp_path / label): p.read_bytes()
                       for p in sorted((tmp_path / label).rglob("*")) if p.is_file()}
    assert outs["served"] and outs["served"] == outs["alone"] == outs["off"]


def test_the_conda_post_deploy_script_installs_the_command(tmp_path):
    """What Snakemake does under --sdm conda after creating the env: run the script with the env active
    (here a bare venv: the script installs the package without its dependencies)."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = _env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(env_dir))
    script = ROOT / "envs" / "unlearning.post-deploy.sh"
    res = subprocess.run(["bash", str(script)], env={k: v for k, v in env.items() if k != "UNLEARNING_CHECKOUT"},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "UNLEARNING_CHECKOUT" in res.stderr
    res = subprocess.run(["bash", str(script)], env={**env, "UNLEARNING_CHECKOUT": str(ROOT)},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    res = subprocess.run([str(bin_dir / "unlearning"), "--help"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 0 and "evaluate" in res.stdout, res.stderr
