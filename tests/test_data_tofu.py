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
    # the utility sets as locuslab/tofu holds them, without a paraphrase, load as they are
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        assert "paraphrased_answer" not in json.loads((FIX / "TOFU" / f"{name}.json").read_text())[0]
        assert set(read_jsonl(tmp_path / "a" / f"{name}.jsonl")[0]) == {"question", "answer", "perturbed_answer"}
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


# ----------------------------------------------------------------------------- question/answer template, prompt mask
CHAT = {"prompt": "[INST] {question} [/INST]", "answer": "{answer}"}


def test_the_data_stage_records_the_template_and_documents_use_it(tmp_path):
    import pickle

    from unlearning.data.io import QADocument, read_template
    from unlearning.stages.data import prepare_data

    bench = {"kind": "tofu", "source": "synthetic", "shape": {"n_authors": 10, "qa_per_author": 2},
             "qa_template": CHAT}
    prepare_data(bench, tmp_path / "d")
    assert read_template(tmp_path / "d") == CHAT
    forget, _ = forget_retain(tmp_path / "d", "tofu")
    rec = read_jsonl(tmp_path / "d" / "forget10.jsonl")[0]
    assert isinstance(forget[0], QADocument)
    assert forget[0] == f"[INST] {rec['question']} [/INST]{rec['answer']}"
    assert forget[0].prompt == f"[INST] {rec['question']} [/INST]"
    back = pickle.loads(pickle.dumps(forget[0]))
    assert back == forget[0] and back.prompt == forget[0].prompt
    with pytest.raises(DataError, match="qa_template.prompt"):
        prepare_data(dict(bench, qa_template={"prompt": "no question", "answer": "{answer}"}), tmp_path / "e")


def test_qa_template_is_a_tofu_key_with_the_default_in_the_schema():
    from unlearning.config import ConfigError, validate

    cfg = validate(yaml_cfg("tofu.yaml"))
    assert cfg["benchmarks"]["tofu"]["qa_template"] == {"prompt": "Question: {question}\nAnswer:",
                                                        "answer": " {answer}"}
    muse = yaml_cfg("smoke.yaml")
    muse["benchmarks"]["muse"]["qa_template"] = CHAT
    with pytest.raises(ConfigError, match="qa_template"):
        validate(muse)


def yaml_cfg(name: str) -> dict:
    import yaml

    return yaml.safe_load((SRC.parent / "configs" / name).read_text())


def _tok():
    from test_eval import make_tok

    return make_tok()


def test_a_tofu_batch_masks_the_question_and_keeps_the_answer_and_eos():
    import torch

    from unlearning.data.chunking import examples
    from unlearning.data.io import qa_document
    from unlearning.train import collate

    tok = _tok()
    docs = [qa_document("the cat sat?", "on the mat"), qa_document("the dog lay far?", "on the rug", CHAT)]
    batch = collate(examples(tok, docs, 64), tok.pad_token_id, torch.device("cpu"))
    for i, doc in enumerate(docs):
        head = tok(doc.prompt).input_ids  # with BOS, as TOFU counts num_question_tokens
        full = tok(str(doc) + tok.eos_token).input_ids
        labels = batch["labels"][i, :len(full)].tolist()
        assert labels == [-100] * len(head) + full[len(head):]
        assert labels[-1] == tok.eos_token_id and batch["input_ids"][i, :len(full)].tolist() == full
    # a text document keeps every label; concatenation cannot hold question/answer documents
    plain = collate(examples(tok, ["the cat sat"], 64), tok.pad_token_id, torch.device("cpu"))
    assert (plain["labels"] == plain["input_ids"]).all()
    with pytest.raises(ValueError, match="truncate"):
        examples(tok, docs, 64, "concat")


class _Bigram:
    """A model whose next-token logits depend on the current token only (an embedding table)."""

    def __init__(self, vocab: int, seed: int):
        import torch

        self.table = torch.nn.Embedding(vocab, vocab)
        torch.manual_seed(seed)
        torch.nn.init.normal_(self.table.weight)

    def __call__(self, input_ids, attention_mask=None, **_):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.table(input_ids))


# SimNPO at beta 0.1: at its default 4.5 a random model's forget term saturates at 0 either way
@pytest.mark.parametrize("name,params", [("npo", {"beta": 0.1, "aggregation": "sum", "retain_weight": 1.0}),
                                         ("simnpo", {"beta": 0.1}), ("grad_ascent", {}), ("grad_diff", {})])
def test_tofu_loss_is_unchanged_when_only_question_tokens_change(name, params):
    import torch

    from unlearning.data.chunking import examples
    from unlearning.data.io import qa_document
    from unlearning.objectives import build_objective
    from unlearning.train import collate

    tok = _tok()
    model, ref = _Bigram(len(tok), 0), _Bigram(len(tok), 1)
    objective = build_objective(name, params)
    retain = collate(examples(tok, [qa_document("who?", "the dog")], 64), tok.pad_token_id, torch.device("cpu"))

    def loss(questions, masked=True):
        docs = [qa_document(q, "on the mat") for q in questions]
        docs = docs if masked else [str(d) for d in docs]
        batch = collate(examples(tok, docs, 64), tok.pad_token_id, torch.device("cpu"))
        with torch.no_grad():
            return float(objective.loss(model, batch, retain, ref))

    # the answer follows "Answer:" either way, so a bigram model's answer logits are the same:
    # only question tokens differ, and they carry no loss
    a, b = ["the cat sat?", "x"], ["the dog lay on the rug?", "a b c"]
    assert loss(a) == pytest.approx(loss(b), abs=1e-6)
    assert loss(a, masked=False) != pytest.approx(loss(b, masked=False), abs=1e-3)  # unmasked it changes


def test_tofu_scores_the_first_n_items_of_each_set(tmp_path, monkeypatch):
    from unlearning.eval import tofu
    from unlearning.stages.evaluate import score

    generate("tofu", tmp_path, n_authors=20, qa_per_author=5, n_real_authors=12, n_world_facts=3)
    seen = {}

    def fake(model, tok, sets, max_new_tokens, batch_size, template):
        seen.update({k: [r["question"] for r in v] for k, v in sets.items()}, template=template)
        n = len(sets["forget"])
        return {}, {"tofu_prob_f": [0.0] * n, "tofu_rouge_f": [0.0] * n, "truth_ratio_f": [1.0] * n}

    monkeypatch.setattr(tofu, "tofu_scores", fake)
    params = {"batch_size": 4, "max_questions": 0, "tofu_max_new_tokens": 8, "tofu_max_items": 6}
    score(None, None, tmp_path, "tofu", params, "x", [])
    for name, file in (("forget", "forget10"), ("retain", "retain"), ("real_authors", "real_authors"),
                       ("world_facts", "world_facts")):
        first = [r["question"] for r in read_jsonl(tmp_path / f"{file}_perturbed.jsonl")][:6]
        assert seen[name] == first  # world facts has 3: all of them
    score(None, None, tmp_path, "tofu", dict(params, tofu_max_items=0), "x", [])
    assert len(seen["forget"]) == 10 and len(seen["real_authors"]) == 12
