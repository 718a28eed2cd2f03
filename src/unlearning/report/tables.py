"""Tables of a benchmark's tidy table: the summary markdown (mean ± standard deviation), the main
table (CSV + markdown, mean ± 95% CI over seeds), the quantization and relearning tables, and the
compact summary table of findings.md."""

from __future__ import annotations

import math
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..commands import Stage
from ..registry import forget_metrics as all_forget
from ..registry import quantizations, utility_metrics
from .files import atomic_csv, atomic_text
from .provenance import markdown as provenance_markdown
from .stats import bounded_ci, fmt, fmt_interval, mean_ci, summarise
from .tidy import (
    METRIC_LABELS,
    attack_order,
    forget_metrics,
    last_relearn,
    metric_order,
    metric_range,
    optimizer_order,
    primary_quantization,
    relearn_attacks,
    relearn_steps,
    row_keys,
    row_label,
    utility_metric,
)


def summary(tables: Sequence[str | Path], out: str | Path, provenance: str | Path | None = None) -> str:
    """Markdown: per benchmark, mean over seeds of every main metric before and after each attack; with
    ``provenance`` (see ``report.provenance``) where the evaluations ran, once."""
    parts = ["# Study summary", "", "Mean over seeds (± standard deviation where there are several).", ""]
    if provenance is not None:
        parts += ["## Where these numbers were made", "", provenance_markdown(provenance), ""]
    for table in tables:
        df = pd.read_csv(table)
        bench = df.benchmark.iloc[0]
        parts += [f"## {bench}", ""]
        metrics = [m for m in all_forget() + utility_metrics() + ["privleak", "forget_quality", "qcode_change"]
                   if m in set(df.metric)]
        attacks = attack_order(df.attack.unique())
        order = optimizer_order(df)
        for metric in metrics:
            d = df[df.metric == metric]
            g = d.groupby(["method", "optimizer", "attack"]).value
            mean, std = g.mean(), g.std()
            cols = [a for a in attacks if a in set(d.attack)]
            parts += [f"### {METRIC_LABELS.get(metric, metric)}", "",
                      "| method | optimizer | " + " | ".join(cols) + " |",
                      "|---|---|" + "---|" * len(cols)]
            keys = sorted({(m, o) for m, o, _ in mean.index},
                          key=lambda k: (k[0] != "none", k[0], order.index(k[1]) if k[1] in order else 99))
            for m, o in keys:
                cells = []
                for a in cols:
                    if (m, o, a) in mean.index:
                        s = std.get((m, o, a))
                        cells.append(f"{mean[(m, o, a)]:.1f}" + (f" ± {s:.1f}" if s == s and s is not None else ""))
                    else:
                        cells.append("")
                parts.append(f"| {m} | {o} | " + " | ".join(cells) + " |")
            parts.append("")
    text = "\n".join(parts) + "\n"
    atomic_text(text, out)
    return text


def main_table(df: pd.DataFrame, calibration: dict | None = None) -> pd.DataFrame:
    """Wide table: one row per reference model and (method, optimizer); for every attack and metric
    the mean over seeds (``{metric}@{attack}``) and the 95% CI half-width (``..._ci95``, empty with
    one seed). With ``calibration`` (report.calibration.choices), the learning-rate multiplier each
    row ran at and whether its calibration met the criterion (``lr_multiplier``, ``calibration``)."""
    keys = ["method", "optimizer", "attack", "metric"]
    s = summarise(df, keys).set_index(keys)
    grades = dict(zip(df.optimizer, df.grade))
    attacks = attack_order(df.attack.unique())
    metrics = metric_order(df.metric.unique())
    rows = []
    for method, opt in row_keys(df):
        seeds = df[(df.method == method) & (df.optimizer == opt)].seed.nunique()
        row = {"row": row_label(method, opt), "method": method, "optimizer": opt, "grade": grades[opt],
               "n_seeds": seeds}
        if calibration is not None:
            choice = calibration.get((df.benchmark.iloc[0], method, opt))
            row["lr_multiplier"] = choice["scale"] if choice else math.nan
            row["calibration"] = choice["status"] if choice else ""
        for a in attacks:
            for m in metrics:
                key = (method, opt, a, m)
                row[f"{m}@{a}"] = s.loc[key, "mean"] if key in s.index else math.nan
                row[f"{m}@{a}_ci95"] = s.loc[key, "ci95"] if key in s.index else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    means = [c for c in out.columns if "@" in c and not c.endswith("_ci95")]
    empty = [c for c in means if out[c].isna().all()]
    return out.drop(columns=empty + [f"{c}_ci95" for c in empty])


