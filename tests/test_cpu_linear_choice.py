"""UNLEARNING_CPU_LINEAR=auto: the linear path is measured once per machine, cached, read after, and
never slower than torch's default (ties and near-ties keep torch's)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from torch import nn

from unlearning import cpu_linear
from unlearning.cpu_linear import OneDNNLinear, use_onednn_linear

pytestmark = pytest.mark.skipif(not cpu_linear._onednn_available(), reason="torch built without oneDNN")


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    """Each test decides in its own cache folder, as a new process would (no in-process memory)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(cpu_linear.ENV, raising=False)
    monkeypatch.setattr(cpu_linear, "_DECIDED", {})


def _timed(monkeypatch, torch_gflops: float, onednn_gflops: float, wait: float = 0.0) -> list[int]:
    """Replace the measurement by fixed numbers; returns the list whose length counts the calls."""
    calls: list[int] = []

    def fake(*args, **kwargs):
        calls.append(1)
        time.sleep(wait)
        return {"torch_gflops": torch_gflops, "onednn_gflops": onednn_gflops}

    monkeypatch.setattr(cpu_linear, "measure", fake)
    return calls


def test_the_cache_is_written_once_and_read_after(monkeypatch):
    calls = _timed(monkeypatch, 80.0, 120.0)
    first = cpu_linear.choice()
    assert first.backend == "onednn" and len(calls) == 1
    path = cpu_linear.cache_file()
    assert first.reason == f"measured: torch 80.0, onednn 120.0 GFLOPS; {path.name}"
    rec = json.loads(path.read_text())
    assert rec["backend"] == "onednn" and rec["key"] == cpu_linear.machine_key()
    assert cpu_linear.choice() == first and len(calls) == 1  # this process: remembered
    monkeypatch.setattr(cpu_linear, "_DECIDED", {})  # another job of the study: reads the file
    assert cpu_linear.choice() == first and len(calls) == 1


def test_parallel_jobs_measure_once_and_agree(monkeypatch):
    calls = _timed(monkeypatch, 80.0, 120.0, wait=0.2)
    key, path = cpu_linear.machine_key(), cpu_linear.cache_file()
    out = []
    jobs = [threading.Thread(target=lambda: out.append(cpu_linear._read_or_measure(path, key))) for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert len(calls) == 1 and len(set(out)) == 1 and out[0].backend == "onednn"


@pytest.mark.parametrize("forced", ["torch", "onednn", " ONEDNN "])
def test_a_forced_choice_skips_measuring(monkeypatch, forced):
    calls = _timed(monkeypatch, 80.0, 120.0)
    monkeypatch.setenv(cpu_linear.ENV, forced)
    want = forced.strip().lower()
    assert cpu_linear.choice() == cpu_linear.Choice(want, f"forced: UNLEARNING_CPU_LINEAR={want}")
    assert not calls and not cpu_linear.cache_file().exists()


def test_a_wrong_value_is_named(monkeypatch):
    monkeypatch.setenv(cpu_linear.ENV, "mkl")
    with pytest.raises(ValueError, match="UNLEARNING_CPU_LINEAR must be one of"):
        cpu_linear.choice()


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 1}', "null"])
def test_a_corrupt_cache_is_measured_again(monkeypatch, content):
    calls = _timed(monkeypatch, 90.0, 60.0)
    path = cpu_linear.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert cpu_linear.choice().backend == "torch" and len(calls) == 1
    assert json.loads(path.read_text())["torch_gflops"] == 90.0


def test_another_machine_or_kernel_cap_decides_again(monkeypatch):
    calls = _timed(monkeypatch, 90.0, 60.0)
    cpu_linear.choice()
    path = cpu_linear.cache_file()
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "key": {**rec["key"], "cpu": "another CPU"}}))  # a shared home
    monkeypatch.setattr(cpu_linear, "_DECIDED", {})
    cpu_linear.choice()
    assert len(calls) == 2
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_linear.cache_file() != path
    cpu_linear.choice()
    assert len(calls) == 3


def test_a_cache_that_cannot_be_written_is_not_an_error(monkeypatch, tmp_path):
    _timed(monkeypatch, 60.0, 90.0)
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its "unlearning" folder cannot be made
    assert cpu_linear.choice() == cpu_linear.Choice(
        "onednn", "measured: torch 60.0, onednn 90.0 GFLOPS; not cached: NotADirectoryError")


