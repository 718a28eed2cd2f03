"""Early stopping of a calibrated unlearning run (stages/unlearn.py's EarlyStop, train.unlearn's
checks): a run stopped at a check is bit for bit the fixed-step run of that many steps, its record
holds every check and where it stopped, a run whose stopping check overshoots is replayed with a
check at every step since the check before (and is still the fixed run of its length), and a run that
never reaches the level runs its budget."""

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


def _run(tiny: dict, name: str, optimizer: dict, steps: int, stop: dict | None = None, level: float = 0.0,
         objective: str = "grad_diff"):
    from safetensors.torch import load_file

    from unlearning.stages.unlearn import unlearn

    cfg, root = tiny["cfg"], tiny["root"]
    run = {**cfg["unlearning"], "steps": steps, "seed": 0, "max_len": cfg["model"]["max_len"]}
    refs = [_reference(root / f"{name}.json", level)] if stop else []
    unlearn(root / "target", root / "data", "muse", {"objective": objective}, optimizer, run, root / name,
            stop=stop, stop_reference=refs)
    info = json.loads((root / name / "unlearning.json").read_text())
    return info, load_file(root / name / "model.safetensors")


def _stop(tiny: dict, every: int, budget: int, margin: float = 5.0) -> dict:
    cfg = tiny["cfg"]
    return {"every": every, "budget": budget, "criterion": "match_retrain", "margin": margin,
            "evaluation": cfg["evaluation"], "subject": "biology"}


def _scripted(monkeypatch, levels: list[float]) -> None:
    """Checks that read their forget levels (every metric the same) from ``levels``, one per check in
    the order they run, and a utility of 50: levels chosen to overshoot where wanted, on the real run."""
    from unlearning.stages.unlearn import EarlyStop

    script = iter(levels)

    def score(self, model, names):
        level = next(script) if set(names) == set(self.names) else 50.0
        return {n: level for n in names}

    monkeypatch.setattr(EarlyStop, "_score", score)


OPTIMIZERS = pytest.mark.parametrize("optimizer", [{"type": "adam", "lr": 0.001}, {"type": "adazo", "lr": 0.001}],
                                     ids=["adam", "zo"])


@OPTIMIZERS
def test_a_stopped_run_is_the_fixed_step_run_of_its_length(tiny, optimizer):
    # a ceiling far above anything and a margin so wide no level lies below the retrain level - margin:
    # the first check (step 3) matches without overshooting, so the run is not replayed
    info, stopped = _run(tiny, f"stop_{optimizer['type']}", optimizer, steps=99,
                         stop=_stop(tiny, 3, 7, margin=1000.0), level=0.0)
    es = info["early_stop"]
    assert (info["steps"], es["stop_step"], es["reached"], es["budget"]) == (3, 3, True, 7)
    assert [c["step"] for c in es["checks"]] == [3]
    assert set(es["checks"][0]) == {"step", "knowmem_f", "verbmem_f", "seconds"}  # no "replay"
    assert (es["refined_from"], es["replay_met"], es["overshot"]) == (None, None, False)
    assert es["ceilings"] == {"knowmem_f": 1000.0, "verbmem_f": 1000.0}
    assert set(es["metrics"]) == {"knowmem_f", "verbmem_f", "knowmem_r"}
    assert len(info["trace"]) == 3
    _, fixed = _run(tiny, f"fixed_{optimizer['type']}", optimizer, steps=3)
    assert stopped.keys() == fixed.keys()
    assert all(stopped[k].equal(fixed[k]) for k in fixed)  # bit for bit


@pytest.mark.parametrize("optimizer, objective", [({"type": "adam", "lr": 0.001}, "grad_diff"),
                                                  ({"type": "adazo", "lr": 0.001}, "grad_diff"),
                                                  ({"type": "adam", "lr": 0.001}, "npo")],
                         ids=["adam", "zo", "npo_adam"])
def test_an_overshooting_stop_is_replayed_from_the_start_with_a_check_every_step(tiny, optimizer, objective):
    # a retrain level far above anything: the first check (step 3) matches and overshoots (every level
    # lies far, > margin, below 1000), so the run is replayed with a check at steps 1-3; step 1 matches.
    # NPO: the replay scores its reference afresh (the first pass released it)
    name = f"{objective}_{optimizer['type']}"
    info, stopped = _run(tiny, f"replay_{name}", optimizer, steps=99, stop=_stop(tiny, 3, 7), level=1000.0,
                         objective=objective)
    es = info["early_stop"]
    assert (info["steps"], es["stop_step"], es["reached"]) == (1, 1, True)
    assert (es["refined_from"], es["replay_met"]) == (3, True)
    assert [(c["step"], c.get("replay", False)) for c in es["checks"]] == [(3, False), (1, True)]
    assert all(es["checks"][-1][n] <= c for n, c in es["ceilings"].items())
    assert es["overshot"] is True  # judged at the saved state: step 1 already lies far below the level
    assert {n: es["checks"][-1][n] for n in es["ceilings"]} == {n: es["metrics"][n] for n in es["ceilings"]}
    assert len(info["trace"]) == 1
    _, fixed = _run(tiny, f"fixed1_{name}", optimizer, steps=1, objective=objective)
    assert stopped.keys() == fixed.keys()
    assert all(stopped[k].equal(fixed[k]) for k in fixed)  # bit for bit


