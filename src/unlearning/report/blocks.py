"""README's and docs' generated blocks: every number quoted there is written here, from files
committed under results/README/, between markers

    <!-- BEGIN generated:NAME -->
    ...
    <!-- END generated:NAME -->

scripts/update_readme_results.py copies what a block needs from a study's results folder into
results/README/ (``copy_default``, ``copy_tofu``, recording the run in ``runs.json``) and rewrites
every block from those files (``update``); tests/test_report_blocks.py fails when a block differs
from what ``render`` writes now. A block names the run its numbers come from. The docs' other blocks
(``DOC_RENDERERS``) quote measurements recorded under docs/measurements/data/ (``measurements``) or
count the paper configs' jobs and disk with the cost model (``paper_tables``), or list the locked
package versions (``versions``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pandas as pd

from . import measurements, onset, paper_tables, quant_check, summaries, versions
from .findings_report import presence_rows
from .stats import bounded_ci, fmt_interval, mean_ci
from .tidy import metric_range, row_keys, row_label

BLOCK = re.compile(r"(<!-- BEGIN generated:(?P<name>[a-z0-9_-]+) -->\n)(?P<body>.*?)(<!-- END generated:(?P=name) -->)",
                   re.S)
VERDICTS, COMPARISONS, CALIBRATION, TOFU, RUNS = ("verdicts.csv", "comparisons.csv", "calibration_choices.csv",
                                                  "tofu.csv", "runs.json")
# The TOFU table's columns (tidy metric names) and the paper's Llama-2-7B-chat numbers for its rows
# (the paper's TOFU table, forget10: forget probability / forget ROUGE-L / model utility).
TOFU_COLUMNS = {"tofu_prob_f": "forget prob.", "tofu_rouge_f": "forget ROUGE-L", "model_utility": "model utility",
                "forget_quality": "Forget Quality"}
PAPER_TOFU = {("none", "target"): "99.0 / 99.8 / 63.2", ("none", "retrain"): "14.8 / 39.9 / 61.3",
              ("npo", "adam"): "0.0 / 0.0 / 53.2", ("npo", "zo"): "30.4 / 41.7 / 50.3",
              ("npo", "hybrid"): "0.0 / 1.8 / 61.5"}


def blocks(text: str) -> dict[str, str]:
    """Name -> body of every generated block in ``text``."""
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def replace(text: str, render: Callable[[str], str | None]) -> str:
    """``text`` with every generated block's body replaced by ``render(name)`` (kept where it gives None)."""
    def one(m: re.Match) -> str:
        body = render(m["name"])
        return m.group(0) if body is None else f"{m.group(1)}{body.rstrip()}\n{m.group(4)}"

    return BLOCK.sub(one, text)


def _runs(readme_dir: Path) -> dict:
    p = readme_dir / RUNS
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def _run_label(readme_dir: Path, key: str) -> str:
    r = _runs(readme_dir).get(key)
    if not r:
        return "run not recorded"
    return f"`{r['results']}`, copied at commit {r['commit']}"


def _p(x: float) -> str:
    """One decimal, blank for NaN, never "-0.0"."""
    if x != x:
        return ""
    s = f"{x:.1f}"
    return "0.0" if s == "-0.0" else s


def verdicts_block(readme_dir: Path) -> str:
    """README's verdict table: per finding the primary comparison, how its primary comparisons came out,
    the smallest paired difference the seeds detect, the verdict, and the old rule's verdict."""
    path = readme_dir / VERDICTS
    if not path.exists():
        return f"No committed verdicts ({path.name} missing): run the default study, then the script."
    df = pd.read_csv(path)
    seeds = int(df.seeds.max())
    lines = [f"From `results/README/{VERDICTS}` (default study, {_run_label(readme_dir, 'default')}; {seeds} seeds; "
             "evidence in `results/README/findings.md`). *Detectable*: the smallest paired difference "
             "the seeds detect with 80% power at Holm's strictest level (alpha / number of voting primaries), from "
             "the observed paired SD. *Old rule*: two disjoint unpaired 95% intervals, half the comparisons "
             "(before issue 25).", "",
             "| | finding | primary comparison | primary outcomes | detectable (points) | verdict | old rule |",
             "|---|---|---|---|---:|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['id']} | {r['claim']} | {r['primary']} | {r['outcomes']} | {_p(r['mde_holm'])} | "
                     f"**{r['verdict']}** | {r['legacy_verdict']} |")
    return "\n".join(lines)


