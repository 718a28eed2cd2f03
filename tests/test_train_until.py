"""Targets that learn (issue 24 item 5): training in rounds until declared knowledge levels are met."""

from __future__ import annotations

import importlib
import json
import logging

import pytest
import yaml

from unlearning.config import ConfigError, validate
from unlearning.models import build_model, train_tokenizer
from unlearning.registry import BENCHMARK_KINDS
from unlearning.stages import models as stage
from unlearning.train import fit_lm

ARCH = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_len=64)
TEXTS = ["Zorbin was born in Veltrim.", "Quala works as a potter for the Drun Guild.",
         "Mirel lives by the river Tass.", "Obran keeps bees near Sollo."]
TRAINING = {"steps": 3, "lr": 0.003, "batch_size": 2, "warmup": 0.0, "schedule": "cosine", "seed": 0,
            "retrain_steps": "same_epochs"}
EVALUATION = {"batch_size": 4, "max_questions": 4}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(TEXTS, 300, out)
    return out


def _fit(tok, **kw):
    model = build_model(ARCH, len(tok), seed=0)
    return fit_lm(model, tok, TEXTS, steps=4, lr=0.003, batch_size=2, max_len=64, seed=0,
                  warmup=0.25, schedule="cosine", **kw)


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_checks_leave_training_as_it_was_and_stop_it(tok_dir):
    from unlearning.models import load_tokenizer

    tok = load_tokenizer(tok_dir)
    fixed = _fit(tok)
    seen: list[int] = []
    checked = _fit(tok, check_every=1, check=lambda step: seen.append(step) or False)
    assert seen == [1, 2, 3, 4] and checked == fixed  # a check never changes the steps after it
    ends: list[int] = []
    assert _fit(tok, check=lambda step: ends.append(step) or False) == fixed and ends == [4]  # the end only
    stopped = _fit(tok, check_every=1, check=lambda step: step >= 2)
    assert stopped == fixed[:2]


class _Scores:
    """Stands in for stages.evaluate.score: each call returns the next round's metrics."""

    def __init__(self, *rounds: dict[str, float]):
        self.rounds, self.calls = list(rounds), []

    def __call__(self, model, tok, data_dir, kind, params, subject, relearned, items=None, only=None):
        self.calls.append((kind, params, subject, sorted(only)))
        return self.rounds[min(len(self.calls), len(self.rounds)) - 1]


