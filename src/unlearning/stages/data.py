"""Stages prepare_data and train_tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.io import LAYOUT, load_split


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
        from ..data.hub import fetch

        fetch(bench["kind"], tmp, dataset=bench.get("dataset"),
              local_path=None if source == "hub" else source, name=name, **bench.get("data_options", {}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def train_tokenizer(data_dir: str | Path, kind: str, vocab_size: int, out_dir: str | Path) -> None:
    """Train the BPE tokenizer on every text field of the benchmark."""
    from ..models import train_tokenizer as train

    texts: list[str] = []
    for name in LAYOUT[kind]:
        for rec in load_split(data_dir, kind, name):
            for key in ("text", "prompt", "gt", "question", "answer"):
                if isinstance(rec.get(key), str):
                    texts.append(rec[key])
            texts += [c for c in rec.get("choices", [])]
    train(texts, vocab_size, out_dir)
