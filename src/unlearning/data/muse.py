"""MUSE-News / MUSE-Books from the Hugging Face Hub (or a local copy), in the ``muse`` LAYOUT.

What the hub holds (checked against the dataset cards' YAML and file trees,
huggingface.co/datasets/muse-bench/MUSE-News and .../MUSE-Books, README.md ``dataset_info`` /
``configs``, and the MUSE repo's data README, github.com/jaechan-repo/muse_bench data/bbc/readme.md):

| config   | split (News main, with counts)                                    | fields          |
|----------|-------------------------------------------------------------------|-----------------|
| raw      | forget 889, retain1 1777, retain2 1778, holdout 3043              | text            |
| verbmem  | forget 100                                                        | prompt, gt      |
| knowmem  | forget_qa 100, retain_qa 100, forget_qa_icl 10, retain_qa_icl 10   | question, answer|
| privleak | forget 100, retain 100, holdout 100                               | text            |

(The repos also have ``scal``, ``sust`` and ``train`` configs, which this study does not use.)
Files: ``<config>/<split>-00000-of-00001.parquet``; README ``configs`` paths ``<config>/<split>-*``.

Naming across revisions, mapped here so that old and new copies both work:
- knowmem's retain splits were first ``retain2_qa`` / ``retain2_qa_icl`` (News README at 3e78e90,
  Books README at 864b50b / 1a93943) and were renamed ``retain_qa`` / ``retain_qa_icl`` (News main,
  506bd5b; Books knowmem tree at fe16479 holds both names). We read ``retain_qa`` and fall back to
  ``retain2_qa``.
- privleak's retain split was ``retain2`` and is now ``retain`` (both parquet files sit side by side
  in News main's privleak/ folder; the README points at ``retain``). We read ``retain``, else
  ``retain2``.
- verbmem once carried an extra ``rougeL_target`` column; only ``prompt`` and ``gt`` are kept.
- Some revisions keep stray ``*.json`` files (``forget.json``, ``forget-qa.json``) next to the parquet
  ones; the README's ``configs`` (or the ``<split>-*`` pattern) never match them.

MUSE-Books: the same configs and split names as News, raw included (forget, retain1, retain2,
holdout), so the mapping is the same. Its raw splits are whole books, not articles: forget 4,
holdout 3, retain1 12, retain2 13 records (README ``dataset_info``), each up to ~1 MB of text;
chunking for training is downstream's business. verbmem forget 100, knowmem 100/100/10/10,
privleak 100 each.

Mapping to the LAYOUT (names are the hub's): ``raw/{forget,retain1,retain2,holdout}.jsonl``,
``verbmem/forget.jsonl``, ``knowmem/{forget_qa,retain_qa,forget_qa_icl,retain_qa_icl}.jsonl``,
``privleak/{forget,retain,holdout}.jsonl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .io import LAYOUT, DataError, write_benchmark
from .sources import config_key, load_records, local_or_hub, resolve_limits

REPOS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
# The config's ``dataset`` -> the corpus argument of ``fetch_muse`` (adapters.py dispatches on it).
DATASETS = {"muse-news": "news", "muse-books": "books"}
OPTIONS: frozenset[str] = frozenset()  # no options beyond the common ones (adapters.COMMON_OPTIONS)
SUBJECTS = {"news": "news", "books": "books"}

# LAYOUT file -> (hub config, split names to try in order)
SPLITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "raw/forget.jsonl": ("raw", ("forget",)),
    "raw/retain1.jsonl": ("raw", ("retain1",)),
    "raw/retain2.jsonl": ("raw", ("retain2",)),
    "raw/holdout.jsonl": ("raw", ("holdout",)),
    "verbmem/forget.jsonl": ("verbmem", ("forget",)),
    "knowmem/forget_qa.jsonl": ("knowmem", ("forget_qa",)),
    "knowmem/retain_qa.jsonl": ("knowmem", ("retain_qa", "retain2_qa")),
    "knowmem/forget_qa_icl.jsonl": ("knowmem", ("forget_qa_icl",)),
    "knowmem/retain_qa_icl.jsonl": ("knowmem", ("retain_qa_icl", "retain2_qa_icl")),
    "privleak/forget.jsonl": ("privleak", ("forget",)),
    "privleak/retain.jsonl": ("privleak", ("retain", "retain2")),
    "privleak/holdout.jsonl": ("privleak", ("holdout",)),
}
assert set(SPLITS) == set(LAYOUT["muse"])


def _resolve_local(path: str, corpus: str) -> Path:
    """The folder holding the repo copy: ``path`` itself, or ``path/MUSE-News`` (``MUSE-Books``)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: local copy of {REPOS[corpus]} not found (no such folder)")
    sub = root / REPOS[corpus].split("/")[1]
    looks_like_copy = (root / "README.md").is_file() or (root / "raw").exists() or \
        (root / "dataset_dict.json").is_file()
    if not looks_like_copy and sub.is_dir():
        return sub
    return root


def fetch_muse(corpus: str, out_dir: str | os.PathLike, source: str | os.PathLike | None = None,
               max_records: int | Mapping[str, int] | None = None, name: str | None = None
               ) -> dict[str, int]:
    """Write MUSE-News (``corpus='news'``) or MUSE-Books (``'books'``) into ``out_dir``.

    ``source``: None or "hub" reads ``muse-bench/MUSE-{News,Books}`` through ``datasets``; a path is
    a local copy (a hub snapshot, or its parent folder holding ``MUSE-News/``; or a save_to_disk
    folder with one DatasetDict per config). ``max_records`` caps records per file: an int for all,
    or ``{"raw/forget.jsonl": n, ...}`` (first n, hub order). ``name`` is the benchmark's config
    name, used in error messages. Returns record counts per file; writes manifest.json.
    """
    if corpus not in REPOS:
        raise DataError(f"MUSE corpus {corpus!r} is not one of {sorted(REPOS)}")
    repo = REPOS[corpus]
    local = local_or_hub(source)
    root = _resolve_local(local, corpus) if local else None
    caps = resolve_limits("muse", max_records)
    files: dict[str, list[dict]] = {}
    used: dict[str, str] = {}
    for fname, (config, splits) in SPLITS.items():
        recs, split = load_records(repo, config, splits, LAYOUT["muse"][fname], local=root,
                                   limit=caps[fname], key=config_key(name))
        files[fname] = recs
        used[fname] = f"{config}/{split}"
    manifest: dict[str, Any] = {
        "dataset": f"muse-{corpus}",
        "subject": SUBJECTS[corpus],
        "repos": {repo: str(root) if root else "hub"},
        "splits": used,
        "max_records": {k: v for k, v in caps.items() if v is not None} or None,
    }
    return write_benchmark(out_dir, "muse", files, manifest)
