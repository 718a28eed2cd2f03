"""Early stopping of a calibrated unlearning run (stages/unlearn.py's EarlyStop, train.unlearn's
checks): a run stopped at a check is bit for bit the fixed-step run of that many steps, its record
holds every check and where it stopped, and a run that never reaches the level runs its budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unlearning.config import validate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The smoke study's MUSE data, tokenizer and a target trained for a few steps."""
    from unlearning.stages.data import prepare_data, train_tokenizer
    from unlearning.stages.models import train_model

    cfg = validate(yaml.safe_load((ROOT / "configs/smoke.yaml").read_text()))
    root = tmp_path_factory.mktemp("early_stop")
    bench = cfg["benchmarks"]["muse"]
    prepare_data(bench, root / "data")
    train_tokenizer(root / "data", "muse", cfg["tokenizer"]["vocab_size"], root / "tok")
    train_model(root / "data", "muse", "target", root / "tok", cfg["model"], {**cfg["training"], "until": {}},
                None, root / "target")
    return {"cfg": cfg, "root": root}


def _reference(path: Path, level: float) -> str:
    """A retrain evaluation whose forget metrics all sit at ``level`` (the ceiling is level + margin)."""
    path.write_text(json.dumps({"seed": 0, "metrics": {"knowmem_f": level, "verbmem_f": level, "knowmem_r": 50.0}}))
    return str(path)


def _run(tiny: dict, name: str, optimizer: dict, steps: int, stop: dict | None = None, level: float = 0.0):
    from safetensors.torch import load_file

    from unlearning.stages.unlearn import unlearn

    cfg, root = tiny["cfg"], tiny["root"]
    run = {**cfg["unlearning"], "steps": steps, "seed": 0, "max_len": cfg["model"]["max_len"]}
    refs = [_reference(root / f"{name}.json", level)] if stop else []
    unlearn(root / "target", root / "data", "muse", {"objective": "grad_diff"}, optimizer, run, root / name,
            stop=stop, stop_reference=refs)
    info = json.loads((root / name / "unlearning.json").read_text())
    return info, load_file(root / name / "model.safetensors")


def _stop(tiny: dict, every: int, budget: int) -> dict:
    cfg = tiny["cfg"]
    return {"every": every, "budget": budget, "criterion": "match_retrain", "margin": 5.0,
            "evaluation": cfg["evaluation"], "subject": "biology"}


@pytest.mark.parametrize("optimizer", [{"type": "adam", "lr": 0.001}, {"type": "adazo", "lr": 0.001}],
                         ids=["adam", "zo"])
def test_a_stopped_run_is_the_fixed_step_run_of_its_length(tiny, optimizer):
    # a retrain level far above anything: the first check (step 3) already matches it
    info, stopped = _run(tiny, f"stop_{optimizer['type']}", optimizer, steps=99, stop=_stop(tiny, 3, 7),
                         level=1000.0)
    es = info["early_stop"]
    assert (info["steps"], es["stop_step"], es["reached"], es["budget"]) == (3, 3, True, 7)
    assert [c["step"] for c in es["checks"]] == [3]
    assert set(es["checks"][0]) == {"step", "knowmem_f", "verbmem_f", "seconds"}
    assert es["ceilings"] == {"knowmem_f": 1005.0, "verbmem_f": 1005.0}
    assert es["overshot"] is True  # every level lies far (> margin) below a retrain level of 1000
    assert set(es["metrics"]) == {"knowmem_f", "verbmem_f", "knowmem_r"}
    assert len(info["trace"]) == 3
    _, fixed = _run(tiny, f"fixed_{optimizer['type']}", optimizer, steps=3)
    assert stopped.keys() == fixed.keys()
    assert all(stopped[k].equal(fixed[k]) for k in fixed)  # bit for bit


def test_a_run_that_never_reaches_runs_its_budget_and_says_so(tiny):
    info, _ = _run(tiny, "never", {"type": "adam", "lr": 0.001}, steps=99, stop=_stop(tiny, 3, 7), level=-1000.0)
    es = info["early_stop"]
    assert info["steps"] == 7 and es["reached"] is False and es["stop_step"] is None and es["overshot"] is False
    assert [c["step"] for c in es["checks"]] == [3, 6, 7]  # every 3 steps and at the budget
    assert es["excess"] == pytest.approx(max(es["metrics"]["knowmem_f"], es["metrics"]["verbmem_f"]) + 995.0)
    # the saved state's forget levels are its last check's
    assert {k: es["checks"][-1][k] for k in ("knowmem_f", "verbmem_f")} == {
        k: es["metrics"][k] for k in ("knowmem_f", "verbmem_f")}
