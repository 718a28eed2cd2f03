"""Hub adapters (MUSE, WMDP, MMLU) on local fixtures laid out as the hub repos are; offline errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearning.data import sources
from unlearning.data.adapters import fetch
from unlearning.data.io import LAYOUT, DataError, read_jsonl, validate_benchmark
from unlearning.data.mmlu import fetch_mmlu, load_mmlu
from unlearning.data.muse import fetch_muse
from unlearning.data.sources import HubUnavailable
from unlearning.data.wmdp import fetch_wmdp

FIX = Path(__file__).parent / "fixtures" / "hub"
SRC = Path(__file__).resolve().parents[1] / "src"


def _fields(path: Path) -> set[tuple[str, ...]]:
    return {tuple(sorted(r)) for r in read_jsonl(path)}


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------ MUSE


def test_muse_news_from_hub_snapshot(tmp_path):
    counts = fetch_muse("news", tmp_path, source=FIX / "MUSE-News", name="muse_news")
    assert counts == {
        "raw/forget.jsonl": 4, "raw/retain1.jsonl": 5, "raw/retain2.jsonl": 5, "raw/holdout.jsonl": 6,
        "verbmem/forget.jsonl": 4, "knowmem/forget_qa.jsonl": 5, "knowmem/retain_qa.jsonl": 5,
        "knowmem/forget_qa_icl.jsonl": 2, "knowmem/retain_qa_icl.jsonl": 2,
        "privleak/forget.jsonl": 3, "privleak/retain.jsonl": 3, "privleak/holdout.jsonl": 3,
    }
    assert validate_benchmark(tmp_path, "muse") == counts
    for name, schema in LAYOUT["muse"].items():  # exactly the LAYOUT fields, nothing extra
        assert _fields(tmp_path / name) == {tuple(sorted(schema))}, name
    man = _manifest(tmp_path)
    assert man["kind"] == "muse" and man["source"] == "hub" and man["dataset"] == "muse-news"
    assert man["counts"] == counts and man["subject"] == "news"
    # README configs win over the stale privleak/retain2 file kept beside privleak/retain
    texts = [r["text"] for r in read_jsonl(tmp_path / "privleak/retain.jsonl")]
    assert all("privleak retain " in t and "STALE" not in t for t in texts)
    # hub order is kept
    assert [r["text"][:len("MUSE-News raw forget document 0")] for r in
            read_jsonl(tmp_path / "raw/forget.jsonl")][0] == "MUSE-News raw forget document 0"


def test_muse_books_old_split_names_without_readme(tmp_path):
    # parent folder holding MUSE-Books/ is accepted too
    counts = fetch_muse("books", tmp_path, source=FIX)
    assert counts["raw/forget.jsonl"] == 2 and counts["raw/retain2.jsonl"] == 3
    man = _manifest(tmp_path)
    assert man["splits"]["knowmem/retain_qa.jsonl"] == "knowmem/retain2_qa"
    assert man["splits"]["knowmem/retain_qa_icl.jsonl"] == "knowmem/retain2_qa_icl"
    assert man["splits"]["privleak/retain.jsonl"] == "privleak/retain2"
    assert read_jsonl(tmp_path / "knowmem/retain_qa.jsonl")[0]["question"].startswith("MUSE-Books retain")


def test_muse_max_records(tmp_path):
    counts = fetch_muse("news", tmp_path / "a", source=FIX / "MUSE-News", max_records=2)
    assert all(n == 2 for n in counts.values())
    counts = fetch_muse("news", tmp_path / "b", source=FIX / "MUSE-News",
                        max_records={"raw/forget": 1, "knowmem/forget_qa.jsonl": 3})
    assert counts["raw/forget.jsonl"] == 1 and counts["knowmem/forget_qa.jsonl"] == 3
    assert counts["raw/holdout.jsonl"] == 6
    with pytest.raises(DataError, match="unknown file 'raw/nope'"):
        fetch_muse("news", tmp_path / "c", source=FIX / "MUSE-News", max_records={"raw/nope": 1})
    with pytest.raises(DataError, match="positive integer"):
        fetch_muse("news", tmp_path / "c", source=FIX / "MUSE-News", max_records={"raw/forget": 0})


def test_muse_save_to_disk_source(tmp_path):
    import datasets

    root = tmp_path / "saved"
    for config, splits in {"raw": ["forget", "retain1", "retain2", "holdout"],
                           "privleak": ["forget", "retain", "holdout"]}.items():
        datasets.DatasetDict({s: datasets.Dataset.from_list([{"text": f"{config} {s} {i}"}
                                                             for i in range(2)])
                              for s in splits}).save_to_disk(str(root / config))
    datasets.DatasetDict({"forget": datasets.Dataset.from_list(
        [{"prompt": "p", "gt": "g"}])}).save_to_disk(str(root / "verbmem"))
    qa = datasets.Dataset.from_list([{"question": "q", "answer": "a"}])
    datasets.DatasetDict({s: qa for s in ["forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"]}
                         ).save_to_disk(str(root / "knowmem"))
    counts = fetch_muse("news", tmp_path / "out", source=root)
    assert counts["raw/forget.jsonl"] == 2 and counts["verbmem/forget.jsonl"] == 1


def test_muse_local_errors_name_the_place(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        fetch_muse("news", tmp_path / "out", source=tmp_path / "missing")
    broken = tmp_path / "MUSE-News"
    shutil.copytree(FIX / "MUSE-News", broken)
    for f in (broken / "knowmem").glob("retain_qa_icl-*"):
        f.unlink()
    with pytest.raises(DataError, match=r"no split 'retain_qa_icl' or 'retain2_qa_icl'.*knowmem"):
        fetch_muse("news", tmp_path / "out", source=broken)
    # a wrong schema names the file place and the missing field
    shutil.rmtree(broken)
    shutil.copytree(FIX / "MUSE-News", broken)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["q"], "reply": ["a"]}),
                   broken / "knowmem/forget_qa-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"knowmem/forget_qa.*missing field 'answer'"):
        fetch_muse("news", tmp_path / "out", source=broken)
    assert not (tmp_path / "out" / "manifest.json").exists()
    with pytest.raises(DataError, match="not one of"):
        fetch_muse("poems", tmp_path / "out", source=broken)


# ------------------------------------------------------------------------------------------ WMDP


def test_wmdp_cyber_from_local_copies(tmp_path):
    counts = fetch_wmdp("cyber", tmp_path, source=FIX, name="wmdp_cyber")
    assert counts == {"corpora/forget.jsonl": 4, "corpora/retain.jsonl": 5,
                      "questions/forget.jsonl": 4, "questions/utility.jsonl": 9}
    for name, schema in LAYOUT["wmdp"].items():
        assert _fields(tmp_path / name) == {tuple(sorted(schema))}, name
    q = read_jsonl(tmp_path / "questions/forget.jsonl")
    assert q[1] == {"question": "Which cyber fixture item 1 is right?",
                    "choices": ["option A of 1", "option B of 1", "option C of 1", "option D of 1"],
                    "answer": 1}
    assert read_jsonl(tmp_path / "corpora/forget.jsonl")[0]["text"].startswith("cyber forget")
    man = _manifest(tmp_path)
    assert (man["kind"], man["source"], man["dataset"], man["subject"]) == \
        ("wmdp", "hub", "wmdp-cyber", "cybersecurity")
    assert man["counts"] == counts


def test_wmdp_bio_needs_local_forget_corpus(tmp_path):
    # the fixture folder holds bio-forget-corpus.jsonl beside wmdp/, wmdp-corpora/, mmlu/
    counts = fetch_wmdp("bio", tmp_path / "a", source=FIX, max_records={"corpora/retain.jsonl": 4})
    assert counts["corpora/forget.jsonl"] == 4 and counts["corpora/retain.jsonl"] == 4
    assert counts["questions/forget.jsonl"] == 5
    # two shards read in order, only 'text' kept
    retain = read_jsonl(tmp_path / "a/corpora/retain.jsonl")
    assert [r["text"][:12] for r in retain] == ["bio retain a"] * 3 + ["bio retain b"]
    assert set(read_jsonl(tmp_path / "a/corpora/forget.jsonl")[0]) == {"text"}
    # without a forget corpus: a clear error, before anything is fetched
    with pytest.raises(DataError) as err:
        fetch_wmdp("bio", tmp_path / "b", name="wmdp_bio", questions_source=FIX / "wmdp",
                   corpora_source=FIX / "wmdp-corpora", mmlu_source=FIX / "mmlu")
    msg = str(err.value)
    assert "gated" in msg and "\n" not in msg
    assert "benchmarks.wmdp_bio.data_options.forget_corpus" in msg
    # an explicit path works without `source`
    counts = fetch_wmdp("bio", tmp_path / "c", questions_source=FIX / "wmdp",
                        corpora_source=FIX / "wmdp-corpora", mmlu_source=FIX / "mmlu",
                        forget_corpus=FIX / "bio-forget-corpus.jsonl")
    assert counts["corpora/forget.jsonl"] == 4


def test_wmdp_chem_needs_both_corpora(tmp_path):
    with pytest.raises(DataError, match="benchmarks.wmdp_chem.data_options.forget_corpus"):
        fetch_wmdp("chem", tmp_path / "a", source=FIX, name="wmdp_chem")
    corpus = tmp_path / "chem.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"doc {i}", "id": i}) + "\n" for i in range(3)))
    counts = fetch_wmdp("chem", tmp_path / "b", source=FIX, forget_corpus=corpus,
                        retain_corpus=FIX / "wmdp-corpora" / "cyber-retain-corpus")
    assert counts["corpora/forget.jsonl"] == 3 and counts["corpora/retain.jsonl"] == 5
    assert counts["questions/forget.jsonl"] == 3
    assert _manifest(tmp_path / "b")["subject"] == "chemistry"


def test_wmdp_missing_subfolder_names_path_and_override(tmp_path):
    (tmp_path / "src" / "wmdp").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        fetch_wmdp("cyber", tmp_path / "out", source=tmp_path / "src", name="w")
    assert "wmdp-corpora" in str(err.value)
    assert "benchmarks.w.data_options.corpora_source: hub" in str(err.value)


def test_corpus_without_text_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"abstract": "no text here"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl.*missing field 'text'"):
        fetch_wmdp("cyber", tmp_path / "out", source=FIX, forget_corpus=bad)


# ------------------------------------------------------------------------------------------ MMLU


def test_mmlu_filter_and_cap(tmp_path):
    allq = load_mmlu(FIX / "mmlu")
    assert len(allq) == 9  # test split only, not dev
    assert {r["subject"] for r in allq} == {"abstract_algebra", "anatomy", "virology"}
    some = load_mmlu(FIX / "mmlu", subjects=["anatomy", "virology"])
    assert len(some) == 5 and {r["subject"] for r in some} == {"anatomy", "virology"}
    capped = load_mmlu(FIX / "mmlu", max_records=4)  # round robin: every subject represented
    assert [r["subject"] for r in capped] == ["abstract_algebra", "abstract_algebra", "anatomy",
                                              "virology"]
    with pytest.raises(DataError, match="unknown MMLU subject"):
        load_mmlu(FIX / "mmlu", subjects=["astrology"])
    n = fetch_mmlu(tmp_path / "questions/utility.jsonl", FIX / "mmlu", subjects="virology")
    assert n == 2
    assert {tuple(sorted(r)) for r in read_jsonl(tmp_path / "questions/utility.jsonl",
                                                 LAYOUT["wmdp"]["questions/utility.jsonl"])} == \
        {("answer", "choices", "question", "subject")}


# ------------------------------------------------------------------------------------------ dispatch


def test_fetch_dispatch(tmp_path):
    counts = fetch("muse", tmp_path / "m", dataset="muse-news", source="hub",
                   local_path=str(FIX / "MUSE-News"), max_records=None)
    assert counts["raw/holdout.jsonl"] == 6
    counts = fetch("wmdp", tmp_path / "w", kind="wmdp", dataset="wmdp-cyber", source=str(FIX),
                   mmlu_subjects=["virology"])
    assert counts["questions/utility.jsonl"] == 2
    assert _manifest(tmp_path / "w")["mmlu_subjects"] == ["virology"]
    # as stages.prepare_data calls it: local_path from `source`, data_options spread
    bench = {"kind": "wmdp", "source": str(FIX), "dataset": "wmdp-bio",
             "data_options": {"bio_forget_corpus": str(FIX / "bio-forget-corpus.jsonl"),
                              "max_records": {"corpora/retain.jsonl": 2}, "name": "wmdp_bio"}}
    counts = fetch(bench["kind"], tmp_path / "b", dataset=bench["dataset"],
                   local_path=bench["source"], **bench["data_options"])
    assert counts["corpora/forget.jsonl"] == 4 and counts["corpora/retain.jsonl"] == 2
    with pytest.raises(DataError, match="not one of"):
        fetch("muse", tmp_path / "x", dataset="muse-poems")
    with pytest.raises(DataError, match="of kind 'wmdp', not 'muse'"):
        fetch("muse", tmp_path / "x", dataset="wmdp-bio")
    with pytest.raises(DataError, match="unknown options"):
        fetch("muse", tmp_path / "x", dataset="muse-news", forget_corpus="x")
    with pytest.raises(DataError, match="synthetic"):
        fetch("muse", tmp_path / "x", dataset="muse-news", source="synthetic")


# ------------------------------------------------------------------------------------------ offline


def test_unreachable_hub_fails_fast_with_instructions(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "is_offline", lambda: False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # closed port: refused at once
    monkeypatch.setattr(sources, "_CHECKED", {})
    start = time.monotonic()
    with pytest.raises(HubUnavailable) as err:
        fetch_muse("books", tmp_path, name="muse_books")
    assert time.monotonic() - start < 15
    msg = str(err.value)
    assert "muse-bench/MUSE-Books" in msg and "benchmarks.muse_books.source" in msg
    assert "hf download --repo-type dataset muse-bench/MUSE-Books --local-dir" in msg
    assert "\n" not in msg
    with pytest.raises(HubUnavailable) as err:
        fetch_wmdp("cyber", tmp_path, name="wmdp_cyber")
    assert "cais/wmdp-corpora" in str(err.value) and "benchmarks.wmdp_cyber.source" in str(err.value)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.slow
def test_hf_hub_offline_env_gives_one_line_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(SRC)}
    code = ("from unlearning.data.adapters import fetch\nfrom unlearning.data.sources import HubUnavailable\n"
            "try:\n"
            "    fetch('muse', %r, dataset='muse-news', name='muse_news')\n"
            "except HubUnavailable as e:\n"
            "    print(e)\n" % str(tmp_path / "out"))
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert time.monotonic() - start < 60
    out = res.stdout.strip()
    assert res.returncode == 0, res.stderr
    assert len(out.splitlines()) == 1
    assert "muse-bench/MUSE-News" in out and "benchmarks.muse_news.source" in out
    assert "hf download --repo-type dataset muse-bench/MUSE-News" in out
    assert "HF_HUB_OFFLINE is set" in out


def test_hub_code_path_through_datasets(tmp_path, monkeypatch):
    """The hub branch (load_dataset, streaming under a cap, split-name fallback), with the repo id
    redirected to a fixture copy so that `datasets` itself parses the README configs."""
    import datasets

    repo = tmp_path / "MUSE-News"
    shutil.copytree(FIX / "MUSE-News", repo)
    for f in sorted((repo / "knowmem").glob("retain_qa*")):  # an older revision's names
        f.rename(f.with_name(f.name.replace("retain_qa", "retain2_qa")))
    readme = repo / "README.md"
    readme.write_text(readme.read_text().replace("retain_qa", "retain2_qa"))

    real = datasets.load_dataset
    calls = []

    def fake_load(path, name=None, split=None, streaming=False, **kw):
        calls.append((path, name, split, streaming))
        assert path == "muse-bench/MUSE-News"
        return real(str(repo), name, split=split, streaming=streaming,
                    cache_dir=str(tmp_path / "cache"), **kw)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(sources, "probe", lambda repo_id, timeout=None: None)
    monkeypatch.setattr(sources, "_CHECKED", {})
    monkeypatch.setattr(sources, "is_offline", lambda: False)
    counts = fetch_muse("news", tmp_path / "out", max_records={"raw/holdout": 2})
    assert counts["raw/holdout.jsonl"] == 2 and counts["raw/retain1.jsonl"] == 5
    assert counts["knowmem/retain_qa.jsonl"] == 5 and counts["knowmem/retain_qa_icl.jsonl"] == 2
    assert ("muse-bench/MUSE-News", "raw", "holdout", True) in calls  # capped: streamed
    assert ("muse-bench/MUSE-News", "raw", "forget", False) in calls
    assert ("muse-bench/MUSE-News", "knowmem", "retain_qa", False) in calls  # tried, then fallback
    man = _manifest(tmp_path / "out")
    assert man["repos"] == {"muse-bench/MUSE-News": "hub"}
    assert man["splits"]["knowmem/retain_qa.jsonl"] == "knowmem/retain2_qa"
    assert _fields(tmp_path / "out/verbmem/forget.jsonl") == {("gt", "prompt")}


def test_forget_corpus_folder_and_saved_dataset(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap = tmp_path / "wmdp-bio-forget-corpus" / "data"  # a snapshot with no README configs
    snap.mkdir(parents=True)
    for k in range(2):
        pq.write_table(pa.table({"title": [f"t{k}"], "text": [f"doc {k}"]}),
                       snap / f"train-0000{k}-of-00002.parquet")
    (snap.parent / "README.md").write_text("# card without YAML\n")
    counts = fetch_wmdp("cyber", tmp_path / "a", source=FIX, forget_corpus=snap.parent)
    assert counts["corpora/forget.jsonl"] == 2
    assert read_jsonl(tmp_path / "a/corpora/forget.jsonl") == [{"text": "doc 0"}, {"text": "doc 1"}]
    saved = tmp_path / "saved"
    datasets.Dataset.from_list([{"text": "x"}, {"text": "y"}, {"text": "z"}]).save_to_disk(str(saved))
    counts = fetch_wmdp("cyber", tmp_path / "b", source=FIX, retain_corpus=saved,
                        max_records={"corpora/retain.jsonl": 2})
    assert counts["corpora/retain.jsonl"] == 2


def test_schema_datasets_are_the_adapters_and_data_modules_have_no_cycle():
    import ast

    import yaml

    from unlearning.data.adapters import DATASETS, KINDS

    schema = yaml.safe_load((SRC.parent / "workflow" / "schemas" / "config.schema.yaml").read_text())
    enum = schema["properties"]["benchmarks"]["additionalProperties"]["properties"]["dataset"]["enum"]
    assert sorted(enum) == sorted(DATASETS) and set(DATASETS.values()) == set(KINDS)
    # sources.py reads; adapters import only it, io and (WMDP) the MMLU adapter; adapters.py dispatches
    allowed = {"sources": {"io"}, "mmlu": {"io", "sources"}, "muse": {"io", "sources"},
               "wmdp": {"io", "sources", "mmlu"}}
    for name, ok in allowed.items():
        tree = ast.parse((SRC / "unlearning" / "data" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert imported <= ok, (name, imported - ok)