def power_block(readme_dir: Path) -> str:
    """The seed-count trade in numbers: per finding the detectable difference at the study's seeds and
    at 5, and the seeds needed for the declared target difference."""
    path = readme_dir / VERDICTS
    if not path.exists():
        return f"No committed verdicts ({path.name} missing)."
    df = pd.read_csv(path).dropna(subset=["mde"])
    if df.empty:
        return "No finding had a voting primary comparison."
    seeds, target = int(df.seeds.max()), float(df.target_detectable.max())
    lines = [f"From `results/README/{VERDICTS}` (default study, {_run_label(readme_dir, 'default')}): smallest "
             f"paired difference (points) a two-sided paired t-test detects with 80% power, from each finding's "
             f"observed paired SD.", "",
             f"| | voting primaries (m) | paired SD | at {seeds} seeds (alpha) | at {seeds} seeds (alpha/m) "
             f"| at 5 seeds (alpha/m) | seeds for {target:g} points (alpha/m) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in df.iterrows():
        need = "> 100" if r["seeds_for_target"] != r["seeds_for_target"] else str(int(r["seeds_for_target"]))
        lines.append(f"| {r['id']} | {int(r['n_primary'] - r['n_collapsed'] - r['n_untestable'])} | "
                     f"{_p(r['paired_sd'])} | {_p(r['mde'])} | {_p(r['mde_holm'])} | {_p(r['mde5_holm'])} | {need} |")
    return "\n".join(lines)


def calibration_block(readme_dir: Path) -> str:
    """What the calibration chose in the default study: choices that reached their ceiling, those that
    did not (with their gap), entries that chose one multiplier on every seed, choices at a grid edge."""
    path = readme_dir / CALIBRATION
    if not path.exists():
        return f"No committed calibration choices ({path.name} missing): run the default study, then the script."
    df = pd.read_csv(path)
    entries = df.groupby(["benchmark", "method", "optimizer"])
    n_entries, n = entries.ngroups, len(df)
    seeds = df.seed.nunique() if "seed" in df and df.seed.notna().any() else 1
    reached = int(df.status.isin(["reached", "overshot"]).sum())
    same = int(entries.scale.nunique().eq(1).sum())
    edge = int(df.at_grid_edge.astype(bool).sum())
    missed = df[df.status == "not reached"]
    lines = [f"Default study ({_run_label(readme_dir, 'default')}; `results/README/{CALIBRATION}`): "
             f"**{reached} of {n}** choices ({n_entries} entries × {seeds} seeds) reached their ceiling; "
             f"{same} of the {n_entries} entries chose one multiplier on every seed; {edge} choices lie at a "
             f"grid edge."]

    def name(r) -> str:
        return f"{r.benchmark} {r.method} {r.optimizer}" + (f" seed {int(r.seed)}" if r.seed == r.seed else "")

    if not missed.empty:
        lines[0] += " Not reached: " + "; ".join(f"{name(r)} ({r.gap:.1f} points above)"
                                                 for r in missed.itertuples()) + "."
    over = df[df.status == "overshot"]
    if not over.empty:
        lines[0] += " Overshot (every forget metric more than the margin below the retrain level): " + "; ".join(
            name(r) for r in over.itertuples()) + "."
    if "retrain_forget" in df:  # the spread of the reached levels: forget metric - the seed's retrain level
        d = (df.forget - df.retrain_forget)[df.status != "not reached"].groupby(
            [df.benchmark, df.method]).agg(["min", "max"])
        lines[0] += " Chosen forget level minus the retrain model's, by benchmark and method: " + "; ".join(
            f"{b} {m} {lo:+.1f} to {hi:+.1f}" for (b, m), (lo, hi) in d.iterrows()) + "."
    return "\n".join(lines)


def tofu_block(readme_dir: Path) -> str:
    """README's TOFU table from the committed TOFU study rows (attack none): mean over seeds with a
    95% interval that stays in each metric's range (logit scale), the paper's 7B numbers beside."""
    path = readme_dir / TOFU
    if not path.exists():
        return ("No committed TOFU results yet: run `.venv/bin/snakemake --cores 2 --configfile configs/tofu.yaml`, "
                "then `.venv/bin/python scripts/update_readme_results.py --tofu results/tofu`.")
    df = pd.read_csv(path)
    seeds = df.seed.nunique()
    head = ["model", *TOFU_COLUMNS.values(), "paper (7B): prob. / ROUGE / utility"]
    lines = [f"TOFU study ({_run_label(readme_dir, 'tofu')}; `results/README/{TOFU}`): mean over {seeds} seeds "
             "[95% interval on the logit scale, inside each metric's range]; the paper's columns are its "
             "Llama-2-7B-chat numbers.", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * len(TOFU_COLUMNS)
             + "---|"]
    for method, opt in row_keys(df):
        cells = []
        for metric in TOFU_COLUMNS:
            v = list(df[(df.method == method) & (df.optimizer == opt) & (df.metric == metric)].value)
            if not v:
                cells.append("")
                continue
            m = mean_ci(v)[0]
            lo, hi = bounded_ci(v, *(metric_range(metric) or (0.0, 100.0)))
            if metric == "forget_quality":  # p-values span decades: two significant digits
                cells.append(f"{m:.2g}" + (f" [{lo:.2g}, {hi:.2g}]" if lo == lo else ""))
            else:
                cells.append(fmt_interval(m, lo, hi))
        lines.append(f"| {row_label(method, opt)} | " + " | ".join(cells) + f" | {PAPER_TOFU.get((method, opt), '')} |")
    return "\n".join(lines)


def _missing(name: str) -> str:
    return f"No committed `{name}`: run the default study, then `.venv/bin/python scripts/update_readme_results.py`."


def _summary(readme_dir: Path, name: str) -> pd.DataFrame | str:
    """The committed summary ``name`` as a frame, or the line saying it is missing."""
    path = readme_dir / name
    return pd.read_csv(path) if path.exists() else _missing(name)


def run_block(readme_dir: Path) -> str:
    """Which run the results page quotes: commit, wall time, jobs and the CPU kernels it ran on."""
    path = readme_dir / summaries.RUN
    if not path.exists():
        return _missing(summaries.RUN)
    f = json.loads(path.read_text(encoding="utf-8"))
    wall = (f"{int(f['wall_s'] // 60)} min {int(f['wall_s'] % 60)} s wall time on {f.get('cpu', 'an unrecorded CPU')}"
            + (" (other work shared the machine during the run: an upper bound, as are the job times below)"
               if f.get("shared") else "")
            if "wall_s" in f else "wall time not recorded")
    code = f"run with the code of commit {f['code']}, " if f.get("code") else ""
    return (f"Default study ({code}{_run_label(readme_dir, 'default')}): {f['jobs']} jobs timed, {wall}, CPU kernels "
            f"as every evaluation recorded them (torch capability / oneDNN ISA / linear backend / torch): "
            f"{', '.join(f['cpu_kernels']) or 'none recorded'}.")


def references_block(readme_dir: Path) -> str:
    """The reference models per seed: target and retrain model, primary forget and utility metric."""
    df = _summary(readme_dir, summaries.REFERENCES)
    if isinstance(df, str):
        return df
    seeds = sorted(df.seed.unique())
    lines = [f"From `results/README/{summaries.REFERENCES}`: each seed's target and retrain model before any attack.",
             "", "| benchmark | model | metric | " + " | ".join(f"seed {int(s)}" for s in seeds) + " |",
             "|---|---|---|" + "---:|" * len(seeds)]
    for (bench, role, metric), d in df.groupby(["benchmark", "role", "metric"], sort=True):
        by = d.set_index("seed").value
        cells = " | ".join(_p(by.get(s, float("nan"))) for s in seeds)
        lines.append(f"| {bench} | {role} | {metric} | {cells} |")
    return "\n".join(lines)


def presence_block(readme_dir: Path) -> str:
    """Per benchmark and attack: the controls' numbers and whether the attack is present."""
    df = _summary(readme_dir, summaries.PRESENCE)
    if isinstance(df, str):
        return df
    n_present = int((df.present == True).sum())  # noqa: E712 (a column of True/False/NaN)
    if "gap" not in df.columns:
        return _presence_block_before_controls(df, n_present)
    lines = [f"From `results/README/{summaries.PRESENCE}`: **{n_present} of {len(df)}** attack × benchmark cells "
             "present. *Target*: its level of the metric; *control before*: the positive control's (the target "
             "after a thin unlearning update, config `controls.positive`) before the attack; *gap*: target - "
             "control before; *recovery*: the control's after - before; *retrain moves*: the negative control's "
             "after - before (the retrain model, relearned the same steps); *excess*: recovery - retrain's move, "
             "paired by seed; present when the excess reaches `report.stats.presence_share` of the gap and the "
             "retrain model moves at most `report.stats.presence_negative_points`; unknown when the gap is under "
             "`report.stats.presence_min_gap`. Relearning is judged on the "
             "held-out part of the forget set. Means over seeds.", "",
             *presence_rows(df, {True: "yes", False: "**no**"}, "unknown", num=_p)]
    return "\n".join(lines)


def _presence_block_before_controls(df: pd.DataFrame, n_present: int) -> str:
    """The presence block of a run made before the attacks had dedicated controls (issue 24): the
    reference optimizer's unlearned model stood in for the positive control, per method."""
    lines = [f"From `results/README/{summaries.PRESENCE}`: **{n_present} of {len(df)}** attack × benchmark × method "
             "cells present. *Positive*: the reference optimizer's unlearned model, recovery of the primary forget "
             "metric (after - before, mean over seeds); *negative*: the retrain model's change under the same "
             "attack; *excess*: positive - negative, paired by seed; present when the excess reaches "
             "`report.stats.presence_points`.", "",
             "| benchmark | method | attack | metric | positive | negative | excess | present |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in df.itertuples():
        present = {True: "yes", False: "**no**"}.get(r.present, "unknown") if r.present == r.present else "unknown"
        lines.append(f"| {r.benchmark} | {r.method} | {r.attack} | {r.metric} | {_p(r.positive)} | {_p(r.negative)} "
                     f"| {_p(r.excess)} | {present} |")
    return "\n".join(lines)


def collapse_block(readme_dir: Path) -> str:
    """The unlearned entries whose utility collapsed (left out of the robustness comparisons)."""
    df = _summary(readme_dir, summaries.COLLAPSE)
    if isinstance(df, str):
        return df
    if df.empty:
        return f"From `results/README/{summaries.COLLAPSE}`: no unlearned model collapsed."
    lines = [f"From `results/README/{summaries.COLLAPSE}`: {len(df)} entries kept less than "
             "`report.stats.collapse_share` of their seed's target's utility (above chance), mean over seeds; "
             "the findings leave them out of robustness comparisons.", "",
             "| benchmark | method | optimizer | utility metric | share of the target's |", "|---|---|---|---|---:|"]
    for r in df.itertuples():
        lines.append(f"| {r.benchmark} | {r.method} | {r.optimizer} | {r.metric} | {r.share:.2f} |")
    return "\n".join(lines)


def jobs_block(readme_dir: Path) -> str:
    """Where the default study's time went: per rule its jobs, mean and total job seconds, peak memory."""
    df = _summary(readme_dir, summaries.JOBS)
    if isinstance(df, str):
        return df
    lines = [f"From `results/README/{summaries.JOBS}` (Snakemake's benchmark files; `unlearning study-time --results "
             f"results` prints the same): {int(df.jobs.sum())} jobs, **{df.job_s.sum():.0f} job-seconds** in all.", "",
             "| rule | jobs | mean s/job | job-s | share | peak job RSS (MB) |", "|---|---:|---:|---:|---:|---:|"]
    for r in df.itertuples():
        lines.append(f"| {r.rule} | {r.jobs} | {r.mean_s:.2f} | {r.job_s:.0f} | {r.share:.0%} | {r.peak_rss_mb:.0f} |")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Path], str]] = {"verdicts": verdicts_block, "power": power_block,
                                                "calibration": calibration_block, "tofu": tofu_block,
                                                "run": run_block, "references": references_block,
                                                "presence": presence_block, "collapse": collapse_block,
                                                "jobs": jobs_block}


