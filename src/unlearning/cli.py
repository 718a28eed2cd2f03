"""Command line: ``unlearning STAGE [options]`` (or ``python -m unlearning``), one stage per Snakemake rule.

Structured arguments (config entries) are passed as JSON strings; the rule takes them from the
validated config, so each job sees only its own entry.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .commands import STAGES, declaration


def _threads(n: int) -> None:
    # One BLAS/OpenMP thread per job unless the rule grants more: two 2-thread jobs on two cores
    # run four times slower than two 1-thread jobs.
    import torch

    torch.set_num_threads(max(1, n))


class _StageParser(argparse.ArgumentParser):
    """A stage's subcommand: its arguments come from the stage's own module (commands.STAGES), which
    is imported only when that stage is parsed, so that `unlearning --help` and each stage import no
    other stage."""

    def __init__(self, *args, stage: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._stage = stage

    def parse_known_args(self, args=None, namespace=None):
        if self._stage is not None:
            declaration(self._stage).add_arguments(self)
            self._stage = None
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (one subcommand per stage of commands.STAGES)."""
    p = argparse.ArgumentParser(prog="unlearning", description=__doc__)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="stage", required=True, parser_class=_StageParser)
    for name, (_, help_) in STAGES.items():
        sub.add_parser(name, help=help_, stage=name)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code. Known failures print one line, not a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data.io import DataError

    stage = declaration(args.stage)
    # Reporting stages and data preparation never touch torch: don't pay for importing it.
    if stage.needs_torch:
        _threads(args.threads)
    known: tuple[type[Exception], ...] = (DataError, FileNotFoundError, ValueError)
    try:
        if stage.needs_torch:  # a GPU job (models.gpu_job) that finds no CUDA stops here, before any work
            from .models import NoCuda, device
            from .train import NonFiniteLoss

            known += (NonFiniteLoss, NoCuda)
            device()  # a GPU job without CUDA fails here, in one line
        stage.run(args)
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