def _train(monkeypatch, tmp_path, tok_dir, scores, role="target", until=None):
    monkeypatch.setattr(importlib.import_module("unlearning.stages.evaluate"), "score", scores)
    monkeypatch.setattr(stage, "training_texts", lambda d, k, r: TEXTS if r == "target" else TEXTS[2:])
    training = {**TRAINING, "until": until or {"levels": {"knowmem_f": 80, "knowmem_r": 80}, "max_rounds": 3}}
    out = tmp_path / role
    stage.train_model(tmp_path, "muse", role, tok_dir, ARCH, training, None, out,
                      evaluation=EVALUATION, subject="biology")
    return json.loads((out / "training.json").read_text())


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_a_target_that_meets_the_levels_stops_early(monkeypatch, tmp_path, tok_dir):
    scores = _Scores({"knowmem_f": 50.0, "knowmem_r": 90.0}, {"knowmem_f": 80.0, "knowmem_r": 85.0})
    rec = _train(monkeypatch, tmp_path, tok_dir, scores)
    # round 0 misses at its end; round 1, a fresh draw, meets at its end
    assert rec["steps"] == 3 and rec["round_steps"] == 3 and len(rec["loss"]) == 3
    assert rec["rounds"] == 2 and rec["total_steps"] == 6 and rec["model_seed"] == stage.round_seed(0, 1)
    assert rec["levels_met"] is True and rec["reached"] == {"knowmem_f": 80.0, "knowmem_r": 85.0}
    assert [(c["round"], c["step"]) for c in rec["checks"]] == [(0, 3), (1, 3)]
    # the study's scorer call: its kind, the evaluation entry, both criterion metrics
    assert scores.calls[0] == ("muse", EVALUATION, "biology", ["knowmem_f", "knowmem_r"])


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_a_target_that_cannot_hits_the_budget_and_is_flagged(monkeypatch, tmp_path, tok_dir, caplog):
    scores = _Scores({"knowmem_f": 79.9, "knowmem_r": 99.0})
    with caplog.at_level(logging.WARNING, logger="unlearning.stages.models"):
        rec = _train(monkeypatch, tmp_path, tok_dir, scores)
    assert rec["total_steps"] == 9 and rec["rounds"] == 3 and len(rec["checks"]) == 3  # max_rounds x steps
    assert rec["steps"] == 3 and rec["kept_round"] == 0 and rec["model_seed"] == 0  # equally near: the first
    assert rec["levels_met"] is False and rec["levels"] == {"knowmem_f": 80.0, "knowmem_r": 80.0}
    assert "NOT met in 3 rounds, 9 steps" in caplog.text


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_a_flagged_model_is_the_round_nearest_the_levels(monkeypatch, tmp_path, tok_dir):
    scores = _Scores({"knowmem_f": 60.0, "knowmem_r": 99.0}, {"knowmem_f": 75.0, "knowmem_r": 79.0},
                     {"knowmem_f": 70.0, "knowmem_r": 99.0})  # short by 20, 6, 10 points
    rec = _train(monkeypatch, tmp_path, tok_dir, scores)
    assert rec["rounds"] == 3 and rec["kept_round"] == 1 and rec["model_seed"] == stage.round_seed(0, 1)
    assert rec["reached"] == {"knowmem_f": 75.0, "knowmem_r": 79.0} and rec["levels_met"] is False
    import torch

    from unlearning.models import load_model, load_tokenizer
    from unlearning.train import seed_everything

    fresh = stage.round_seed(0, 1)  # the saved model is round 1's fit, not round 2's
    seed_everything(fresh)
    model = build_model(ARCH, len(load_tokenizer(tok_dir)), fresh)
    fit_lm(model, load_tokenizer(tok_dir), TEXTS, steps=3, lr=0.003, batch_size=2, max_len=64, seed=fresh,
           schedule="cosine")
    saved = load_model(tmp_path / "target").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_shortfall_sums_the_points_missing():
    assert stage.shortfall({"knowmem_f": 75.0, "knowmem_r": 90.0}, {"knowmem_f": 80, "knowmem_r": 80}) == 5.0
    assert stage.shortfall({"knowmem_f": 95.0}, {"knowmem_f": 80}) == 0.0
    assert stage.shortfall({}, {"knowmem_f": 80}) == float("inf")


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_the_retrain_model_meets_the_retain_level_only(monkeypatch, tmp_path, tok_dir):
    # forget stays low (it never sees the forget set); its rounds are its own same-epoch length
    scores = _Scores({"knowmem_f": 5.0, "knowmem_r": 81.0})
    rec = _train(monkeypatch, tmp_path, tok_dir, scores, role="retrain")
    assert rec["round_steps"] == 2 and rec["steps"] == 2  # round(3 x 2/4 documents)
    assert rec["levels"] == {"knowmem_r": 80.0} and rec["levels_met"] is True
    assert rec["reached"]["knowmem_f"] == 5.0  # scored and recorded, not required


def test_levels_for_names_the_kinds_criterion_metrics():
    levels = {"knowmem_f": 85, "knowmem_r": 80, "wmdp_acc": 90}
    assert stage.levels_for("muse", "target", levels) == {"knowmem_f": 85.0, "knowmem_r": 80.0}
    assert stage.levels_for("muse", "retrain", levels) == {"knowmem_r": 80.0}
    assert stage.levels_for("wmdp", "target", levels) == {"wmdp_acc": 90.0}
    assert stage.levels_for("wmdp", "retrain", levels) == {}  # mmlu_acc not declared: no check
    assert stage.levels_for("tofu", "target", levels) == {}


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_without_levels_training_is_the_fixed_step_fit(monkeypatch, tmp_path, tok_dir):
    def refuse(*a, **k):
        raise AssertionError("no level, no check")

    rec = _train(monkeypatch, tmp_path, tok_dir, refuse, until={"levels": {"wmdp_acc": 90}, "max_rounds": 3})
    assert rec["steps"] == 3 and "levels_met" not in rec


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_levels_without_the_evaluation_entry_are_refused(monkeypatch, tmp_path, tok_dir):
    monkeypatch.setattr(stage, "training_texts", lambda d, k, r: TEXTS)
    training = {**TRAINING, "until": {"levels": {"knowmem_r": 50}, "max_rounds": 2}}
    with pytest.raises(ValueError, match="training.until.levels"):
        stage.train_model(tmp_path, "muse", "target", tok_dir, ARCH, training, None, tmp_path / "m")