def seed_cost_block(root: Path) -> str:
    """docs/reference/statistics.md: what more seeds would cost, from the committed run's job time
    (nearly every job is per seed, so job time scales with the seed count)."""
    readme_dir = root / "results" / "README"
    jobs, run = readme_dir / summaries.JOBS, readme_dir / summaries.RUN
    if not jobs.exists() or not run.exists():
        return _missing(summaries.JOBS if not jobs.exists() else summaries.RUN)
    job_s = float(pd.read_csv(jobs).job_s.sum())
    f = json.loads(run.read_text(encoding="utf-8"))
    seeds = int(pd.read_csv(readme_dir / VERDICTS).seeds.max()) if (readme_dir / VERDICTS).exists() else 3
    at5 = job_s * 5 / seeds
    where = f.get("cpu", "an unrecorded CPU") + (", shared with other work: upper bounds" if f.get("shared") else "")
    return (f"The committed run (`results/README/{summaries.JOBS}`, {_run_label(readme_dir, 'default')}; {where}) "
            f"took {job_s:.0f} job-seconds at {seeds} seeds; at 5 seeds about {job_s:.0f} × 5 / {seeds} = "
            f"{at5:.0f} job-seconds, {at5 / 2 / 60:.0f} minutes on 2 cores.")


def interval_example_block(root: Path) -> str:
    """docs/reference/statistics.md: the bounded interval beside the ordinary one, on the committed
    MUSE targets' KnowMem_f (one value per seed)."""
    readme_dir = root / "results" / "README"
    df = _summary(readme_dir, summaries.REFERENCES)
    if isinstance(df, str):
        return df
    rows = df[(df.benchmark == "muse") & (df.role == "target") & (df.metric == "knowmem_f")]
    v = list(rows.sort_values("seed").value)
    if len(v) < 2:
        return "The committed references hold fewer than two MUSE targets."
    m, half, _ = mean_ci(v)
    lo, hi = bounded_ci(v)
    return (f"E.g. the committed MUSE targets' KnowMem_f (`results/README/{summaries.REFERENCES}`, "
            f"{', '.join(_p(x) for x in v)}): {_p(m)} ± {_p(half)} on the original scale, "
            f"[{_p(lo)}, {_p(hi)}] on the logit scale.")


