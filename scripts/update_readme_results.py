#!/usr/bin/env python3
"""Write every generated block of README.md and docs/**/*.md from the files committed under results/README/.

A block sits between `<!-- BEGIN generated:NAME -->` and `<!-- END generated:NAME -->`; its text comes
from src/unlearning/report/blocks.py: the results' blocks (verdicts, power, calibration, tofu, run, ...)
read only results/README/ (verdicts.csv, calibration_choices.csv, tofu.csv, runs.json, ...); the docs'
measurement blocks read docs/measurements/data/*.json (written by scripts/record_measurement.py, which
records the command, commit, CPU and whether the machine was shared); the paper configs' job and disk
blocks are counted from configs/paper-*.yaml by the cost model. Nothing there is typed by hand, and
tests/test_report_blocks.py fails when a block differs from what this script would write now.

First it copies what the blocks need from study results into results/README/ and records in
runs.json which folder and commit each came from:

- the default study (config.yaml's `results`, schema default `results`): rule report_findings already
  writes findings.md and verdicts.csv there; this copies the calibration's chosen rows. A study run with
  another config (its own folder) never changes README;
- `--tofu DIR`: a TOFU study's results folder (`configs/tofu.yaml` writes `results/tofu`): its
  unattacked TOFU rows, for README's TOFU table.

Run after `snakemake --cores 2` (and, for the TOFU table, `snakemake --cores 2 --configfile configs/tofu.yaml`):

    .venv/bin/python scripts/update_readme_results.py [--tofu results/tofu]
    .venv/bin/python scripts/update_readme_results.py --render-only   # blocks from the committed files
    .venv/bin/python scripts/update_readme_results.py --check         # exit 1 when a block is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from unlearning.config import validate
from unlearning.report import blocks

ROOT = Path(__file__).resolve().parents[1]


def default_config(root: Path) -> dict:
    """config.yaml, validated with the schema's defaults filled in (its `results`, `report`)."""
    return validate(yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tofu", type=Path, default=None, help="a TOFU study's results folder (e.g. results/tofu)")
    p.add_argument("--render-only", action="store_true", help="copy nothing; rewrite the blocks only")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    p.add_argument("--time-log", type=Path, default=None,
                   help="`/usr/bin/time -v` output of the default study's run, for its wall time")
    p.add_argument("--run-commit", default=None,
                   help="the commit the default study ran with, when it is not this checkout's HEAD")
    p.add_argument("--shared", action="store_true",
                   help="other work shared the machine during the run (its times are then upper bounds)")
    a = p.parse_args(argv)
    config = default_config(ROOT)
    results = ROOT / config["results"]
    readme_dir = results / "README"  # committed: the default study's figures, findings and block sources
    if a.check:
        stale = blocks.stale(ROOT, readme_dir)
        for s in stale:
            print(f"stale generated block: {s}", file=sys.stderr)
        return 1 if stale else 0
    if not a.render_only:
        if (results / "tables").exists():
            report = config.get("report", {})
            for name in blocks.copy_default(results, readme_dir, ROOT, report.get("reference_optimizer", "adam"),
                                            report.get("stats"), a.time_log, a.run_commit, a.shared):
                print(f"copied {name} from {results}")
        if a.tofu is not None:
            try:
                for name in blocks.copy_tofu(a.tofu, readme_dir, ROOT):
                    print(f"copied {name} from {a.tofu}")
            except FileNotFoundError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
    for doc in blocks.update(ROOT, readme_dir):
        print(f"updated {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
