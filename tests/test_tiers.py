"""The test tiers (docs/extending/tests.md): a plain `pytest` runs the fast tier, scripts/test.sh everything, and a
fast-tier test that starts a process fails (tests/conftest.py)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.parametrize("start", [lambda: subprocess.run(["true"]), lambda: os.system("true"),
                                   lambda: multiprocessing.get_context("spawn").Process(target=print).start()],
                         ids=["subprocess", "os.system", "multiprocessing-spawn"])
def test_a_fast_test_that_starts_a_process_fails(start):
    with pytest.raises(pytest.fail.Exception, match=r"started a process.*mark it @pytest.mark.slow"):
        start()


@pytest.mark.slow
def test_a_slow_test_may_start_one():
    assert subprocess.run(["true"]).returncode == 0


@pytest.mark.e2e
def test_the_markers_of_long_tests_imply_slow(request):
    assert request.node.get_closest_marker("slow")


def test_plain_pytest_is_the_fast_tier_and_the_test_script_runs_both():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '\naddopts = ["-m", "not slow"]\n' in pyproject and '\n    "slow: ' in pyproject
    # the script's -m comes after addopts' (the last -m wins) and before the caller's arguments
    # (on two pytest-xdist workers unless TEST_WORKERS says otherwise)
    line = ('.venv/bin/python -m pytest -m "" --durations=20 -n "${TEST_WORKERS:-2}" --dist loadfile '
            '--no-loadscope-reorder "$@"')
    assert line in (ROOT / "scripts/test.sh").read_text()