@pytest.mark.parametrize(("torch_gflops", "onednn_gflops", "want"), [
    (80.0, 80.0, "torch"),  # a tie keeps torch's default
    (80.0, 83.9, "torch"),  # within MARGIN: timing noise, not a win
    (80.0, 84.1, "onednn"),
    (80.0, 40.0, "torch"),
])
def test_ties_and_near_ties_pick_torch(monkeypatch, torch_gflops, onednn_gflops, want):
    assert cpu_linear.MARGIN == 0.05
    assert cpu_linear.decide(torch_gflops, onednn_gflops) == want
    _timed(monkeypatch, torch_gflops, onednn_gflops)
    assert cpu_linear.choice().backend == want


def test_the_measurement_turns_the_timer_into_gflops(monkeypatch):
    """Each pass reads the timer twice; torch's passes take 0.02 s and oneDNN's 0.01 s here."""
    monkeypatch.setattr(cpu_linear, "ROWS", 64)
    monkeypatch.setattr(cpu_linear, "LAYERS", ((32, 48, 2), (48, 32, 1)))
    ticks = iter(t for i in range(4) for t in (0.0, 0.02 if i % 2 == 0 else 0.01))
    threads = torch.get_num_threads()
    out = cpu_linear.measure(passes=1, timer=lambda: next(ticks))
    assert torch.get_num_threads() == threads  # measured on one thread, then restored
    flop = sum(3 * 2.0 * cpu_linear.ROWS * n_in * n_out * count for n_in, n_out, count in cpu_linear.LAYERS)
    assert out == {"torch_gflops": round(flop / 0.02 / 1e9, 1), "onednn_gflops": round(flop / 0.01 / 1e9, 1)}


@pytest.mark.parametrize("measured", [(80.0, 120.0), (90.0, 60.0)])
def test_the_chosen_path_computes_what_torch_does(monkeypatch, measured):
    _timed(monkeypatch, *measured)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 384), nn.GELU(), nn.Linear(384, 128))
    plain = nn.Sequential(nn.Linear(128, 384), nn.GELU(), nn.Linear(384, 128))
    plain.load_state_dict(model.state_dict())
    changed = use_onednn_linear(model)
    assert changed == (2 if cpu_linear.backend() == "onednn" else 0)
    assert all(isinstance(m, OneDNNLinear) for m in model if isinstance(m, nn.Linear)) == bool(changed)
    x = torch.randn(4, 40, 128)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [model(xs[0]), plain(xs[1])]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    for out in outs:
        out.square().sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model[0].weight.grad, plain[0].weight.grad, rtol=1e-5, atol=1e-3)


def test_evaluations_record_the_path_and_why(monkeypatch):
    from unlearning.provenance import environment

    _timed(monkeypatch, 90.0, 60.0)
    env = environment("cpu")
    assert env["cpu_linear"] == "torch"
    assert env["cpu_linear_reason"] == f"measured: torch 90.0, onednn 60.0 GFLOPS; {cpu_linear.cache_file().name}"
    monkeypatch.setenv(cpu_linear.ENV, "onednn")
    env = environment("cpu")
    assert (env["cpu_linear"], env["cpu_linear_reason"]) == ("onednn", "forced: UNLEARNING_CPU_LINEAR=onednn")


@pytest.mark.slow
def test_measuring_for_real_is_quick_and_decides_by_its_numbers():
    threads, t0 = torch.get_num_threads(), time.perf_counter()
    got = cpu_linear.choice()
    assert time.perf_counter() - t0 < 5  # ~1 s on a busy 2-core machine
    rec = json.loads(cpu_linear.cache_file().read_text())
    assert rec["torch_gflops"] > 1 and rec["onednn_gflops"] > 1
    assert got.backend == cpu_linear.decide(rec["torch_gflops"], rec["onednn_gflops"])
    assert torch.get_num_threads() == threads


def test_the_run_facts_show_the_path_with_its_reason(tmp_path):
    from unlearning.report import summaries

    ev = tmp_path / "eval" / "muse" / "target"
    ev.mkdir(parents=True)
    why = "measured: torch 90.0, onednn 60.0 GFLOPS; cpu_linear-0123456789ab.json"
    (ev / "none.json").write_text(json.dumps({"env": {"torch_cpu_capability": "AVX2", "onednn_max_cpu_isa": "default",
                                                      "cpu_linear": "torch", "cpu_linear_reason": why,
                                                      "torch_version": "2.13.0"}}))
    assert summaries.run_facts(tmp_path, None)["cpu_kernels"] == [f"AVX2/default/torch ({why})/2.13.0"]


def test_no_home_folder_is_not_an_error(monkeypatch):
    _timed(monkeypatch, 90.0, 60.0)
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home(cls):
        raise RuntimeError("Could not determine home directory")

    monkeypatch.setattr(cpu_linear.Path, "home", classmethod(no_home))
    assert cpu_linear.choice() == cpu_linear.Choice(
        "torch", "measured: torch 90.0, onednn 60.0 GFLOPS; not cached: no home folder")
