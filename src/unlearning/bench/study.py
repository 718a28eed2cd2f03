"""Wall time, job time per rule and peak job memory of a whole study; prints one JSON object.

    unlearning study-time --run                 # the default study, from scratch, in a fresh copy
    unlearning study-time --run --configfile configs/smoke.yaml
    unlearning study-time --results results     # summarise a run that already happened

``--run`` copies the workflow and library into a temporary folder (your results/ is not touched), runs
``snakemake --cores N`` there and times it. Per-rule figures come from Snakemake's ``benchmark:`` files
(``s``, wall seconds per job). Peak memory per job: the largest of the benchmark files' ``max_rss``
and, for jobs run by the fork server (src/unlearning/forkserver.py), the worker's peak RSS that the
job's log records, since a forked worker is not a child of the job's shell.

The goals for the default study on this 2-core machine: at most 30 minutes wall time (calibration and
per-seed targets included), every job under 4 GiB.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from ..commands import Stage
from . import harness

GOAL_WALL_S = 30 * 60  # issue 13: calibration and per-seed targets included
GOAL_JOB_RSS_MB = 4 * 1024
_WORKER = re.compile(r"forkserver: worker \d+ exit -?\d+, peak RSS (\d+(?:\.\d+)?) MB, CPU (\d+(?:\.\d+)?) s")


def summarise(results: Path) -> dict:
    """Per-rule job count, total and mean wall seconds, peak RSS (MB) from a finished run."""
    rules: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "job_s": 0.0, "peak_rss_mb": 0.0})
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        with open(tsv) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        r = rules[rule]
        r["jobs"] += 1
        r["job_s"] += float(rows[-1]["s"])
        rss = rows[-1].get("max_rss", "-")
        if rss not in ("-", "NA", ""):
            r["peak_rss_mb"] = max(r["peak_rss_mb"], float(rss))
        log = results / "logs" / tsv.relative_to(results / "benchmarks").with_suffix(".log")
        if log.exists():
            for m in _WORKER.finditer(log.read_text(errors="ignore")):
                r["peak_rss_mb"] = max(r["peak_rss_mb"], float(m.group(1)))
    total = sum(r["job_s"] for r in rules.values())
    out = {}
    for rule, r in sorted(rules.items(), key=lambda kv: -kv[1]["job_s"]):
        out[rule] = {"jobs": r["jobs"], "job_s": round(r["job_s"], 1), "mean_s": round(r["job_s"] / r["jobs"], 2),
                     "share": round(r["job_s"] / total, 3) if total else 0.0, "peak_rss_mb": round(r["peak_rss_mb"])}
    return {"rules": out, "job_s": round(total, 1), "jobs": sum(r["jobs"] for r in rules.values()),
            "peak_job_rss_mb": max((r["peak_rss_mb"] for r in out.values()), default=0)}


def run(cores: int, configfile: str | None, keep: bool) -> dict:
    """Run the study from scratch in a fresh copy of the workflow; return its wall time and summary."""
    from unlearning import forkserver
    from unlearning.studyfolder import make_study

    work = make_study(tempfile.mkdtemp(prefix="study-bench-"))
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "progress"]
    if configfile:
        cmd += ["--configfile", configfile]
    t0 = time.time()
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.time() - t0
    if res.returncode != 0:
        raise SystemExit(f"snakemake failed in {work}:\n{res.stderr[-3000:]}")
    out = {"wall_s": round(wall, 1), "cores": cores, "configfile": configfile or "config.yaml",
           "forkserver": not forkserver.turned_off(),
           **summarise(work / "results")}
    out["startup_and_scheduling_s"] = round(wall - out["job_s"] / cores, 1)
    if keep:
        out["workdir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``unlearning study-time``."""
    p.add_argument("--run", action="store_true", help="run the study from scratch in a fresh copy")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", default=None, help="a study file instead of config.yaml (with --run)")
    p.add_argument("--keep", action="store_true", help="keep the copy (with --run)")
    p.add_argument("--results", default="results", help="results folder to summarise (without --run)")


def report(a: argparse.Namespace) -> dict:
    """Time the study (``--run``) or summarise ``--results``, against the goals; prints the JSON."""
    out = run(a.cores, a.configfile, a.keep) if a.run else summarise(Path(a.results))
    if "wall_s" in out and out["configfile"] == "config.yaml":
        out["goal_wall_s"], out["wall_goal_met"] = GOAL_WALL_S, out["wall_s"] <= GOAL_WALL_S
    out["goal_job_rss_mb"], out["rss_goal_met"] = GOAL_JOB_RSS_MB, out["peak_job_rss_mb"] < GOAL_JOB_RSS_MB
    harness.emit(out, indent=1)
    return out


STAGE = Stage(add_arguments, report, needs_torch=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m unlearning.bench.study``: the same as ``unlearning study-time``."""
    p = harness.parser(__doc__)
    add_arguments(p)
    report(p.parse_args(argv))


if __name__ == "__main__":
    main()
