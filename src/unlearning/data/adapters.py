"""Real benchmarks by kind: ``fetch(kind, out_dir, **options)`` hands a config entry to its adapter.

An adapter is a module (muse.py, wmdp.py) that reads a benchmark through sources.py and writes the
files of its kind's LAYOUT (io.py) plus ``manifest.json``, exactly the files the synthetic generator
writes. It declares ``DATASETS`` (the config's ``dataset`` names it serves, each mapped to the
argument its fetch function takes), ``OPTIONS`` (the options it takes beyond COMMON_OPTIONS) and
optionally ``ALIASES`` (old option names). A new benchmark kind is one such module and its
``adapter`` in the registry (registry.BENCHMARK_KINDS; docs/extending/adding-a-benchmark.md).

Config entry this expects (``benchmarks.<name>`` in config.yaml, as workflow/schemas validates it;
``prepare_data`` in stages/data.py passes ``source`` as ``local_path`` and spreads ``data_options``)::

    muse_news:
      kind: muse                 # muse | wmdp | tofu (must match the dataset)
      source: hub                # "hub", or a folder holding a local copy (see sources.py)
      dataset: muse-news         # muse-news | muse-books | wmdp-bio | wmdp-cyber | wmdp-chem | tofu
      data_options:              # all optional
        max_records: null        # null | int (every file) | {"raw/forget.jsonl": 100, ...}
        name: muse_news          # the entry's own name, so errors can name its config keys
    wmdp_bio:
      kind: wmdp
      source: /data/hub          # folder holding wmdp/, wmdp-corpora/, mmlu/ (see wmdp.py)
      dataset: wmdp-bio
      data_options:
        forget_corpus: /data/bio-forget-corpus.jsonl  # gated; needed for wmdp-bio (alias
                                 # bio_forget_corpus) and wmdp-chem
        retain_corpus: null      # needed for wmdp-chem (WMDP released no chemistry corpora)
        mmlu_subjects: null      # null (all 57) or a list such as [college_biology, virology]
        questions_source: null   # per-repo overrides of `source`: "hub" or a folder
        corpora_source: null
        mmlu_source: null

As plain keyword options: ``fetch(kind, out_dir, dataset=..., source="hub"|DIR, local_path=DIR,
max_records=..., name=..., **adapter_options)``; ``local_path`` wins over ``source``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, NamedTuple

from ..registry import BENCHMARK_KINDS, resolve
from .io import DataError

COMMON_OPTIONS = frozenset({"dataset", "source", "local_path", "max_records", "name"})


class Adapter(NamedTuple):
    """How to fetch the benchmarks of one kind."""

    datasets: dict[str, str]  # config ``dataset`` -> the fetch function's first argument
    options: frozenset[str]  # options beyond COMMON_OPTIONS
    aliases: dict[str, str]  # old option name -> its name now
    fetch: Callable[..., dict[str, int]]  # (argument, out_dir, source=, max_records=, name=, **options)


def adapter(kind: str) -> Adapter:
    """The adapter of benchmark kind ``kind``: the fetch function its registry entry names and the
    declarations of that function's module."""
    fetch = resolve(BENCHMARK_KINDS[kind].adapter)
    module = sys.modules[fetch.__module__]
    return Adapter(module.DATASETS, module.OPTIONS, getattr(module, "ALIASES", {}), fetch)


# benchmark kind -> its adapter (the kinds that fetch a real benchmark)
KINDS: dict[str, Adapter] = {kind: adapter(kind) for kind, k in BENCHMARK_KINDS.items() if k.adapter}
# every dataset name -> its kind
DATASETS: dict[str, str] = {d: kind for kind, a in KINDS.items() for d in a.datasets}


def fetch(kind: str, out_dir: str | os.PathLike, /, **options: Any) -> dict[str, int]:
    """Fetch the real benchmark named by ``options['dataset']`` into ``out_dir``; return counts.

    Options: dataset (required), source ("hub" or a local folder), local_path (a local folder;
    wins over source), max_records, name (the benchmark's config name, used in error messages),
    and the adapter's own (for WMDP: questions_source, corpora_source, mmlu_source, forget_corpus,
    retain_corpus, mmlu_subjects). ``kind`` must be the dataset's kind; a whole config entry may be
    passed as options (its ``kind`` key is checked, not an error). Unknown options are an error.
    """
    if options.get("kind", kind) != kind:
        raise DataError(f"option kind={options['kind']!r} contradicts kind {kind!r}")
    dataset = options.get("dataset")
    if dataset not in DATASETS:
        raise DataError(f"benchmark dataset {dataset!r} is not one of {sorted(DATASETS)}")
    if DATASETS[dataset] != kind:
        raise DataError(f"dataset {dataset!r} is of kind {DATASETS[dataset]!r}, not {kind!r}")
    adapter = KINDS[kind]
    options = {adapter.aliases.get(k, k): v for k, v in options.items() if k != "kind"}
    allowed = COMMON_OPTIONS | adapter.options
    unknown = set(options) - allowed
    if unknown:
        raise DataError(f"unknown options for {dataset}: {sorted(unknown)}; allowed {sorted(allowed)}")
    common = {"source": options.get("local_path") or options.get("source"),
              "max_records": options.get("max_records"), "name": options.get("name")}
    extra = {k: options[k] for k in adapter.options if options.get(k) is not None}
    return adapter.fetch(adapter.datasets[dataset], out_dir, **common, **extra)
