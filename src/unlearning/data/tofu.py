"""TOFU from the Hugging Face Hub (``locuslab/TOFU``) or a local copy, in the ``tofu`` LAYOUT.

What the hub holds (huggingface.co/datasets/locuslab/TOFU, file tree and README ``configs``): one
JSON file per config at the top of the repository, each config with the single split ``train``
(README: ``- config_name: forget10`` / ``data_files: forget10.json``); the parquet-converter branch
keeps ``<config>/train/*.parquet``. Sizes (200 authors x 20 QA): full 4000; forget01/05/10 40/200/400
with retain99/95/90 3960/3800/3600; forget01/05/10_perturbed 40/200/400, retain_perturbed 400,
real_authors_perturbed 100, world_facts_perturbed 117. Fields: question, answer; the ``*_perturbed``
configs also perturbed_answer (a list of wrong answers) and, except real_authors_perturbed and
world_facts_perturbed (locuslab/tofu's copies have none), paraphrased_answer; on some configs
paraphrased_question, which is not kept. (The repo also holds real_authors, world_facts and
holdoutNN, which this study does not use.)

Mapping to the LAYOUT: ``<config>.jsonl`` for each config the LAYOUT names (the hub's names).
A local copy is a hub snapshot (``hf download --repo-type dataset locuslab/TOFU --local-dir DIR``),
its parent folder holding ``TOFU/``, a copy of the parquet-converter branch, or a ``save_to_disk``
folder (see sources.py); a snapshot without its README is read by file name (``<config>.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .io import LAYOUT, DataError, write_benchmark
from .sources import config_key, load_records, local_or_hub, read_path, resolve_limits, select_fields

REPO = "locuslab/TOFU"
DATASETS = {"tofu": "tofu"}  # the config's ``dataset`` -> fetch_tofu's first argument
OPTIONS: frozenset[str] = frozenset()
SPLIT = "train"


def _root(path: str) -> Path:
    """The folder holding the copy: ``path`` itself, or ``path/TOFU``."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: local copy of {REPO} not found (no such folder)")
    sub = root / "TOFU"
    if not (root / "README.md").is_file() and not (root / "full.json").is_file() and sub.is_dir():
        return sub
    return root


def _load(config: str, fields: Mapping[str, type], root: Path | None, limit: int | None,
          name: str | None) -> list[dict]:
    if root is not None:
        top = root / f"{config}.json"
        if not (root / "README.md").is_file() and top.is_file():  # a snapshot without its README
            return select_fields(read_path(top), fields, f"{top}", limit)
    recs, _ = load_records(REPO, config, (SPLIT,), fields, local=root, limit=limit, key=config_key(name))
    return recs


def fetch_tofu(dataset: str, out_dir: str | os.PathLike, source: str | os.PathLike | None = None,
               max_records: int | Mapping[str, int] | None = None, name: str | None = None) -> dict[str, int]:
    """Write ``locuslab/TOFU`` into ``out_dir`` (every LAYOUT file, one per hub config).

    ``source``: None or "hub" reads the hub through ``datasets``; a path is a local copy.
    ``max_records`` caps records per file (an int, or ``{"forget10.jsonl": n, ...}``; first n, hub
    order). ``name`` is the benchmark's config name, used in error messages. Returns record counts
    per file; writes manifest.json.
    """
    if dataset not in DATASETS.values():
        raise DataError(f"TOFU dataset {dataset!r} is not one of {sorted(DATASETS)}")
    local = local_or_hub(source)
    root = _root(local) if local else None
    caps = resolve_limits("tofu", max_records)
    files = {fname: _load(fname.removesuffix(".jsonl"), fields, root, caps[fname], name)
             for fname, fields in LAYOUT["tofu"].items()}
    manifest: dict[str, Any] = {
        "dataset": "tofu",
        "subject": "fictitious authors",
        "repos": {REPO: str(root) if root else "hub"},
        "splits": {f: f"{f.removesuffix('.jsonl')}/{SPLIT}" for f in files},
        "max_records": {k: v for k, v in caps.items() if v is not None} or None,
    }
    return write_benchmark(out_dir, "tofu", files, manifest)