# The docs' blocks that quote measurements (docs/measurements/data/), the paper configs' cost model or
# the lock file; their renderers take the repository root.
DOC_RENDERERS: dict[str, Callable[[Path], str]] = {**measurements.RENDERERS, **paper_tables.RENDERERS,
                                                    **versions.RENDERERS, **onset.RENDERERS,
                                                    "seed-cost": seed_cost_block,
                                                    "interval-example": interval_example_block}


def render(name: str, readme_dir: Path, root: Path | None = None) -> str:
    """The body of block ``name``: from the committed files in ``readme_dir`` (the results' blocks) or
    under the repository ``root`` (``DOC_RENDERERS``; default: the folder that holds results/README)."""
    if name in DOC_RENDERERS:
        return DOC_RENDERERS[name](root if root is not None else readme_dir.parents[1])
    if name not in RENDERERS:
        raise ValueError(f"unknown generated block {name!r}; known: {', '.join([*RENDERERS, *DOC_RENDERERS])}")
    return RENDERERS[name](readme_dir)


def ours(name: str) -> bool:
    """Whether this script writes block ``name`` (others, e.g. ``paper-scale``, are another script's)."""
    return name in RENDERERS or name in DOC_RENDERERS


def documents(root: Path) -> list[Path]:
    """The files whose blocks are generated: README.md and docs/**/*.md."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def stale(root: Path, readme_dir: Path) -> list[str]:
    """``file: block`` for every block of ours (``RENDERERS``, ``DOC_RENDERERS``) that differs from what
    ``render`` writes now. Blocks other scripts write (e.g. ``unlearning paper-scale``'s ``paper-scale``)
    are theirs."""
    out = []
    for doc in documents(root):
        text = doc.read_text(encoding="utf-8")
        for name, body in blocks(text).items():
            if ours(name) and body.rstrip() != render(name, readme_dir, root).rstrip():
                out.append(f"{doc.relative_to(root)}: {name}")
    return out


def update(root: Path, readme_dir: Path) -> list[Path]:
    """Rewrite every generated block of ours in README.md and docs/**/*.md (others' blocks are left as
    they are); the files that changed."""
    changed = []
    for doc in documents(root):
        text = doc.read_text(encoding="utf-8")
        new = replace(text, lambda name: render(name, readme_dir, root) if ours(name) else None)
        if new != text:
            doc.write_text(new, encoding="utf-8")
            changed.append(doc)
    return changed


def _record(readme_dir: Path, key: str, results: Path, root: Path) -> None:
    runs = _runs(readme_dir)
    try:
        shown = str(results.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(results)
    runs[key] = {"results": shown, "commit": measurements.code_commit(root)}
    (readme_dir / RUNS).write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def copy_default(results: Path, readme_dir: Path, root: Path, reference: str = "adam", stats: dict | None = None,
                 time_log: Path | None = None, code: str | None = None, shared: bool = False) -> list[str]:
    """Copy what the blocks need from the default study's results folder into ``readme_dir``: the
    calibration's chosen rows, the reference models per seed, the attacks' controls, the collapsed
    entries and the run's facts (``summaries``; verdicts.csv is written there by rule report_findings
    already). ``reference``/``stats``: the study's `report.reference_optimizer` and `report.stats`;
    ``time_log``: GNU ``time -v`` output of the run, for its wall time; ``code``: the commit the study
    ran with; ``shared``: other work shared the machine during the run. The files copied."""
    from .findings import STATS_DEFAULTS

    st = {**STATS_DEFAULTS, **(stats or {})}
    copied = []
    cal = results / "tables" / "calibration.csv"
    if cal.exists():
        df = pd.read_csv(cal)
        keep = ["benchmark", "method", "optimizer", "grade", "seed", "scale", "forget", "utility", "status", "gap",
                "at_grid_edge"]
        keep += [c for c in ("retrain_forget", "stop_step", "forget_levels") if c in df]  # early stopping
        df[df.chosen.astype(bool)][keep].to_csv(readme_dir / CALIBRATION, index=False)
        copied.append(CALIBRATION)
    tables = summaries.tidy_tables(results)
    if tables:
        for name, frame in ((summaries.REFERENCES, summaries.references_frame(tables, results)),
                            (summaries.PRESENCE, summaries.presence_frame(tables, st["presence_share"],
                                                                      st["presence_negative_points"],
                                                                      st["presence_min_gap"])),
                            (summaries.COLLAPSE, summaries.collapse_frame(tables, st["collapse_share"])),
                            (quant_check.QUANT_CHECK,
                             quant_check.target_keeps(tables, st["quantization_target_share"])),
                            (summaries.JOBS, summaries.jobs_frame(results))):
            frame.to_csv(readme_dir / name, index=False, float_format="%.4g")
            copied.append(name)
        facts = summaries.run_facts(results, time_log, code, shared)
        (readme_dir / summaries.RUN).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        copied.append(summaries.RUN)
    if copied or (results / "README" / VERDICTS).exists():
        _record(readme_dir, "default", results, root)
    return copied


def copy_tofu(results: Path, readme_dir: Path, root: Path) -> list[str]:
    """Copy a TOFU study's unattacked rows of the TOFU table's metrics (its tidy table
    ``tables/<bench>.csv`` of a benchmark with TOFU's metrics) into ``readme_dir``."""
    for table in sorted((results / "tables").glob("*.csv")):
        df = pd.read_csv(table)
        if {"metric", "attack"} <= set(df.columns) and set(TOFU_COLUMNS) <= set(df.metric):
            rows = df[(df.attack == "none") & df.metric.isin(list(TOFU_COLUMNS))]
            rows.to_csv(readme_dir / TOFU, index=False)
            _record(readme_dir, "tofu", results, root)
            return [TOFU]
    raise FileNotFoundError(f"{results}/tables: no tidy table with TOFU's metrics (run configs/tofu.yaml first)")
