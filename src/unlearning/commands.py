"""The stages of the ``unlearning`` command: each stage's name, one-line help and where it is declared.

A stage is declared in the module that runs it, as a ``Stage``: the arguments it takes, what it runs
and whether it needs torch. This table names that declaration without importing it, so that
``unlearning --help`` imports nothing heavy and a stage imports only its own module (and torch only
when it needs it). A new stage is one declaration in its module plus one line here.

This module imports no stage: the modules that declare stages import it (for ``Stage``, ``KINDS``,
``json_arg``), and ``declaration`` looks a stage up by its module's name.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from .registry import BENCHMARK_KINDS

KINDS = list(BENCHMARK_KINDS)  # benchmark kinds (the schema's benchmarks.<name>.kind)


@dataclass(frozen=True)
class Stage:
    """One stage of the command line, declared next to the code it runs.

    ``add_arguments(parser)`` adds its options to its subcommand's parser; ``run(args)`` runs it with
    the parsed options; ``needs_torch``: the command sets torch's CPU threads (``--threads``) and checks
    that a GPU job finds CUDA (``models.device``) before it runs, and reports a non-finite
    training loss in one line.
    """

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    needs_torch: bool


# name -> ("module:attribute" of its Stage, help); in the order `unlearning --help` lists them
STAGES: dict[str, tuple[str, str]] = {
    "data": ("unlearning.stages.data:DATA", "generate or fetch a benchmark's files"),
    "tokenizer": ("unlearning.stages.data:TOKENIZER", "train the BPE tokenizer on a benchmark"),
    "model": ("unlearning.stages.models:STAGE",
              "train (or copy from a hub id/folder) the target or retrain model"),
    "unlearn": ("unlearning.stages.unlearn:STAGE", "unlearn the forget set from the target"),
    "relearn": ("unlearning.stages.relearn:STAGE", "relearning attack: checkpoints after each step count"),
    "evaluate": ("unlearning.stages.evaluate:STAGE", "score a model under each attack"),
    "calibrate": ("unlearning.stages.calibrate:STAGE",
                  "choose a learning-rate multiplier from the calibration's grid points"),
    "calibration-report": ("unlearning.report.calibration:STAGE",
                           "the calibration table (CSV) and tuning-curve figures from the choices"),
    "grade-distance": ("unlearning.stages.distance:STAGE",
                       "how far apart the unlearned weights of optimizers of different grades are (CSV)"),
    "aggregate": ("unlearning.report.tidy:STAGE", "tidy table from evaluation JSON files"),
    "tofu-table": ("unlearning.report.tofu_table:STAGE",
                   "the paper's TOFU table from a TOFU benchmark's tidy table"),
    "figures": ("unlearning.report.figures:STAGE", "figures from a tidy table"),
    "summary": ("unlearning.report.tables:SUMMARY", "markdown summary of the tables"),
    "provenance": ("unlearning.report.provenance:STAGE",
                   "the distinct environments the evaluations ran in (CSV)"),
    "report-tables": ("unlearning.report.tables:REPORT_TABLES",
                      "main table (CSV, markdown), quantization and relearning tables"),
    "lmc": ("unlearning.lmc:STAGE", "loss along linear paths from the reference solution to each other one"),
    "lmc-figure": ("unlearning.report.lmc_plot:STAGE", "figure and barrier table from the LMC paths of a benchmark"),
    "ablation": ("unlearning.report.ablation:STAGE", "hybrid ablation table and figure (FO:ZO ratio, interval N)"),
    "findings": ("unlearning.report.findings_report:STAGE",
                 "the paper's findings judged by paired tests over seeds (markdown)"),
    # measurements a user runs by hand (src/unlearning/bench/); no rule calls them
    "study-time": ("unlearning.bench.study:STAGE",
                   "wall time, job time per rule and peak job memory of a whole study (JSON)"),
    "compare-runs": ("unlearning.bench.compare_runs:STAGE",
                     "do two runs of one study agree: verdicts, calibration choices, metrics (JSON)"),
    "paper-scale": ("unlearning.bench.paper_scale:STAGE",
                    "the paper-scale cost model (memory, GPU-hours) and the measurements that check it"),
    "onset-scan": ("unlearning.bench.onset:STAGE",
                   "where the quantization attack appears: model width x update size in bins (JSON, figure)"),
}


def declaration(name: str) -> Stage:
    """The ``Stage`` declared for ``name`` (importing its module)."""
    module, attribute = STAGES[name][0].split(":")
    stage = getattr(import_module(module), attribute)
    if not isinstance(stage, Stage):
        raise TypeError(f"{module}.{attribute} (stage {name!r}) is not a Stage")
    return stage


def json_arg(text: str) -> Any:
    """An argparse ``type``: a JSON value (a config entry), or a one-line error quoting the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}): {text[:80]}") from None