def test_a_replay_checks_only_the_steps_after_the_previous_check_and_stops_at_the_first_match(
        tiny, monkeypatch, caplog):
    # retrain level 10, margin 5: ceiling 15, overshoot below 5. First pass: step 3 at 50, step 6 at 0
    # (matches, overshoots); the replay checks steps 4 (40) and 5 (12: matches within the window)
    _scripted(monkeypatch, [50.0, 0.0, 40.0, 12.0])
    adam = {"type": "adam", "lr": 0.001}
    with caplog.at_level("INFO", logger="unlearning.stages.unlearn"):
        info, stopped = _run(tiny, "replay_mid", adam, steps=99, stop=_stop(tiny, 3, 9), level=10.0)
    es = info["early_stop"]
    assert [(c["step"], c.get("replay", False)) for c in es["checks"]] == [(3, False), (6, False), (4, True), (5, True)]
    assert (info["steps"], es["stop_step"], es["refined_from"], es["replay_met"]) == (5, 5, 6, True)
    assert (es["reached"], es["overshot"], es["excess"]) == (True, False, -3.0)
    assert es["metrics"] == {"knowmem_f": 12.0, "verbmem_f": 12.0, "knowmem_r": 50.0}
    assert "replaying from the start with a check at every step 4-6" in caplog.text
    _, fixed = _run(tiny, "fixed5", adam, steps=5)
    assert all(stopped[k].equal(fixed[k]) for k in fixed)  # bit for bit


def test_a_replay_that_never_matches_keeps_the_overshooting_step_and_says_so(tiny, monkeypatch, caplog):
    _scripted(monkeypatch, [50.0, 0.0, 40.0, 40.0, 40.0])  # as if the replay were not deterministic
    with caplog.at_level("INFO", logger="unlearning.stages.unlearn"):
        info, _ = _run(tiny, "replay_unmet", {"type": "adam", "lr": 0.001}, steps=99, stop=_stop(tiny, 3, 9),
                       level=10.0)
    es = info["early_stop"]
    assert [c["step"] for c in es["checks"]] == [3, 6, 4, 5, 6]
    assert (info["steps"], es["stop_step"], es["refined_from"], es["replay_met"]) == (6, 6, 6, False)
    assert (es["reached"], es["overshot"], es["excess"]) == (True, False, 25.0)
    assert "no replayed check in steps 4-6 met every ceiling" in caplog.text


def test_an_overshoot_right_after_a_check_is_not_replayed(tiny, monkeypatch):
    # checks every step: nothing lies between the overshooting check and the one before it
    _scripted(monkeypatch, [50.0, 0.0])
    info, _ = _run(tiny, "every1", {"type": "adam", "lr": 0.001}, steps=99, stop=_stop(tiny, 1, 4), level=10.0)
    es = info["early_stop"]
    assert [c["step"] for c in es["checks"]] == [1, 2] and not any("replay" in c for c in es["checks"])
    assert (es["stop_step"], es["refined_from"], es["replay_met"], es["overshot"]) == (2, None, None, True)


def test_a_run_that_never_reaches_runs_its_budget_and_says_so(tiny):
    info, _ = _run(tiny, "never", {"type": "adam", "lr": 0.001}, steps=99, stop=_stop(tiny, 3, 7), level=-1000.0)
    es = info["early_stop"]
    assert info["steps"] == 7 and es["reached"] is False and es["stop_step"] is None and es["overshot"] is False
    assert [c["step"] for c in es["checks"]] == [3, 6, 7]  # every 3 steps and at the budget
    assert es["excess"] == pytest.approx(max(es["metrics"]["knowmem_f"], es["metrics"]["verbmem_f"]) + 995.0)
    # the saved state's forget levels are its last check's
    assert {k: es["checks"][-1][k] for k in ("knowmem_f", "verbmem_f")} == {
        k: es["metrics"][k] for k in ("knowmem_f", "verbmem_f")}
