"""Small summaries of a finished study, computed from its results folder for the generated results page
(docs/measurements/results.md): the reference models per seed, whether each attack restores anything
(its controls), which unlearned models collapsed, and the run itself (wall time, CPU kernels, jobs).

Each ``*_frame`` reads the study's tidy tables (``results/tables/<bench>.csv``); the blocks
(``report/blocks.py``) render the CSV files these are saved as under results/README/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .findings import CHANCE, PRIMARY_METRICS, collapsed, kind_of, presence_table

REFERENCES, PRESENCE, COLLAPSE, RUN, JOBS = "references.csv", "presence.csv", "collapse.csv", "run.json", "jobs.csv"
_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")


def tidy_tables(results: Path) -> dict[str, pd.DataFrame]:
    """Benchmark name -> its tidy table (``tables/<bench>.csv`` with the tidy columns)."""
    out = {}
    for p in sorted((results / "tables").glob("*.csv")):
        df = pd.read_csv(p)
        if {"benchmark", "method", "optimizer", "seed", "attack", "metric", "value"} <= set(df.columns):
            out[p.stem] = df
    return out


def references_frame(tables: dict[str, pd.DataFrame], results: Path | None = None) -> pd.DataFrame:
    """Per benchmark, reference role (target, retrain) and seed: the primary forget and utility
    metrics before any attack, and with ``results`` metric ``levels_met`` (1 or 0) where the model's
    training record (models/<bench>/<role>/seed<n>/training.json) checked `training.until` levels."""
    rows = []
    for p in sorted(results.glob("models/*/*/seed*/training.json")) if results is not None else []:
        rec = json.loads(p.read_text(encoding="utf-8"))
        if "levels_met" in rec:
            rows.append(pd.DataFrame([{"benchmark": p.parts[-4], "role": p.parts[-3], "seed": int(p.parts[-2][4:]),
                                       "metric": "levels_met", "value": float(rec["levels_met"])}]))
    for df in tables.values():
        kind = kind_of(df)
        metrics = [PRIMARY_METRICS[r].get(kind or "") for r in ("forget", "utility")]
        d = df[(df.method == "none") & df.optimizer.isin(["target", "retrain"]) & (df.attack == "none")
               & df.metric.isin([m for m in metrics if m])]
        rows.append(d[["benchmark", "optimizer", "seed", "metric", "value"]].rename(columns={"optimizer": "role"}))
    cols = ["benchmark", "role", "seed", "metric", "value"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def presence_frame(tables: dict[str, pd.DataFrame], share: float, negative_points: float,
                   min_gap: float = 0.0) -> pd.DataFrame:
    """Per benchmark and attack: the attacks' controls and whether the attack is present
    (``findings.presence_table``: the target's level, the positive control's before the attack, its
    gap, recovery, the retrain model's move, the excess, its share of the gap and the verdict)."""
    return presence_table(tables, share, negative_points, min_gap)


def collapse_frame(tables: dict[str, pd.DataFrame], share: float) -> pd.DataFrame:
    """Every unlearned entry (benchmark, method, optimizer) whose unattacked utility fell below
    ``share`` of its seed's target's (above chance where the metric has one): its mean share."""
    rows = []
    for bench, df in tables.items():
        metric = PRIMARY_METRICS["utility"].get(kind_of(df) or "")
        entries = df[df.method != "none"][["method", "optimizer"]].drop_duplicates()
        for e in entries.itertuples():
            r = collapsed(df, e.method, e.optimizer, share)
            if r is not None:
                rows.append({"benchmark": bench, "method": e.method, "optimizer": e.optimizer, "metric": metric,
                             "share": r, "chance": CHANCE.get(metric or "", 0.0)})
    return pd.DataFrame(rows, columns=["benchmark", "method", "optimizer", "metric", "share", "chance"])


def jobs_frame(results: Path) -> pd.DataFrame:
    """Per rule: jobs, mean and total job seconds, share of the total, peak job memory (MB), from the
    run's Snakemake benchmark files (``unlearning study-time``'s summary)."""
    from ..bench.study import summarise

    rules = summarise(results)["rules"]
    return pd.DataFrame([{"rule": r, **v} for r, v in rules.items()],
                        columns=["rule", "jobs", "mean_s", "job_s", "share", "peak_rss_mb"])


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """This machine's CPU: model name, core count and its widest vector ISA (AVX-512 or not)."""
    if not cpuinfo.exists():
        return "unknown"
    text = cpuinfo.read_text(encoding="utf-8", errors="ignore")
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", text, re.M) or [None, ""])[1].split())
    isa = "AVX-512" + (" with AVX512-BF16" if "avx512_bf16" in flags else "") if "avx512f" in flags else (
        "AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
    cores = len(re.findall(r"^processor\s*:", text, re.M))
    return f"{name[1].strip() if name else 'unknown'}, {cores} cores, {isa}"


def run_facts(results: Path, time_log: Path | None, code: str | None = None, shared: bool = False) -> dict:
    """The run behind the results: the commit its code came from (``code``, when given), wall time
    (from GNU time's ``-v`` output, when given) with this machine's CPU (so run it where the study
    ran; ``shared``: other work ran beside it, so its times are upper bounds), the CPU kernels every
    evaluation recorded (``env``), and the jobs with a benchmark file."""
    facts: dict = {"jobs": sum(1 for _ in (results / "benchmarks").rglob("*.tsv"))}
    if code:
        facts["code"] = code
    if time_log is not None:
        m = _WALL.search(time_log.read_text(encoding="utf-8", errors="ignore"))
        if m is None:
            raise ValueError(f"{time_log}: no 'Elapsed (wall clock) time' line (run the study under /usr/bin/time -v)")
        facts["wall_s"] = round(int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3]), 1)
        facts["cpu"] = cpu_model()
        facts["shared"] = shared
    envs = set()
    for p in (results / "eval").rglob("none.json"):
        env = json.loads(p.read_text(encoding="utf-8")).get("env", {})
        why = env.get("cpu_linear_reason")  # recorded since the path chooses itself per machine
        linear = f"{env.get('cpu_linear')} ({why})" if why else env.get("cpu_linear")
        envs.add((env.get("torch_cpu_capability"), env.get("onednn_max_cpu_isa"), linear, env.get("torch_version")))
    facts["cpu_kernels"] = sorted("/".join(str(x) for x in e) for e in envs)
    return facts
