"""A GPU job that finds no CUDA fails at start, in one line (issue 23 item 5).

A job is a GPU job when UNLEARNING_DEVICE=cuda (a profile or the user says so) or when SLURM gave it
GPUs (SLURM_GPUS_ON_NODE, SLURM_JOB_GPUS, SLURM_STEP_GPUS); models.device() then refuses to fall
back to the CPU, and the command line checks it before any stage work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unlearning import models

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without CUDA")
GPU_VARS = (models.DEVICE_ENV, *models._SLURM_GPU_VARS)


@pytest.fixture
def clean_env(monkeypatch):
    for var in GPU_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_a_cpu_job_runs_on_the_cpu(clean_env):
    assert models.gpu_job() is None
    assert models.device().type == "cpu"
    clean_env.setenv("SLURM_GPUS_ON_NODE", "0")  # SLURM's value for a job without GPUs
    assert models.device().type == "cpu"


@pytest.mark.parametrize("var,value", [("UNLEARNING_DEVICE", "cuda"), ("SLURM_GPUS_ON_NODE", "2"),
                                       ("SLURM_JOB_GPUS", "0,1")])
def test_a_gpu_job_without_cuda_raises(clean_env, var, value):
    clean_env.setenv(var, value)
    with pytest.raises(models.NoCuda, match=f"a GPU job \\({var}={value}\\) finds no CUDA device"):
        models.device()
    clean_env.setenv(models.DEVICE_ENV, "cpu")  # the user's way out: run it on the CPU on purpose
    assert models.device().type == "cpu"


def test_a_bad_device_setting_names_the_variable(clean_env):
    clean_env.setenv(models.DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="UNLEARNING_DEVICE='tpu': expected cuda, cpu or auto"):
        models.device()


@pytest.mark.parametrize("stage", ["unlearn", "relearn"])
@pytest.mark.slow
def test_the_gpu_rule_fails_at_start_in_one_line(tmp_path, stage):
    env = {k: v for k, v in os.environ.items() if k not in GPU_VARS and k != "UNLEARNING_FORKSERVER"}
    env.update(SLURM_GPUS_ON_NODE="1", PYTHONPATH=str(ROOT / "src"))
    args = {"unlearn": ["--target", "t", "--data", "d", "--kind", "muse", "--method", "{}", "--optimizer", "{}",
                        "--run", "{}", "--out", str(tmp_path / "out")],
            "relearn": ["--model", "m", "--data", "d", "--kind", "muse", "--params", "{}", "--seed", "0",
                        "--max-len", "8", "--out", str(tmp_path / "out")]}[stage]
    proc = subprocess.run([sys.executable, "-m", "unlearning", stage, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error [{stage}]: a GPU job (SLURM_GPUS_ON_NODE=1) finds no CUDA device")
    assert "UNLEARNING_DEVICE=cpu" in lines[0]
    assert not (tmp_path / "out").exists()
