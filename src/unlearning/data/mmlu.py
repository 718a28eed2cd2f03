"""MMLU (``cais/mmlu``) as the utility questions of a WMDP-shaped benchmark: ``questions/utility.jsonl``.

What the hub holds (dataset card YAML of cais/mmlu and of its copies, e.g. hails/mmlu_no_train,
which repeats its ``all`` config): config ``all`` (every subject) plus one config per subject
(``abstract_algebra`` ... ``world_religions``, 57) and ``auxiliary_train``; splits ``test`` (14,042 in
``all``), ``validation`` (1,531), ``dev`` (285); fields ``question`` (string), ``subject`` (string),
``choices`` (sequence of 4 strings), ``answer`` (ClassLabel A-D, stored as int64 0-3).
Files: ``all/test-00000-of-00001.parquet``, ``<subject>/test-00000-of-00001.parquet``.

We read ``all``/``test`` (a few MB) and filter by subject locally, so a local copy needs only
``all/``. With a cap, subjects are taken in turn (round robin) so that every chosen subject is
represented; the kept records stay in hub order.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

from .io import MMLU, DataError, write_jsonl
from .sources import config_key, load_records, local_or_hub

REPO = "cais/mmlu"


def _round_robin(records: list[dict], limit: int) -> list[dict]:
    groups: "OrderedDict[str, list[int]]" = OrderedDict()
    for i, rec in enumerate(records):
        groups.setdefault(rec["subject"], []).append(i)
    keep: list[int] = []
    depth = 0
    while len(keep) < limit:
        added = False
        for idx in groups.values():
            if depth < len(idx) and len(keep) < limit:
                keep.append(idx[depth])
                added = True
        if not added:
            break
        depth += 1
    return [records[i] for i in sorted(keep)]


def load_mmlu(source: str | os.PathLike | None = None, subjects: Sequence[str] | None = None,
              max_records: int | None = None, *, key: str | None = None,
              local_dir: str = "DIR", set_to: str = "DIR", note: str = "") -> list[dict]:
    """MMLU test questions (``question, subject, choices, answer``), optionally filtered and capped.

    ``source``: None/"hub" or a local copy of cais/mmlu (hub snapshot or save_to_disk folder).
    ``subjects``: None for all, or subject names as in the ``subject`` field (``college_biology``).
    """
    local = local_or_hub(source)
    recs, _ = load_records(REPO, "all", "test", MMLU, local=local,
                           key=key or config_key(None, "data_options.mmlu_source"),
                           local_dir=local_dir, set_to=set_to, note=note)
    if subjects:
        if isinstance(subjects, str):
            subjects = [subjects]
        have = {r["subject"] for r in recs}
        unknown = sorted(set(subjects) - have)
        if unknown:
            raise DataError(f"{local or REPO}: unknown MMLU subject(s) {unknown}; "
                            f"known: {sorted(have)}")
        wanted = set(subjects)
        recs = [r for r in recs if r["subject"] in wanted]
    if max_records is not None:
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise DataError(f"MMLU max_records must be a positive integer, not {max_records!r}")
        recs = _round_robin(recs, max_records)
    return recs


def fetch_mmlu(out_path: str | os.PathLike, source: str | os.PathLike | None = None,
               subjects: Sequence[str] | None = None, max_records: int | None = None) -> int:
    """Write MMLU test questions to ``out_path`` (normally ``<bench>/questions/utility.jsonl``)."""
    return write_jsonl(Path(out_path), load_mmlu(source, subjects, max_records))


def subjects_of(records: Iterable[dict]) -> list[str]:
    return sorted({r["subject"] for r in records})
