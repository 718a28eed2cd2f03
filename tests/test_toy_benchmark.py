"""docs/extending/adding-a-benchmark.md, followed: a toy benchmark kind (facts to forget, facts to
keep; scored by the probability a model gives each fact) added as one module (this file stands for
it), one registry entry and its schema enum entry, and nothing else, flows through the schema check,
a config, data preparation, the training and tokenizer texts, scoring a model and the report's metric
vocabulary."""

from __future__ import annotations

import copy
import importlib
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
import yaml
from test_registry import kind_problems

from unlearning import registry
from unlearning.config import load_schema, validate
from unlearning.data.io import TEXT, load_split, write_jsonl
from unlearning.data.synthetic_common import finish
from unlearning.stages.common import forget_retain, texts, training_texts

# --- the toy benchmark's module --------------------------------------------------------------------

LAYOUT = {"forget.jsonl": TEXT, "retain.jsonl": TEXT, "holdout.jsonl": TEXT}
COLOURS = ["red", "green", "blue", "amber", "violet", "teal"]


@dataclass
class ToyShape:
    """Sizes of the toy benchmark (config `shape`)."""

    n_facts: int = 3


def generate(out_dir: str | Path, seed: int, shape: ToyShape) -> dict[str, int]:
    """Write ``n_facts`` facts per split (``pet{i} is {colour}``) and the manifest."""
    rng = random.Random(seed)
    out = Path(out_dir)
    for offset, name in enumerate(LAYOUT):
        write_jsonl(out / name, [{"text": f"pet{offset * 100 + i} is {rng.choice(COLOURS)}."}
                                 for i in range(shape.n_facts)])
    return finish(out, "toy", "pets", seed, asdict(shape))


def score_toy(model: Any, tok: Any, data_dir: str | Path, kind: str, params: dict, subject: str,
              split: Callable, wanted: Callable[[str], bool], items: dict | None) -> dict[str, float]:
    """``toy_prob_f`` / ``toy_prob_r``: mean per-token probability (x100) of the forget / retain facts."""
    import torch

    out = {}
    for metric, name in (("toy_prob_f", "forget.jsonl"), ("toy_prob_r", "retain.jsonl")):
        if not wanted(metric):
            continue
        records = load_split(data_dir, kind, name)
        scores = []
        for r in records:
            ids = tok(r["text"], return_tensors="pt").input_ids.to(model.device)
            with torch.no_grad():
                loss = model(ids, labels=ids).loss
            scores.append(100.0 * float(torch.exp(-loss)))
        out[metric] = sum(scores) / len(scores)
        if metric == "toy_prob_f":
            split(metric, records, "text", scores)
    return out


# --- its registry entry and schema entry -----------------------------------------------------------

TOY = registry.BenchmarkKind(
    layout=f"{__name__}:LAYOUT", roles={"forget": "forget.jsonl", "retain": "retain.jsonl"},
    generator=f"{__name__}:generate", shape=f"{__name__}:ToyShape", adapter=None, scorer=f"{__name__}:score_toy",
    forget_metrics=("toy_prob_f",), utility_metrics=("toy_prob_r",), criterion=("toy_prob_f", "toy_prob_r"),
    primary=("toy_prob_f", "toy_prob_r"), tokenizer_extra=("holdout.jsonl",))


@pytest.fixture
def schema(monkeypatch) -> dict:
    """The registry with the toy entry, and the schema with its enum entry."""
    monkeypatch.setitem(registry.BENCHMARK_KINDS, "toy", TOY)
    schema = copy.deepcopy(load_schema())
    bench = schema["properties"]["benchmarks"]["additionalProperties"]
    bench["properties"]["kind"]["enum"].append("toy")
    return schema


def test_the_entry_agrees_with_its_code_and_the_schema(schema):
    assert kind_problems(registry.BENCHMARK_KINDS, schema) == []
    assert kind_problems(registry.BENCHMARK_KINDS, load_schema()) == [
        "kind toy: not in the schema's benchmarks.<name>.kind enum"]
    assert registry.forget_metrics()[-1] == "toy_prob_f" and registry.utility_metrics()[-1] == "toy_prob_r"


def test_a_config_naming_it_prepares_its_data(schema, tmp_path):
    from unlearning.stages.data import prepare_data, tokenizer_texts

    with open("configs/smoke.yaml", encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    config["benchmarks"] = {"pets": {"kind": "toy", "seed": 3, "shape": {"n_facts": 2}}}
    bench = validate(config, schema)["benchmarks"]["pets"]
    prepare_data(bench, tmp_path / "pets", name="pets")
    assert sorted(p.name for p in (tmp_path / "pets").iterdir()) == [
        "forget.jsonl", "holdout.jsonl", "manifest.json", "retain.jsonl"]
    forget, retain = forget_retain(tmp_path / "pets", "toy")
    assert len(forget) == len(retain) == 2 and forget[0].startswith("pet0 is ")
    assert training_texts(tmp_path / "pets", "toy", "target") == forget + retain
    assert training_texts(tmp_path / "pets", "toy", "retrain") == retain
    assert tokenizer_texts(tmp_path / "pets", "toy") == retain + texts(tmp_path / "pets", "toy", "holdout.jsonl")


def test_evaluation_scores_it_with_its_scorer(schema, tmp_path):
    from unlearning.models import build_model, train_tokenizer

    score = importlib.import_module("unlearning.stages.evaluate").score
    generate(tmp_path / "pets", 0, ToyShape(n_facts=4))
    tok = train_tokenizer(training_texts(tmp_path / "pets", "toy", "target"), 300, tmp_path / "tok")
    arch = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1, "num_heads": 2, "max_len": 64}
    model = build_model(arch, len(tok), seed=0).eval()
    relearned = forget_retain(tmp_path / "pets", "toy")[0][:2]
    out = score(model, tok, tmp_path / "pets", "toy", {}, "pets", relearned)
    assert sorted(out) == ["toy_prob_f", "toy_prob_f_heldout", "toy_prob_f_relearned", "toy_prob_r"]
    assert all(0 < v < 100 for v in out.values())
    assert out["toy_prob_f"] == pytest.approx((out["toy_prob_f_heldout"] + out["toy_prob_f_relearned"]) / 2)
    assert score(model, tok, tmp_path / "pets", "toy", {}, "pets", relearned, only={"toy_prob_r"}) == \
        {"toy_prob_r": out["toy_prob_r"]}


def test_the_report_reads_its_metrics(schema):
    from unlearning.report import tidy

    df = pd.DataFrame({"metric": ["toy_prob_r", "toy_prob_f", "toy_prob_f_relearned"]})
    assert tidy.forget_metrics(df) == ["toy_prob_f"] and tidy.utility_metric(df) == "toy_prob_r"
    assert tidy.metric_range("toy_prob_f_relearned") == (0.0, 100.0)