def main_table_markdown(df: pd.DataFrame, wide: pd.DataFrame | None = None) -> str:
    """The main table as markdown, one table per attack (rows as in ``main_table``; a row whose
    calibration did not meet the criterion is marked); mean [95% interval], the interval of a 0-100
    metric on the logit scale (inside the range)."""
    from .calibration import MARKS, NOT_REACHED_NOTE, OVERSHOT_NOTE

    wide = main_table(df) if wide is None else wide
    calibrated = "calibration" in wide.columns
    bench = df.benchmark.iloc[0]
    n = int(wide.n_seeds.max())
    note = (f"Mean [95% interval] over {n} seeds: on the logit scale for 0-100 metrics, so it stays in their "
            "range (stats.bounded_ci), Student t otherwise; the CSV holds the Student-t half-width." if n > 1 else
            "One seed: means only, no confidence interval (add seeds for intervals).")
    values = df.groupby(["method", "optimizer", "attack", "metric"]).value.apply(list)

    def cell(r: pd.Series, col: str) -> str:
        metric, attack = col.split("@")
        bounds = metric_range(metric)
        key = (r["method"], r["optimizer"], attack, metric)
        if bounds is None or key not in values.index:
            m, h = r[col], r[f"{col}_ci95"]
            return fmt_interval(m, m - h, m + h)
        return fmt_interval(r[col], *bounded_ci(values[key], *bounds))

    parts = [f"# {bench}: main table", "", note,
             "Rows: the original (target) model, the retrain model, then each method's optimizers in "
             "grade order (second, first, compressed, zeroth, hybrid). Attack `none` is before any attack.", ""]
    if calibrated:
        per_seed = wide.lr_multiplier.map(lambda x: isinstance(x, str)).any()
        parts += ["Learning rates calibrated (results/tables/calibration.csv): column `lr x` is the multiplier "
                  + ("of the entry's configured learning rate each seed chose and ran, in seed order." if per_seed
                     else "of the entry's configured learning rate that every seed ran."), ""]
        if (wide.calibration == "not reached").any():
            parts += [NOT_REACHED_NOTE, ""]
        if (wide.calibration == "overshot").any():
            parts += [OVERSHOT_NOTE, ""]
    for a in attack_order(df.attack.unique()):
        cols = [c for c in wide.columns if c.endswith(f"@{a}")]
        if not cols:
            continue
        metrics = [c.split("@")[0] for c in cols]
        sub = wide[wide[cols].notna().any(axis=1)]
        title = "before attack" if a == "none" else f"after {a}"
        lr_head, lr_rule = ("lr x | ", "---:|") if calibrated else ("", "")
        parts += [f"## {title}", "", "| row | grade | " + lr_head + " | ".join(metrics) + " |",
                  "|---|---|" + lr_rule + "---:|" * len(metrics)]
        for _, r in sub.iterrows():
            cells = [cell(r, c) for c in cols]
            name = r["row"]
            lr_cell = ""
            if calibrated:
                name += f" {MARKS[r['calibration']]}" if r["calibration"] in MARKS else ""
                x = r["lr_multiplier"]
                lr_cell = f"{x} | " if isinstance(x, str) else (f"{x:g} | " if x == x else " | ")
            parts.append(f"| {name} | {r['grade']} | {lr_cell}" + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts) + "\n"


def quantization_table(df: pd.DataFrame) -> pd.DataFrame:
    """Forget knowledge after each quantization against before (per optimizer, grade-ordered, the
    attacks' controls among the reference rows): mean and CI of the value after the attack and of the
    per-seed change (after - before), and the change beyond the retrain model's (the negative control's
    under the same attack, paired by seed; against its mean where the seeds differ); qcode_change."""
    rows = []
    quants = [a for a in quantizations() if a in set(df.attack)]
    negative = _changes(df, "none", "retrain")
    for method, opt in row_keys(df):
        d = df[(df.method == method) & (df.optimizer == opt)]
        grade = d.grade.iloc[0]
        for metric in forget_metrics(df) + ["qcode_change"]:
            dm = d[d.metric == metric]
            before = dm[dm.attack == "none"].set_index("seed").value
            for a in quants:
                after = dm[dm.attack == a].set_index("seed").value
                if after.empty:
                    continue
                am, ah, n = mean_ci(after)
                bm, bh, _ = mean_ci(before) if not before.empty else (math.nan, math.nan, 0)
                delta = (after - before).dropna()
                dmn, dh, _ = mean_ci(delta) if not delta.empty else (math.nan, math.nan, 0)
                rows.append({"row": row_label(method, opt), "method": method, "optimizer": opt, "grade": grade,
                             "metric": metric, "attack": a, "n": n, "before": bm, "before_ci95": bh,
                             "after": am, "after_ci95": ah, "change": dmn, "change_ci95": dh,
                             "beyond_retrain": _beyond(delta, negative.get((metric, a)))})
    return pd.DataFrame(rows)


def _changes(df: pd.DataFrame, method: str, opt: str) -> dict[tuple[str, str], pd.Series]:
    """(metric, attack) -> per-seed change (after - before) of one row of ``df`` under each attack."""
    d = df[(df.method == method) & (df.optimizer == opt)]
    wide = d.pivot_table(index=["metric", "seed"], columns="attack", values="value")
    if "none" not in wide.columns:
        return {}
    return {(m, a): (wide.loc[m][a] - wide.loc[m]["none"]).dropna()
            for m in wide.index.get_level_values(0).unique() for a in wide.columns if a != "none"}


