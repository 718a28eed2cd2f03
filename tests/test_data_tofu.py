"""The TOFU-shaped synthetic world and the locuslab/TOFU adapter (fixtures in the hub's layout)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from unlearning.data import sources
from unlearning.data.adapters import fetch
from unlearning.data.io import LAYOUT, DataError, document, read_jsonl
from unlearning.data.sources import HubUnavailable
from unlearning.data.synthetic import generate
from unlearning.stages.common import forget_retain, training_texts

FIX = Path(__file__).parent / "fixtures" / "hub"
SRC = Path(__file__).resolve().parents[1] / "src"
HUB_FILES = {"full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
             "forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed",
             "real_authors_perturbed", "world_facts_perturbed"}


def _q(folder: Path, name: str) -> list[str]:
    return [r["question"] for r in read_jsonl(folder / f"{name}.jsonl")]


def test_layout_names_are_the_hubs():
    assert {f.removesuffix(".jsonl") for f in LAYOUT["tofu"]} == HUB_FILES


def test_synthetic_tofu_splits_by_author(tmp_path):
    counts = generate("tofu", tmp_path, seed=3, n_authors=20, qa_per_author=4, n_perturbed=3)
    # forget10 = the last 2 of 20 authors, forget05 the last 1, forget01 at least one author
    assert counts["full.jsonl"] == 80
    assert (counts["forget10.jsonl"], counts["forget05.jsonl"], counts["forget01.jsonl"]) == (8, 4, 4)
    full = _q(tmp_path, "full")
    for f, r in (("forget01", "retain99"), ("forget05", "retain95"), ("forget10", "retain90")):
        assert _q(tmp_path, r) + _q(tmp_path, f) == full  # forget sets are the last authors
        assert _q(tmp_path, f"{f}_perturbed") == _q(tmp_path, f)
    assert set(_q(tmp_path, "forget05")) <= set(_q(tmp_path, "forget10"))
    assert counts["retain_perturbed.jsonl"] == counts["forget10.jsonl"]
    assert set(_q(tmp_path, "retain_perturbed")) <= set(_q(tmp_path, "retain90"))
    for rec in read_jsonl(tmp_path / "forget10_perturbed.jsonl"):
        wrong = rec["perturbed_answer"]
        assert len(wrong) == 3 == len(set(wrong)) and rec["paraphrased_answer"] not in wrong
        assert rec["paraphrased_answer"] != rec["answer"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "tofu" and manifest["source"] == "synthetic"


def test_synthetic_tofu_is_deterministic(tmp_path):
    generate("tofu", tmp_path / "a", seed=1)
    generate("tofu", tmp_path / "b", seed=1)
    generate("tofu", tmp_path / "c", seed=2)
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert a == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert a["full.jsonl"] != (tmp_path / "c" / "full.jsonl").read_bytes()
    with pytest.raises(ValueError, match="qa_per_author"):
        generate("tofu", tmp_path / "d", qa_per_author=7)


def test_training_texts_are_qa_prompts_with_the_utility_sets(tmp_path):
    generate("tofu", tmp_path, n_authors=10, qa_per_author=2, n_real_authors=3, n_world_facts=3)
    forget, retain = forget_retain(tmp_path, "tofu")
    rec = read_jsonl(tmp_path / "forget10.jsonl")[0]
    assert forget[0] == f"Question: {rec['question']}\nAnswer: {rec['answer']}" == document(rec)
    assert len(forget) == 2 and len(retain) == 18
    target, retrain = training_texts(tmp_path, "tofu", "target"), training_texts(tmp_path, "tofu", "retrain")
    assert len(target) == 2 + 18 + 3 + 3 and len(retrain) == 18 + 3 + 3
    assert not set(forget) & set(retrain)


# ----------------------------------------------------------------------------- hub adapter
def test_tofu_from_hub_snapshot_and_its_parent(tmp_path):
    counts = fetch("tofu", tmp_path / "a", dataset="tofu", source=str(FIX / "TOFU"), name="tofu")
    assert counts["full.jsonl"] == 10 and counts["forget10.jsonl"] == 4 and counts["forget01.jsonl"] == 2
    assert counts["retain_perturbed.jsonl"] == 4 and counts["world_facts_perturbed.jsonl"] == 3
    rec = read_jsonl(tmp_path / "a" / "forget10_perturbed.jsonl")[0]
    assert set(rec) == {"question", "answer", "paraphrased_answer", "perturbed_answer"}  # extra field dropped
    assert fetch("tofu", tmp_path / "b", dataset="tofu", source=str(FIX), name="tofu") == counts
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["splits"]["forget10.jsonl"] == "forget10/train"


def test_tofu_snapshot_without_readme_and_max_records(tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in (FIX / "TOFU").glob("*.json"):
        (copy / p.name).write_bytes(p.read_bytes())
    counts = fetch("tofu", tmp_path / "out", dataset="tofu", source=str(copy), max_records={"full": 3})
    assert counts["full.jsonl"] == 3 and counts["retain90.jsonl"] == 6


def test_tofu_bad_records_and_missing_files_name_the_place(tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in (FIX / "TOFU").glob("*.json"):
        (copy / p.name).write_bytes(p.read_bytes())
    bad = json.loads((copy / "world_facts_perturbed.json").read_text())
    bad[1]["perturbed_answer"] = []
    (copy / "world_facts_perturbed.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="perturbed_answer"):
        fetch("tofu", tmp_path / "out", dataset="tofu", source=str(copy))
    (copy / "world_facts_perturbed.json").unlink()
    with pytest.raises(DataError, match="world_facts_perturbed"):
        fetch("tofu", tmp_path / "out", dataset="tofu", source=str(copy))


def test_unreachable_hub_names_tofu_and_the_config_key(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(sources, "is_offline", lambda: False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(sources, "_CHECKED", {})
    with pytest.raises(HubUnavailable) as err:
        fetch("tofu", tmp_path, dataset="tofu", name="tofu_paper")
    msg = str(err.value)
    assert "locuslab/TOFU" in msg and "benchmarks.tofu_paper.source" in msg and "\n" not in msg
    assert "hf download --repo-type dataset locuslab/TOFU" in msg


def test_tofu_adapter_imports_only_io_and_sources():
    tree = ast.parse((SRC / "unlearning" / "data" / "tofu.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
    assert imported <= {"io", "sources"}


def test_tofu_without_retrain_model_is_a_config_error():
    import yaml

    from unlearning.config import ConfigError, validate

    cfg = yaml.safe_load((SRC.parent / "configs" / "paper-tofu.yaml").read_text())
    cfg["benchmarks"]["tofu"]["retrain"] = False
    with pytest.raises(ConfigError, match="benchmarks.tofu.retrain"):
        validate(cfg)
