"""Command line: ``unlearning STAGE [options]`` (or ``python -m unlearning``), one stage per Snakemake rule.

Structured arguments (config entries) are passed as JSON strings; the rule takes them from the
validated config, so each job sees only its own entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable

KINDS = ["muse", "wmdp", "tofu"]  # benchmark kinds (the schema's benchmarks.<name>.kind)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}): {text[:80]}") from None


def _threads(n: int) -> None:
    # One BLAS/OpenMP thread per job unless the rule grants more: two 2-thread jobs on two cores
    # run four times slower than two 1-thread jobs.
    import torch

    torch.set_num_threads(max(1, n))


def _cmd_data(a: argparse.Namespace) -> None:
    from .stages import prepare_data

    prepare_data(a.bench, a.out, name=a.name)


def _cmd_tokenizer(a: argparse.Namespace) -> None:
    from .stages import train_tokenizer

    train_tokenizer(a.data, a.kind, a.vocab_size, a.out)


def _cmd_model(a: argparse.Namespace) -> None:
    from .stages import train_model

    train_model(a.data, a.kind, a.role, a.tokenizer, a.arch, a.training, a.source, a.out)


def _cmd_unlearn(a: argparse.Namespace) -> None:
    from .stages import unlearn

    unlearn(a.target, a.data, a.kind, a.method, a.optimizer, a.run, a.out)


def _cmd_relearn(a: argparse.Namespace) -> None:
    from .stages import relearn

    relearn(a.model, a.data, a.kind, a.params, a.seed, a.max_len, a.out)


def _cmd_grade_distance(a: argparse.Namespace) -> None:
    from .stages.distance import grade_distance

    grade_distance(a.runs, a.out, device=a.device)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from .stages import evaluate

    evaluate(a.model, a.data, a.kind, a.attacks, a.meta, a.params, a.subject, a.relearn_fraction,
             a.out, relearn_root=a.relearned, reference_dir=a.reference, only=a.metrics)


def _cmd_calibrate(a: argparse.Namespace) -> None:
    from .stages.calibrate import calibrate

    calibrate(a.points, a.retrain, a.target, a.kind, a.params, a.meta, a.out)


def _cmd_calibration_report(a: argparse.Namespace) -> None:
    from .report.calibration import report

    report(a.choices, a.csv, a.figures)


def _cmd_aggregate(a: argparse.Namespace) -> None:
    from .report.tidy import aggregate

    aggregate(a.inputs, a.auc_retrain, a.out)


def _cmd_figures(a: argparse.Namespace) -> None:
    from .report.figures import figures

    figures(a.table, a.out, a.only or None)


def _cmd_summary(a: argparse.Namespace) -> None:
    from .report.tables import summary

    summary(a.tables, a.out, provenance=a.provenance)


def _cmd_provenance(a: argparse.Namespace) -> None:
    from .report.provenance import write

    write(a.inputs, a.out)


def _cmd_report_tables(a: argparse.Namespace) -> None:
    from .report.tables import report_tables

    report_tables(a.table, a.main_csv, a.main_md, a.quantization, a.relearning, calibration=a.calibration)


def _cmd_tofu_table(a: argparse.Namespace) -> None:
    from .report.tofu_table import write

    write(a.table, a.csv, a.md)


def _cmd_lmc(a: argparse.Namespace) -> None:
    from .lmc import lmc

    models = dict(m.split("=", 1) for m in a.models)
    lmc(models, a.reference, a.data, a.kind, a.meta, a.points, a.max_texts, a.max_len, a.batch_size, a.out)


def _cmd_lmc_figure(a: argparse.Namespace) -> None:
    from .report.lmc_plot import lmc_figure

    lmc_figure(a.inputs, a.png, a.svg, a.barriers)


def _cmd_ablation(a: argparse.Namespace) -> None:
    from .report.ablation import ablation

    ablation(a.inputs, a.optimizers, a.table, a.png, a.svg, a.auc_retrain)


def _cmd_findings(a: argparse.Namespace) -> None:
    from .report.findings_report import write_findings

    write_findings(a.tables, a.optimizers, a.methods, a.reference, a.out, barriers=a.barriers or (),
                   ablation=a.ablation, figures=a.figures or (), figure_names=a.figure_names or (),
                   provenance=a.provenance, grade_distance=a.grade_distance, relearn_report=a.relearn_report,
                   calibration=a.calibration, stats_cfg=a.stats, verdicts_csv=a.verdicts_csv,
                   comparisons_csv=a.comparisons_csv)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (one subcommand per stage)."""
    p = argparse.ArgumentParser(prog="unlearning", description=__doc__)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="stage", required=True)

    def stage(name: str, fn: Callable, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(fn=fn)
        return sp

    s = stage("data", _cmd_data, "generate or fetch a benchmark's files")
    s.add_argument("--bench", type=_json, required=True, help="the benchmark's config entry (JSON)")
    s.add_argument("--name", default=None, help="the benchmark's name in the config (for messages)")
    s.add_argument("--out", required=True)

    s = stage("tokenizer", _cmd_tokenizer, "train the BPE tokenizer on a benchmark")
    s.add_argument("--data", required=True)
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--vocab-size", type=int, required=True)
    s.add_argument("--out", required=True)

    s = stage("model", _cmd_model, "train (or copy from a hub id/folder) the target or retrain model")
    s.add_argument("--data", required=True)
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--role", required=True, choices=["target", "retrain"])
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--arch", type=_json, required=True)
    s.add_argument("--training", type=_json, required=True)
    s.add_argument("--source", default=None, help="hub id or local folder to copy instead of training")
    s.add_argument("--out", required=True)

    s = stage("unlearn", _cmd_unlearn, "unlearn the forget set from the target")
    s.add_argument("--target", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--method", type=_json, required=True)
    s.add_argument("--optimizer", type=_json, required=True)
    s.add_argument("--run", type=_json, required=True, help="steps, batch_size, max_len, seed")
    s.add_argument("--out", required=True)

    s = stage("relearn", _cmd_relearn, "relearning attack: checkpoints after each step count")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--params", type=_json, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--max-len", type=int, required=True)
    s.add_argument("--out", required=True, help="folder receiving relearn{steps}/ checkpoints")

    s = stage("evaluate", _cmd_evaluate, "score a model under each attack")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--attacks", nargs="+", required=True)
    s.add_argument("--meta", type=_json, required=True, help="benchmark/method/optimizer/grade/seed")
    s.add_argument("--params", type=_json, required=True, help="the evaluation config entry")
    s.add_argument("--subject", default="biology")
    s.add_argument("--relearn-fraction", type=float, required=True)
    s.add_argument("--relearned", default=None, help="folder holding relearn{steps}/ checkpoints")
    s.add_argument("--reference", default=None, help="target model, for qcode_change")
    s.add_argument("--metrics", nargs="+", default=None, help="compute only these metrics (default all)")
    s.add_argument("--out", required=True, help="folder receiving {attack}.json")

    s = stage("calibrate", _cmd_calibrate, "choose a learning-rate multiplier from the calibration's grid points")
    s.add_argument("--points", nargs="+", required=True,
                   help="SCALE=JSON: each grid point's unattacked evaluation (one per calibration seed)")
    s.add_argument("--retrain", nargs="*", default=[], help="the retrain model's unattacked evaluations")
    s.add_argument("--target", nargs="*", default=[], help="the target model's unattacked evaluations")
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--params", type=_json, required=True, help="the calibration config entry")
    s.add_argument("--meta", type=_json, required=True, help="benchmark/method/optimizer/grade")
    s.add_argument("--out", required=True, help="choice JSON")

    s = stage("calibration-report", _cmd_calibration_report,
              "the calibration table (CSV) and tuning-curve figures from the choices")
    s.add_argument("--choices", nargs="+", required=True)
    s.add_argument("--csv", default=None, help="the calibration table (CSV)")
    s.add_argument("--figures", nargs="*", default=[], help="BENCH=PNG: one figure per benchmark (SVG beside it)")

    s = stage("grade-distance", _cmd_grade_distance,
              "how far apart the unlearned weights of optimizers of different grades are (CSV)")
    s.add_argument("--runs", type=_json, required=True,
                   help="JSON list of {benchmark, method, optimizer, grade, seed, path, target}")
    s.add_argument("--out", required=True, help="CSV")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the sums run (cpu: bit-identical to one thread; cuda: equal to rounding)")

    s = stage("aggregate", _cmd_aggregate, "tidy table from evaluation JSON files")
    s.add_argument("--inputs", nargs="+", required=True)
    s.add_argument("--auc-retrain", type=float, default=None)
    s.add_argument("--out", required=True)

    s = stage("tofu-table", _cmd_tofu_table, "the paper's TOFU table from a TOFU benchmark's tidy table")
    s.add_argument("--table", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)

    s = stage("figures", _cmd_figures, "figures from a tidy table")
    s.add_argument("--table", required=True)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--only", nargs="+", choices=["quantization", "relearning", "tradeoff"], default=None,
                   help="draw only these figures (default: all three)")

    s = stage("summary", _cmd_summary, "markdown summary of the tables")
    s.add_argument("--tables", nargs="+", required=True)
    s.add_argument("--provenance", default=None, help="the study's provenance table (CSV)")
    s.add_argument("--out", required=True)

    s = stage("provenance", _cmd_provenance, "the distinct environments the evaluations ran in (CSV)")
    s.add_argument("--inputs", nargs="+", required=True, help="evaluation JSON files")
    s.add_argument("--out", required=True)

    s = stage("report-tables", _cmd_report_tables, "main table (CSV, markdown), quantization and relearning tables")
    s.add_argument("--table", required=True, help="tidy table of one benchmark")
    s.add_argument("--main-csv", required=True)
    s.add_argument("--main-md", required=True)
    s.add_argument("--quantization", required=True)
    s.add_argument("--relearning", required=True)
    s.add_argument("--calibration", default=None, help="the calibration table (CSV), if calibrated")

    s = stage("lmc", _cmd_lmc, "loss along linear paths from the reference solution to each other one")
    s.add_argument("--models", nargs="+", required=True, help="optimizer=folder of each unlearned model")
    s.add_argument("--reference", required=True, help="optimizer whose solution anchors the paths")
    s.add_argument("--data", required=True)
    s.add_argument("--kind", required=True, choices=KINDS)
    s.add_argument("--meta", type=_json, required=True, help="benchmark, method, seed, grades")
    s.add_argument("--points", type=int, default=11)
    s.add_argument("--max-texts", type=int, default=64, help="texts per split (0 = all)")
    s.add_argument("--max-len", type=int, required=True)
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--out", required=True, help="CSV")

    s = stage("lmc-figure", _cmd_lmc_figure, "figure and barrier table from the LMC paths of a benchmark")
    s.add_argument("--inputs", nargs="*", default=[])
    s.add_argument("--png", required=True)
    s.add_argument("--svg", default=None)
    s.add_argument("--barriers", required=True)

    s = stage("ablation", _cmd_ablation, "hybrid ablation table and figure (FO:ZO ratio, interval N)")
    s.add_argument("--inputs", nargs="+", required=True)
    s.add_argument("--optimizers", type=_json, required=True, help="optimizer entries (JSON)")
    s.add_argument("--auc-retrain", type=float, default=None)
    s.add_argument("--table", required=True)
    s.add_argument("--png", required=True)
    s.add_argument("--svg", default=None)

    s = stage("findings", _cmd_findings, "the paper's findings judged by paired tests over seeds (markdown)")
    s.add_argument("--tables", nargs="+", required=True)
    s.add_argument("--optimizers", type=_json, required=True)
    s.add_argument("--methods", type=_json, required=True)
    s.add_argument("--reference", required=True)
    s.add_argument("--barriers", nargs="*", default=[])
    s.add_argument("--ablation", default=None)
    s.add_argument("--provenance", default=None, help="the study's provenance table (CSV)")
    s.add_argument("--grade-distance", default=None, help="the study's grade-distance table (CSV)")
    s.add_argument("--figures", nargs="*", default=[], help="PNG files copied next to the markdown")
    s.add_argument("--figure-names", nargs="*", default=[], help="their names there")
    s.add_argument("--relearn-report", type=int, default=None,
                   help="relearning step count the findings judge (default the longest)")
    s.add_argument("--calibration", default=None, help="the calibration table (CSV), if calibrated")
    s.add_argument("--stats", type=_json, default=None, help="config `report.stats` (JSON): alpha, margins, shares")
    s.add_argument("--verdicts-csv", default=None, help="write one row per finding here (CSV)")
    s.add_argument("--comparisons-csv", default=None, help="write every comparison here (CSV)")
    s.add_argument("--out", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code. Known failures print one line, not a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data.io import DataError
    from .train import NonFiniteLoss

    uses_torch = args.stage not in ("aggregate", "figures", "summary", "data", "report-tables", "lmc-figure",
                                    "ablation", "findings", "provenance", "tofu-table")
    # Reporting stages and data preparation never touch torch: don't pay for importing it.
    if uses_torch:
        _threads(args.threads)
    known: tuple[type[Exception], ...] = (DataError, NonFiniteLoss, FileNotFoundError, ValueError)
    try:
        if uses_torch:  # a GPU job (models.gpu_job) that finds no CUDA stops here, before any work
            from .models import NoCuda, check_device

            known += (NoCuda,)
            check_device()
        args.fn(args)
    except known as err:
        print(f"error [{args.stage}]: {err}", file=sys.stderr)
        return 1
    return 0


def run(argv: list[str] | None = None) -> int:
    """The ``unlearning`` command (pyproject's console script, and ``python -m unlearning``).

    When ``UNLEARNING_FORKSERVER`` names a fork server that answers, a worker forked there runs the
    stage and this returns its exit status; otherwise the stage runs in this process (``main``).
    """
    from .forkclient import ENV, delegate, turned_off

    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get(ENV) and not turned_off():
        code = delegate(os.environ[ENV], argv)
        if code is not None:
            return code
    return main(argv)
