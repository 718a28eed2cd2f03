"""A paper-shaped local run: each paper config, pointed at local stand-ins, runs every stage for real.

The stand-ins: a small Llama-2-architecture model saved as a sharded safetensors hub snapshot with
its own Llama-style tokenizer (unlearning.bench.llama_style), and the hub-layout fixtures of MUSE-News and
WMDP (tests/fixtures/hub). A copy of configs/paper-muse-news.yaml and configs/paper-wmdp.yaml keeps
the paper's protocol (chunked data and epochs, the lab's relearning with a run per step count, the
reported Relearn attack, WMDP-Bio with its gated corpus read from a local file, the ablation) and
shrinks only sizes: sequence length, seeds, step counts, optimizers, questions, and the calibration grid
to its x1 point (each entry still runs the calibration stage and its criterion; choosing among several
points is the smoke study's, tests/test_reruns.py): a 3-point grid was two thirds of the unlearning jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unlearning.bench.llama_style import llama_snapshot, llama_style_tokenizer

from conftest import ROOT, make_study, snakemake

pytestmark = pytest.mark.e2e

FIX = ROOT / "tests" / "fixtures" / "hub"
SMALL = {
    "model": {"max_len": 48},
    "seeds": [0],
    "calibration": {"grid": [1]},
    "evaluation": {"batch_size": 8, "max_questions": 3, "verbmem_max_new_tokens": 6,
                   "knowmem_max_new_tokens": 6},
    "report": {"lmc_points": 3, "lmc_max_texts": 4},
}


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-models")
    corpus = [f"the lighthouse of Varn{i} was painted blue in spring; question {i}: what colour? answer: blue"
              for i in range(50)] + ["The following are multiple choice questions (with answers) about biology."]
    tok = llama_style_tokenizer(corpus, 300)
    return {"target": llama_snapshot(root / "target", tok, seed=0),
            "retrain": llama_snapshot(root / "retrain", tok, seed=1)}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _run(tmp_path: Path, name: str, overrides: dict) -> tuple[Path, dict]:
    study = make_study(tmp_path / "study")
    cfg = _merge(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()), _merge(SMALL, overrides))
    path = study / "configs" / f"local-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    snakemake(study, "--cores", "2", configfile=path, timeout=600)
    return study, cfg


def test_paper_muse_news_runs_every_stage_on_local_stand_ins(tmp_path, snapshots):
    study, cfg = _run(tmp_path, "paper-muse-news", {
        "benchmarks": {"muse_news": {"source": str(FIX / "MUSE-News"), "target": str(snapshots["target"]),
                                     "retrain": str(snapshots["retrain"]), "methods": ["npo"],
                                     "optimizers": ["adam", "adazo", "hybrid"]}},
        "attacks": {"quantization": ["nf4"], "relearn": {"steps": [2, 3], "report": 2}},
        "ablation": {"seeds": [0], "optimizers": {k: v for k, v in
                                                  yaml.safe_load((ROOT / "configs" / "paper-muse-news.yaml")
                                                                 .read_text())["ablation"]["optimizers"].items()
                                                  if k in ("hybrid_2to1", "hybrid_n10")}},
    })
    res = study / cfg["results"]
    # hub loading: the sharded snapshot was read and saved in our layout
    assert len(list(snapshots["target"].glob("model-*.safetensors"))) > 1
    assert (res / "models" / "muse_news" / "target" / "seed0" / "config.json").exists()
    # chunking and epochs: concat examples of max_len tokens, steps = 10 epochs x steps per epoch
    info = json.loads((res / "unlearned/muse_news/npo/adam/x1/seed0/unlearning.json").read_text())
    assert info["chunking"] == "concat" and info["steps"] == 10 * info["steps_per_epoch"]
    # the lab's relearning: a cosine run per step count, on the whole forget set
    log = (res / "logs/relearn/muse_news/npo/adam/seed0.log").read_text()
    assert "a run per step count" in log and "relearn2: a run of its own" in log and "relearn3: a run" in log
    df = pd.read_csv(res / "tables" / "muse_news.csv")
    assert {"none", "nf4", "relearn2", "relearn3"} <= set(df.attack)
    assert {"verbmem_f", "knowmem_f", "knowmem_r", "privleak"} <= set(df.metric)
    assert not any(m.endswith("_heldout") for m in df.metric)  # fraction 1.0: nothing held out
    # findings judge the reported Relearn (2 here, 100 in the paper config) and the ablation ran
    from unlearning.report.findings import NO_ABLATION, NOT_TESTED

    md = next(study.rglob("findings.md")).read_text()
    assert "/ relearn2 |" in md and "/ relearn3 |" not in md
    verdicts = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| A")}
    assert NO_ABLATION not in verdicts["A1"] and NOT_TESTED not in verdicts["A1"]


def test_paper_wmdp_bio_runs_every_stage_on_local_stand_ins(tmp_path, snapshots):
    study, cfg = _run(tmp_path, "paper-wmdp", {
        "benchmarks": {"wmdp_bio": {"source": str(FIX), "target": str(snapshots["target"]),
                                    "methods": ["npo", "rmu"], "optimizers": ["adam", "hybrid"],
                                    "data_options": {"forget_corpus": str(FIX / "bio-forget-corpus.jsonl")}}},
        "methods": {"rmu": {"layer": 1, "layers": [0, 1]}},
        "unlearning": {"steps": 3},
        "attacks": {"quantization": ["nf4"], "relearn": {"steps": [2, 3], "report": 3}},
    })
    res = study / cfg["results"]
    df = pd.read_csv(res / "tables" / "wmdp_bio.csv")
    assert {"wmdp_acc", "mmlu_acc"} <= set(df.metric)
    assert {"none", "nf4", "relearn2", "relearn3"} <= set(df.attack)
    assert set(df[df.method != "none"].method) == {"npo", "rmu"}
    manifest = json.loads((res / "data" / "wmdp_bio" / "manifest.json").read_text())
    assert manifest["dataset"] == "wmdp-bio" and manifest["subject"] == "biology"


@pytest.mark.parametrize("name, bench, overrides", [
    ("paper-muse-books", "muse_books", {"source": str(FIX / "MUSE-Books"), "methods": ["graddiff"],
                                        "optimizers": ["adam", "zo"]}),
    ("paper-wmdp-cyber", "wmdp_cyber", {"source": str(FIX), "methods": ["graddiff"], "optimizers": ["adam"]}),
])
def test_the_other_paper_configs_run_on_local_stand_ins(tmp_path, snapshots, name, bench, overrides):
    models = {"target": str(snapshots["target"])}
    if bench.startswith("muse"):
        models["retrain"] = str(snapshots["retrain"])
    study, cfg = _run(tmp_path, name, {
        "benchmarks": {bench: {**overrides, **models}}, "unlearning": {"steps": 3},
        "attacks": {"quantization": ["nf4"], "relearn": {"steps": [2], "report": 2}},
    })
    df = pd.read_csv(study / cfg["results"] / "tables" / f"{bench}.csv")
    assert {"none", "nf4", "relearn2"} <= set(df.attack)
    assert set(df[df.method != "none"].optimizer) == set(overrides["optimizers"])
