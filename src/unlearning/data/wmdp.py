"""WMDP (questions, corpora) plus MMLU utility questions, in the ``wmdp`` LAYOUT.

What the hub holds (dataset cards' YAML and file trees on huggingface.co, checked):
- ``cais/wmdp``: configs ``wmdp-bio`` (1,273), ``wmdp-cyber`` (1,987), ``wmdp-chem`` (408), one split
  ``test``; fields ``question`` (string), ``choices`` (sequence of 4 strings), ``answer`` (int64 0-3).
  Files ``wmdp-{bio,cyber,chem}/test-00000-of-00001.parquet``. (Early revisions had 1,520 / 2,225 /
  412 questions and a train split; the 2024-03-08 cyber fix is the current data.)
- ``cais/wmdp-corpora``: configs ``bio-retain-corpus`` (60,887, 4 parquet shards, ~0.9 GB),
  ``cyber-forget-corpus`` (1,000), ``cyber-retain-corpus`` (4,473), one split ``train``, one field
  ``text``. Files ``<config>/train-0000k-of-0000n.parquet``.
- The bio *forget* corpus is not in cais/wmdp-corpora: "The bio forget corpus must be requested
  separately" (card, commit 246f7c9); after approval it comes as the gated repo
  ``cais/wmdp-bio-forget-corpus`` or as ``bio-forget-corpus.jsonl`` (the file name the WMDP code
  reads, one JSON object per line with a ``text`` field, alongside title/abstract/doi). This adapter
  never fetches it: give its local path (``forget_corpus``) or put it under ``source``.
- WMDP released no chemistry corpora, so ``wmdp-chem`` needs both ``forget_corpus`` and
  ``retain_corpus`` (any ``text`` corpus you choose).
- ``cais/mmlu`` ``all``/``test`` for ``questions/utility.jsonl`` (see mmlu.py).

Mapping: ``questions/forget.jsonl`` <- cais/wmdp ``wmdp-<domain>``/test; ``corpora/forget.jsonl``
<- ``cyber-forget-corpus``/train (cyber) or the local bio forget corpus (bio);
``corpora/retain.jsonl`` <- ``<domain>-retain-corpus``/train; ``questions/utility.jsonl`` <- MMLU.
Only ``text`` is kept from the corpora. The manifest's ``subject`` is the lm-eval description word
("biology", "cybersecurity", "chemistry").

Local copies: ``source`` is a folder holding one subfolder per repo, named as the repo:
``wmdp/`` (cais/wmdp), ``wmdp-corpora/`` (cais/wmdp-corpora), ``mmlu/`` (cais/mmlu) and, for bio,
``wmdp-bio-forget-corpus/`` or ``bio-forget-corpus.jsonl``. Each subfolder is a hub snapshot
(``hf download --repo-type dataset cais/wmdp --local-dir DIR/wmdp``) or a save_to_disk folder.
``questions_source``, ``corpora_source`` and ``mmlu_source`` override ``source`` per repo ("hub"
or a folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .io import LAYOUT, MC, TEXT, DataError, write_benchmark
from .mmlu import REPO as MMLU_REPO
from .mmlu import load_mmlu
from .sources import config_key, load_records, local_or_hub, read_path, resolve_limits, select_fields

QUESTIONS_REPO = "cais/wmdp"
CORPORA_REPO = "cais/wmdp-corpora"
BIO_FORGET_REPO = "cais/wmdp-bio-forget-corpus"
DOMAINS = ("bio", "cyber", "chem")
# The config's ``dataset`` -> the domain argument of ``fetch_wmdp`` (adapters.py dispatches on it),
# the options ``fetch_wmdp`` takes beyond the common ones, and their old names.
DATASETS = {f"wmdp-{d}": d for d in DOMAINS}
OPTIONS = frozenset({"questions_source", "corpora_source", "mmlu_source", "forget_corpus", "retain_corpus",
                     "mmlu_subjects"})
ALIASES = {"bio_forget_corpus": "forget_corpus"}
SUBJECTS = {"bio": "biology", "cyber": "cybersecurity", "chem": "chemistry"}
# domain -> hub config of cais/wmdp-corpora (None: not on the hub)
FORGET_CONFIG = {"bio": None, "cyber": "cyber-forget-corpus", "chem": None}
RETAIN_CONFIG = {"bio": "bio-retain-corpus", "cyber": "cyber-retain-corpus", "chem": None}
_SUBDIR = {QUESTIONS_REPO: "wmdp", CORPORA_REPO: "wmdp-corpora", MMLU_REPO: "mmlu"}
_OVERRIDE = {QUESTIONS_REPO: "questions_source", CORPORA_REPO: "corpora_source",
             MMLU_REPO: "mmlu_source"}


def _repo_source(repo: str, override: Any, source: str | None, name: str | None) -> str | None:
    """Where to read ``repo`` from: a folder, or None for the hub."""
    if override is not None:
        return local_or_hub(override)
    if source is None:
        return None
    path = Path(source) / _SUBDIR[repo]
    if not path.is_dir():
        raise DataError(
            f"{path}: no local copy of {repo}; a WMDP `source` folder holds wmdp/, wmdp-corpora/ "
            f"and mmlu/ (copies of {QUESTIONS_REPO}, {CORPORA_REPO}, {MMLU_REPO}); download it with "
            f"`hf download --repo-type dataset {repo} --local-dir {path}`, or set "
            f"{config_key(name, 'data_options.' + _OVERRIDE[repo])}: hub"
        )
    return str(path)


def _bio_forget_in(source: str | None) -> str | None:
    if source is None:
        return None
    for cand in (Path(source) / "wmdp-bio-forget-corpus", Path(source) / "bio-forget-corpus.jsonl",
                 Path(source) / "bio-forget-corpus"):
        if cand.exists():
            return str(cand)
    return None


def _local_corpus(path: str, limit: int | None, what: str) -> list[dict]:
    where = f"{path} ({what})"
    try:
        recs = read_path(path)
    except DataError as err:
        raise DataError(f"{what}: {err}") from None
    return select_fields(recs, TEXT, where, limit)


def _corpus(local_file, hub_config: str | None, c_src, limit, what: str, hub_kwargs: dict
            ) -> tuple[list[dict], object]:
    """One corpus split: a local file when given, else ``hub_config`` of cais/wmdp-corpora (or its
    local copy ``c_src``). Returns the records and where they came from (for the manifest)."""
    if local_file is not None:
        return _local_corpus(local_file, limit, what), local_file
    records, split = load_records(CORPORA_REPO, hub_config, "train", TEXT, local=c_src, limit=limit,
                                  **hub_kwargs)
    return records, f"{c_src or CORPORA_REPO} {hub_config}/{split}"


def fetch_wmdp(domain: str, out_dir: str | os.PathLike, source: str | os.PathLike | None = None,
               max_records: int | Mapping[str, int] | None = None, name: str | None = None, *,
               questions_source: str | os.PathLike | None = None,
               corpora_source: str | os.PathLike | None = None,
               mmlu_source: str | os.PathLike | None = None,
               forget_corpus: str | os.PathLike | None = None,
               retain_corpus: str | os.PathLike | None = None,
               mmlu_subjects: Sequence[str] | None = None) -> dict[str, int]:
    """Write WMDP-``domain`` (bio, cyber, chem) with MMLU utility questions into ``out_dir``.

    ``source``: None/"hub", or a folder with ``wmdp/``, ``wmdp-corpora/``, ``mmlu/`` copies (see the
    module docstring); ``questions_source`` / ``corpora_source`` / ``mmlu_source`` override it per
    repo. ``forget_corpus`` / ``retain_corpus``: a local file (.jsonl/.json/.parquet) or folder with
    a ``text`` field, replacing the hub corpus; ``forget_corpus`` is required for bio (gated) unless
    ``source`` holds it, and both are required for chem. ``max_records``: int or
    ``{"corpora/retain.jsonl": n, "questions/utility.jsonl": m, ...}``; the MMLU cap is spread over
    subjects. ``mmlu_subjects``: restrict the utility questions. ``name``: the benchmark's config
    name, for error messages. Returns counts per file; writes manifest.json.
    """
    if domain not in DOMAINS:
        raise DataError(f"WMDP domain {domain!r} is not one of {list(DOMAINS)}")
    src = local_or_hub(source)
    if src is not None and not Path(src).is_dir():
        raise DataError(f"{src}: WMDP source folder not found")
    caps = resolve_limits("wmdp", max_records)
    key = config_key(name)
    hint = {"key": key, "set_to": "DIR"}
    bench = f"wmdp-{domain}"

    def hub_args(repo: str) -> dict:
        others = ", ".join(f"{r} into DIR/{d}" for r, d in _SUBDIR.items() if r != repo)
        return {**hint, "local_dir": f"DIR/{_SUBDIR[repo]}", "note": f" (likewise {others})"}

    q_src = _repo_source(QUESTIONS_REPO, questions_source, src, name)
    c_src = None
    if (forget_corpus is None and FORGET_CONFIG[domain]) or \
            (retain_corpus is None and RETAIN_CONFIG[domain]):
        c_src = _repo_source(CORPORA_REPO, corpora_source, src, name)
    m_src = _repo_source(MMLU_REPO, mmlu_source, src, name)

    files: dict[str, list[dict]] = {}
    origin: dict[str, str] = {}

    # Forget corpus
    fc = local_or_hub(forget_corpus) if forget_corpus is not None else None
    if fc is None and domain == "bio":
        fc = _bio_forget_in(src)
    if fc is not None or FORGET_CONFIG[domain] is not None:
        out = "corpora/forget.jsonl"
        files[out], origin[out] = _corpus(fc, FORGET_CONFIG[domain], c_src, caps[out],
                                          f"{bench} forget corpus", hub_args(CORPORA_REPO))
    elif domain == "bio":
        raise DataError(
            f"wmdp-bio needs the WMDP bio forget corpus, which is gated and not in {CORPORA_REPO}: "
            f"request access (https://huggingface.co/datasets/{BIO_FORGET_REPO}), download it "
            f"(`hf download --repo-type dataset {BIO_FORGET_REPO} --local-dir DIR`, or the "
            f"bio-forget-corpus.jsonl the WMDP authors send) and set "
            f"{config_key(name, 'data_options.forget_corpus')}: PATH (records with a 'text' field)"
        )
    else:
        raise DataError(
            f"wmdp-chem has no forget or retain corpus on the hub (WMDP released none for "
            f"chemistry): set {config_key(name, 'data_options.forget_corpus')} and "
            f"{config_key(name, 'data_options.retain_corpus')} to local files with a 'text' field"
        )

    # Retain corpus
    rc = local_or_hub(retain_corpus) if retain_corpus is not None else None
    if rc is not None or RETAIN_CONFIG[domain] is not None:
        out = "corpora/retain.jsonl"
        files[out], origin[out] = _corpus(rc, RETAIN_CONFIG[domain], c_src, caps[out],
                                          f"{bench} retain corpus", hub_args(CORPORA_REPO))
    else:
        raise DataError(
            f"{bench} has no retain corpus on the hub: set {config_key(name, 'data_options.retain_corpus')} "
            f"to a local file with a 'text' field"
        )

    # Questions
    files["questions/forget.jsonl"], split = load_records(
        QUESTIONS_REPO, bench, "test", MC, local=q_src, limit=caps["questions/forget.jsonl"],
        **hub_args(QUESTIONS_REPO))
    origin["questions/forget.jsonl"] = f"{q_src or QUESTIONS_REPO} {bench}/{split}"
    files["questions/utility.jsonl"] = load_mmlu(
        m_src, mmlu_subjects, caps["questions/utility.jsonl"], **hub_args(MMLU_REPO))
    origin["questions/utility.jsonl"] = f"{m_src or MMLU_REPO} all/test"

    manifest: dict[str, Any] = {
        "dataset": bench,
        "subject": SUBJECTS[domain],
        "splits": origin,
        "mmlu_subjects": list(mmlu_subjects) if mmlu_subjects else None,
        "max_records": {k: v for k, v in caps.items() if v is not None} or None,
    }
    assert set(files) == set(LAYOUT["wmdp"])
    return write_benchmark(out_dir, "wmdp", files, manifest)