def _beyond(change: pd.Series, negative: pd.Series | None) -> float:
    """Mean change beyond the negative control's: paired by seed, else against its mean (NaN without it)."""
    if negative is None or negative.empty or change.empty:
        return math.nan
    both = pd.concat([change, negative], axis=1, keys=["c", "n"]).dropna()
    return float((both.c - both.n).mean()) if not both.empty else float(change.mean() - negative.mean())


def relearning_table(df: pd.DataFrame) -> pd.DataFrame:
    """Forget metrics (whole set, relearned and held-out parts) against relearning steps; step 0 is
    the model before any attack. The unlearned models, then the attacks' controls (method ``none``: the
    retrain model relearned the same steps, and the positive control), whichever the table has."""
    rel = ["none", *relearn_attacks(df.attack.unique())]
    relearned = df[df.attack.isin(rel[1:])][["method", "optimizer"]].drop_duplicates()
    keep = df.set_index(["method", "optimizer"]).index.isin(relearned.set_index(["method", "optimizer"]).index)
    d = df[keep & df.attack.isin(rel)]
    bases = forget_metrics(df)
    metrics = [m for m in metric_order(d.metric.unique()) if m.split("_relearned")[0].split("_heldout")[0] in bases]
    d = d[d.metric.isin(metrics)]
    s = summarise(d, ["method", "optimizer", "grade", "metric", "attack"])
    s.insert(5, "steps", s.attack.map(relearn_steps))
    return s.sort_values(["method", "metric", "optimizer", "steps"]).reset_index(drop=True)


def report_tables(table: str | Path, out_main_csv: str | Path, out_main_md: str | Path,
                  out_quant: str | Path, out_relearn: str | Path, calibration: str | Path | None = None) -> None:
    """The main table (CSV + markdown), the quantization table and the relearning-curve table;
    ``calibration``: the calibration table (CSV), whose choices the main table shows."""
    from .calibration import choices

    df = pd.read_csv(table)
    wide = main_table(df, choices(calibration) if calibration is not None else None)
    atomic_csv(wide, out_main_csv)
    atomic_text(main_table_markdown(df, wide), out_main_md)
    atomic_csv(quantization_table(df), out_quant)
    atomic_csv(relearning_table(df), out_relearn)


def summary_table_markdown(df: pd.DataFrame, bounded: bool = False) -> str:
    """Compact table: key forget and utility metrics before attack, after NF4 (or FP4) and after the
    longest relearning; mean ± 95% CI half-width, or with ``bounded`` mean [95% interval] where the
    interval of a 0-100 metric is taken on the logit scale (stats.bounded_ci) and stays in range."""
    attacks = ["none", *primary_quantization(df), *last_relearn(df)]
    metrics = [m for m in forget_metrics(df) + [utility_metric(df), "privleak"] if m and m in set(df.metric)]
    keys = ["method", "optimizer", "attack", "metric"]
    s = summarise(df, keys).set_index(keys)
    cols = [(m, a) for a in attacks for m in metrics
            if ((s.index.get_level_values("attack") == a) & (s.index.get_level_values("metric") == m)).any()]
    lines = ["| row | " + " | ".join(f"{m} ({a})" for m, a in cols) + " |", "|---|" + "---:|" * len(cols)]
    def cell(method: str, opt: str, a: str, m: str) -> str:
        if (method, opt, a, m) not in s.index:
            return "–"
        mean, hw = s.loc[(method, opt, a, m), "mean"], s.loc[(method, opt, a, m), "ci95"]
        bounds = metric_range(m)
        if not bounded:
            return fmt(mean, hw)
        if bounds is None:
            return fmt_interval(mean, mean - hw, mean + hw)
        vals = df[(df.method == method) & (df.optimizer == opt) & (df.attack == a) & (df.metric == m)].value
        return fmt_interval(mean, *bounded_ci(list(vals), *bounds))

    for method, opt in row_keys(df):
        cells = [cell(method, opt, a, m) for m, a in cols]
        lines.append(f"| {row_label(method, opt)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summary_arguments(p: ArgumentParser) -> None:
    p.add_argument("--tables", nargs="+", required=True)
    p.add_argument("--provenance", default=None, help="the study's provenance table (CSV)")
    p.add_argument("--out", required=True)


def _report_tables_arguments(p: ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="tidy table of one benchmark")
    p.add_argument("--main-csv", required=True)
    p.add_argument("--main-md", required=True)
    p.add_argument("--quantization", required=True)
    p.add_argument("--relearning", required=True)
    p.add_argument("--calibration", default=None, help="the calibration table (CSV), if calibrated")


def _report_tables(a: Namespace) -> None:
    report_tables(a.table, a.main_csv, a.main_md, a.quantization, a.relearning, calibration=a.calibration)


SUMMARY = Stage(_summary_arguments, lambda a: summary(a.tables, a.out, provenance=a.provenance), needs_torch=False)
REPORT_TABLES = Stage(_report_tables_arguments, _report_tables, needs_torch=False)