def test_schema_levels_are_the_registry_criterion_metrics():
    from unlearning.config import load_schema

    until = load_schema()["properties"]["training"]["properties"]["until"]
    named = until["properties"]["levels"]["propertyNames"]["enum"]
    assert sorted(named) == sorted({m for k in BENCHMARK_KINDS.values() for m in k.criterion})


@pytest.mark.parametrize("until, key", [
    ({"levels": {"knowmem": 80}}, "training.until.levels"),
    ({"levels": {"knowmem_f": 101}}, "training.until.levels.knowmem_f"),
    ({"max_rounds": 0}, "training.until.max_rounds"),
    ({"rounds": 2}, "training.until"),
])
def test_config_errors_name_the_key(until, key):
    with open("config.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["training"]["until"] = until
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(config)


def test_default_study_declares_levels_every_seed_must_meet():
    with open("config.yaml", encoding="utf-8") as f:
        until = validate(yaml.safe_load(f))["training"]["until"]
    assert until["levels"]["knowmem_f"] > 0 and until["levels"]["knowmem_r"] > 0
    assert until["max_rounds"] >= 2


@pytest.mark.slow
def test_the_study_scorer_checks_a_tiny_muse_target(tmp_path):
    """Real data, scorer and stopping: levels of 0 are met after one round, levels of 100 never."""
    from unlearning.data.synthetic import MuseShape, generate_muse
    from unlearning.models import load_model, load_tokenizer
    from unlearning.stages.common import training_texts
    from unlearning.stages.evaluate import score

    data = tmp_path / "muse"
    generate_muse(data, 0, MuseShape(n_forget=2, n_retain1=2, n_retain2=2, n_holdout=2, n_icl=1,
                                     quiz_size=2, quiz_passes=1))
    train_tokenizer(training_texts(data, "muse", "target"), 400, tmp_path / "tok")
    params = {"batch_size": 8, "max_questions": 4, "knowmem_answer_space": False, "knowmem_max_new_tokens": 8}
    training = {**TRAINING, "steps": 2}

    def run(levels: dict, name: str) -> dict:
        until = {"levels": levels, "max_rounds": 2}
        stage.train_model(data, "muse", "target", tmp_path / "tok", ARCH, {**training, "until": until}, None,
                          tmp_path / name, evaluation=params, subject="biology")
        return json.loads((tmp_path / name / "training.json").read_text())

    easy = run({"knowmem_f": 0, "knowmem_r": 0}, "easy")
    assert easy["steps"] == 2 and easy["levels_met"] is True
    model = load_model(tmp_path / "easy")
    again = score(model, load_tokenizer(tmp_path / "easy"), data, "muse", params, "biology", [],
                  only={"knowmem_f", "knowmem_r"})
    assert easy["reached"] == pytest.approx(again)  # the study's scorer, on the study's questions
    hard = run({"knowmem_f": 100, "knowmem_r": 100}, "hard")
    assert hard["total_steps"] == 4 and hard["rounds"] == 2 and hard["levels_met"] is False


def test_the_references_summary_reads_each_models_met(tmp_path):
    from unlearning.report.summaries import references_frame

    for role, seed, met in (("target", 0, True), ("target", 1, False), ("retrain", 0, True)):
        d = tmp_path / "models" / "muse" / role / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "training.json").write_text(json.dumps({"steps": 800, "levels_met": met}))
    (tmp_path / "models" / "wmdp" / "target" / "seed0").mkdir(parents=True)  # no levels: no row
    (tmp_path / "models" / "wmdp" / "target" / "seed0" / "training.json").write_text('{"steps": 800}')
    df = references_frame({}, tmp_path)
    assert df.metric.unique().tolist() == ["levels_met"]
    got = {(r.role, r.seed): r.value for r in df.itertuples()}
    assert got == {("retrain", 0): 1.0, ("target", 0): 1.0, ("target", 1): 0.0}


