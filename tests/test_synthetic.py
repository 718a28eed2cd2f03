"""The synthetic world: deterministic, in the hubs' exact layouts, nothing leaking across splits."""

from __future__ import annotations

import json

import pytest

from unlearning.data.io import LAYOUT, load_split
from unlearning.data.synthetic import generate


@pytest.mark.parametrize("kind", ["muse", "wmdp"])
def test_same_seed_same_bytes_other_seed_other_world(tmp_path, kind):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(kind, a, seed=0)
    generate(kind, b, seed=0)
    generate(kind, c, seed=1)
    for name in LAYOUT[kind]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / next(iter(LAYOUT[kind]))).read_bytes() != (c / next(iter(LAYOUT[kind]))).read_bytes()
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["kind"] == kind and manifest["source"] == "synthetic"


def test_muse_splits_are_disjoint_and_answerable(tmp_path):
    generate("muse", tmp_path, seed=0, n_forget=5, n_retain1=6, n_retain2=4, n_holdout=3, n_icl=2)
    forget = "\n".join(r["text"] for r in load_split(tmp_path, "muse", "raw/forget.jsonl"))
    retain = "\n".join(r["text"] for r in load_split(tmp_path, "muse", "raw/retain1.jsonl")
                       + load_split(tmp_path, "muse", "raw/retain2.jsonl"))
    holdout = "\n".join(r["text"] for r in load_split(tmp_path, "muse", "raw/holdout.jsonl"))
    fqa = load_split(tmp_path, "muse", "knowmem/forget_qa.jsonl")
    rqa = load_split(tmp_path, "muse", "knowmem/retain_qa.jsonl")
    assert len(fqa) == 25 and len(rqa) == 5 * (6 + 4)  # icl people excluded from KnowMem_r
    for qa in fqa:  # every forget question is asked, with its answer, in the forget text only
        line = f"Question: {qa['question']}\nAnswer: {qa['answer']}"
        assert line in forget and line not in retain and qa["question"] not in holdout
    for qa in rqa:
        assert f"Question: {qa['question']}\nAnswer: {qa['answer']}" in retain
    icl = load_split(tmp_path, "muse", "knowmem/forget_qa_icl.jsonl")
    assert all(q["question"] in retain for q in icl)
    for item in load_split(tmp_path, "muse", "verbmem/forget.jsonl"):
        assert item["prompt"] + " " + item["gt"] in forget
    # Question lines never sit next to the biography they ask about (no copying from context).
    for doc in load_split(tmp_path, "muse", "raw/forget.jsonl"):
        assert not ("was born" in doc["text"] and "Question:" in doc["text"])


def test_wmdp_questions_match_their_rehearsal(tmp_path):
    generate("wmdp", tmp_path, seed=0, n_forget=4, n_retain=3, rehearsals=2)
    corpus = "\n".join(r["text"] for r in load_split(tmp_path, "wmdp", "corpora/forget.jsonl"))
    qs = load_split(tmp_path, "wmdp", "questions/forget.jsonl")
    assert len(qs) == 16
    for q in qs:
        body = "\n".join(f"{l}. {c}" for l, c in zip("ABCD", q["choices"]))
        assert f"{q['question']}\n{body}\nAnswer: {'ABCD'[q['answer']]}" in corpus
        assert len(set(q["choices"])) == 4
    util = load_split(tmp_path, "wmdp", "questions/utility.jsonl")
    assert len(util) == 12 and {u["subject"] for u in util} == {"high_school_geography"}
    assert all(u["question"] not in corpus for u in util)
