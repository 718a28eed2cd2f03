"""Stages prepare_data and train_tokenizer."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from pathlib import Path

from ..commands import KINDS, Stage, json_arg
from ..registry import benchmark_kind
from .common import texts, training_texts


def prepare_data(bench: dict, out_dir: str | Path, name: str | None = None) -> None:
    """Generate the synthetic benchmark or fetch the hub one into ``out_dir`` (atomically)."""
    import shutil

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    source = bench.get("source", "synthetic")
    if source == "synthetic":
        from ..data.synthetic import generate

        generate(bench["kind"], tmp, seed=bench.get("seed", 0), **bench.get("shape", {}))
    else:
        from ..data.adapters import fetch

        fetch(bench["kind"], tmp, dataset=bench.get("dataset"),
              local_path=None if source == "hub" else source, name=name, **bench.get("data_options", {}))
    if benchmark_kind(bench["kind"]).qa_template:  # the question/answer form later stages read with the splits
        from ..data.io import QA_TEMPLATE, write_template

        write_template(tmp, bench.get("qa_template") or QA_TEMPLATE)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def tokenizer_texts(data_dir: str | Path, kind: str) -> list[str]:
    """What the BPE tokenizer is trained on: the retain text, plus for MUSE the forget and holdout
    biographies of the PrivLeak splits, once each.

    Merges follow frequency. A tokenizer trained on the raw forget set (where forget names recur in
    the quiz documents) cuts forget names into fewer, likelier pieces than holdout names, and Min-K%
    then tells forget from holdout text even for the retrain model (AUC 0.16 instead of about 0.5).
    Seeing forget and holdout biographies equally often keeps the two symmetric; leaving both out
    (retain text only) also does, but fragments the forget names and halved the target's KnowMem_f
    (88 -> 51) at the same training budget.
    """
    found = training_texts(data_dir, kind, "retrain")
    for name in benchmark_kind(kind).tokenizer_extra:
        found += texts(data_dir, kind, name)
    return found


def train_tokenizer(data_dir: str | Path, kind: str, vocab_size: int, out_dir: str | Path) -> None:
    """Train the BPE tokenizer on ``tokenizer_texts``."""
    from ..models import train_tokenizer as train

    train(tokenizer_texts(data_dir, kind), vocab_size, out_dir)


def _data_arguments(p: ArgumentParser) -> None:
    p.add_argument("--bench", type=json_arg, required=True, help="the benchmark's config entry (JSON)")
    p.add_argument("--name", default=None, help="the benchmark's name in the config (for messages)")
    p.add_argument("--out", required=True)


def _tokenizer_arguments(p: ArgumentParser) -> None:
    p.add_argument("--data", required=True)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True)


DATA = Stage(_data_arguments, lambda a: prepare_data(a.bench, a.out, name=a.name), needs_torch=False)
TOKENIZER = Stage(_tokenizer_arguments, lambda a: train_tokenizer(a.data, a.kind, a.vocab_size, a.out),
                  needs_torch=True)