def test_each_models_training_params_carry_only_the_levels_it_must_meet():
    from unlearning.plan import StudyPlan

    with open("config.yaml", encoding="utf-8") as f:
        plan = StudyPlan(validate(yaml.safe_load(f)))
    target = json.loads(plan.training_params(1, "muse", "target"))
    assert target["seed"] == 1 and target["until"]["levels"] == {"knowmem_f": 80.0, "knowmem_r": 80.0}
    assert json.loads(plan.training_params(1, "muse", "retrain"))["until"]["levels"] == {"knowmem_r": 80.0}
    assert json.loads(plan.training_params(0, "wmdp", "retrain"))["until"]["levels"] == {"mmlu_acc": 90.0}
    assert plan.training_check("muse", "target").startswith("--evaluation '{")
    plan.config["training"]["until"]["levels"] = {}  # none declared: the fixed-step job, no evaluation
    assert "until" not in json.loads(plan.training_params(1, "muse", "target"))
    assert plan.training_check("muse", "target") == ""


def test_round_seeds_are_the_seed_then_fresh_draws():
    assert stage.round_seed(1, 0) == 1
    later = {stage.round_seed(s, r) for s in range(3) for r in range(1, 4)}
    assert len(later) == 9 and not later & {0, 1, 2}
    assert stage.round_seed(1, 1) == stage.round_seed(1, 1)


@pytest.mark.parametrize("bucket", [2, 4, 7])
def test_bucketed_batches_train_every_example_once_per_epoch_with_less_padding(bucket):
    import random

    from unlearning.train import batches, bucketed_batches

    rng = random.Random(0)
    data = [[i] * rng.randint(5, 90) for i in range(53)]  # 53 examples: epochs end mid-batch
    plain, bucketed = batches(data, 4, seed=3), bucketed_batches(data, 4, seed=3, bucket=bucket)
    n = bucket * 40  # 160-280 batches, 12-21 epochs
    a = [next(plain) for _ in range(n)]
    b = [next(bucketed) for _ in range(n)]
    assert all(len(x) == 4 for x in b)
    for k in range(0, n, bucket):  # each pool: the same examples as the plain stream's batches there
        assert sorted(e[0] for x in b[k:k + bucket] for e in x) == sorted(e[0] for x in a[k:k + bucket] for e in x)
    seen = [e[0] for x in b for e in x]
    epochs = len(seen) // 53
    assert {seen.count(i) for i in range(53)} <= {epochs, epochs + 1}  # none dropped, none repeated

    def padded(xs):
        return sum(len(x) * max(len(e) for e in x) for x in xs)

    assert padded(b) < 0.9 * padded(a)
    assert [next(bucketed_batches(data, 4, seed=3, bucket=1)) for _ in range(1)] == a[:1]


@pytest.mark.slow  # fits a tiny model (seconds; the first fit in a process longer)
def test_checks_within_a_round_stop_at_the_first_that_meets(monkeypatch, tmp_path, tok_dir):
    low, high = {"knowmem_f": 10.0, "knowmem_r": 90.0}, {"knowmem_f": 85.0, "knowmem_r": 90.0}
    scores = _Scores(low, low, high)  # round 0 checks at steps 2 and 3 (its end), round 1 at 2
    until = {"levels": {"knowmem_f": 80, "knowmem_r": 80}, "max_rounds": 3, "check_every": 2}
    rec = _train(monkeypatch, tmp_path, tok_dir, scores, until=until)
    assert [(c["round"], c["step"]) for c in rec["checks"]] == [(0, 2), (0, 3), (1, 2)]
    assert rec["steps"] == 2 and rec["rounds"] == 2 and rec["total_steps"] == 5 and rec["levels_met"] is True


@pytest.mark.slow  # builds a tiny model
def test_the_stage_passes_the_checks_and_the_bucketing_to_fit_lm(monkeypatch, tmp_path, tok_dir):
    import unlearning.train as train

    seen = {}

    def fake_fit(model, tok, texts, **kw):
        seen.update(kw)
        kw["check"](kw["steps"])
        return [1.0] * kw["steps"]

    monkeypatch.setattr(train, "fit_lm", fake_fit)
    monkeypatch.setattr(importlib.import_module("unlearning.stages.evaluate"), "score", _Scores({"knowmem_f": 90.0}))
    until = {"levels": {"knowmem_f": 80}, "max_rounds": 4, "check_every": 50}
    monkeypatch.setattr(stage, "training_texts", lambda d, k, r: TEXTS)
    stage.train_model(tmp_path, "muse", "target", tok_dir, ARCH, {**TRAINING, "bucket": 3, "until": until}, None,
                      tmp_path / "m", evaluation=EVALUATION)
    assert (seen["check_every"], seen["bucket"], seen["seed"], seen["steps"]) == (50, 3, 0, 3)
