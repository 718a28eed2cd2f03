"""Shared fixtures: one smoke study run through Snakemake per session, reused by the tests that
read its results (end-to-end checks, partial reruns, determinism); the test tiers (docs/extending/tests.md):
markers that imply ``slow``, and a guard that fails a fast-tier test that starts a process."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from unlearning.studyfolder import make_study as make_study_folder

ROOT = Path(__file__).resolve().parents[1]

# profiles/default's `max-jobs-per-timespan: 1000/10s` keeps every Snakemake that ran a job alive up to
# 10 s after its last one, while its rate limiter's timers expire: 9-10 s per run here (a one-job
# workflow: 22 s against 13 s under load). The suite runs dozens of short workflows, and every SLURM job
# starts Snakemake inside it, so the tests' study folders take Snakemake's own default instead.
# Scheduling only: no result depends on it, and the user's profile is unchanged.
TEST_PROFILE = {"max-jobs-per-timespan": "100/1s"}

# Tests with these markers start Snakemake, torchrun, SLURM jobs or need a GPU: they belong to the slow
# tier (deselected by pyproject.toml's default `-m "not slow"`, run by scripts/test.sh) without
# carrying `slow` themselves.
SLOW_MARKERS = ("slow", "e2e", "slurm", "multiprocess", "gpu")

# Every way a test can start a process: subprocess (run, Popen, check_output), os.system, fork,
# posix_spawn, and multiprocessing's spawn/forkserver start (which bypasses subprocess).
_PROCESS_STARTERS = [(subprocess.Popen, "_execute_child"), (os, "system"), (os, "fork"), (os, "forkpty"),
                     (os, "posix_spawn"), (os, "posix_spawnp"), (multiprocessing.util, "spawnv_passfds")]


# The longest files of the full suite (docs/extending/tests.md), handed out first when pytest-xdist's
# workers take whole files (scripts/test.sh: `-n 2 --dist loadfile`), so that no long file starts last
# while the other worker idles. The SLURM slice leads: it builds the smoke study and then mostly waits.
# Then every file of more than ~10 s (alphabetical order had test_workstation.py, ~50 s, among the last).
LONGEST_FIRST = ["test_slurm.py", "test_paper_shaped.py", "test_reruns.py", "test_distributed.py",
                 "test_workstation.py", "test_gpu_check.py", "test_report_workflow.py", "test_portability.py",
                 "test_profiles.py", "test_forkserver.py", "test_paper_scale.py", "test_eval_lmeval.py",
                 "test_report_evidence.py", "test_results_folders.py", "test_entrypoint.py", "test_e2e.py",
                 "test_report_rerun.py", "test_paper_configs.py"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Build matplotlib's font cache before any test runs: on a fresh home (a clean CI machine) its first
    import runs `fc-list`, which the fast tier's guard would blame on whichever test drew first."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.font_manager  # noqa: F401  (builds and caches the font list)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that carries one of SLOW_MARKERS as ``slow`` too; under pytest-xdist, order the
    files LONGEST_FIRST."""
    for item in items:
        if not item.get_closest_marker("slow") and any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@contextlib.contextmanager
def _no_process(item: pytest.Item):
    """Within a fast-tier test (not marked slow), starting a process fails the test, naming the fix."""
    if item.get_closest_marker("slow"):
        yield
        return

    def refuse(*args, **kwargs):
        command = next((a for a in args if isinstance(a, (str, bytes, list, tuple))), "")
        pytest.fail(f"{item.nodeid} started a process ({str(command)[:160]}); a test that starts one "
                    "belongs to the slow tier: mark it @pytest.mark.slow (docs/extending/tests.md)")

    with pytest.MonkeyPatch.context() as mp:
        for owner, name in _PROCESS_STARTERS:
            mp.setattr(owner, name, refuse, raising=False)
        yield


# Setup as well as the call: a session fixture (the smoke study) is set up within the first test that asks for it.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _no_process(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _no_process(item):
        return (yield)


def make_study(dst: str | Path, repo: Path = ROOT) -> Path:
    """A self-contained study folder (unlearning.studyfolder.make_study), so that a test can edit code
    and config without touching the working tree; its default profile takes TEST_PROFILE."""
    study = make_study_folder(dst, repo)
    profile = study / "profiles" / "default" / "config.yaml"
    profile.write_text(yaml.safe_dump({**yaml.safe_load(profile.read_text()), **TEST_PROFILE}))
    return study


_SERVER: dict = {}


def session_forkserver() -> str:
    """The name of this test process's fork server (unlearning.forkserver), started at the first call and
    gone with the process. Every Snakemake run would otherwise start its own and import torch,
    transformers, bitsandbytes and rouge-score (about 11 CPU-s here) before its first job could start;
    workflow/rules/forkserver.smk uses a server that UNLEARNING_FORKSERVER names and leaves it running."""
    from unlearning import forkserver

    if "name" not in _SERVER or _SERVER["proc"].poll() is not None:
        import secrets
        import tempfile

        name = f"unlearning-tests-{os.getpid()}-{secrets.token_hex(4)}"
        log = Path(tempfile.gettempdir()) / f"{name}.log"
        proc = forkserver.start(name, str(log))
        _SERVER.update(name=name, proc=proc)

        @atexit.register
        def _stop() -> None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            log.unlink(missing_ok=True)
    return _SERVER["name"]


def snakemake(workdir: Path, *args: str, configfile: Path | str | None = "configs/smoke.yaml",
              timeout: int = 900, check: bool = True, own_server: bool = False) -> subprocess.CompletedProcess:
    """Run the workflow of the study folder ``workdir`` (see make_study) inside it: its jobs through the
    session's fork server (session_forkserver), or with ``own_server`` through one the run starts itself,
    as a user's run does: needed where the test changes how interpreters start (PYTHONPATH, a
    sitecustomize), which the shared server's workers, forked long before, would not see."""
    from unlearning import forkserver

    cmd = [sys.executable, "-m", "snakemake", *args]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(forkserver.ENV, None)
    if not own_server:
        env[forkserver.ENV] = session_forkserver()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A completed smoke study (every stage) in a self-contained study folder; read-only for tests
    (use ``smoke_copy`` to change anything)."""
    # Under pytest-xdist (scripts/test.sh runs two workers) the workers share one study in their common
    # base folder: the first to ask builds it, the others wait on the lock.
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    work, done = root / "smoke" / "study", root / "smoke" / "complete"
    with FileLock(root / "smoke.lock"):
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)  # a worker's failed attempt
            # its own fork server, as a user's run (test_e2e checks its log and that it stops with the run)
            snakemake(make_study(work), "--cores", "2", own_server=True)
            done.touch()
    return work


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> Path:
    """A private copy of the completed smoke study (code, config, results, Snakemake metadata)."""
    dst = tmp_path / "study"
    shutil.copytree(smoke_run, dst, symlinks=True)
    return dst
