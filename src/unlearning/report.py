"""Tables, figures and the markdown summary, all read from the evaluation JSON files / tidy tables."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

COLUMNS = ["benchmark", "method", "optimizer", "grade", "seed", "attack", "metric", "value"]
GRADE_ORDER = ["reference", "second", "first", "compressed", "zeroth", "hybrid"]
# Forget-knowledge metrics (lower is better after unlearning) and utility metrics (higher is better).
FORGET_METRICS = ["verbmem_f", "knowmem_f", "wmdp_acc"]
UTILITY_METRICS = ["knowmem_r", "mmlu_acc"]
METRIC_LABELS = {
    "verbmem_f": "VerbMem_f (ROUGE-L F1 x100)", "knowmem_f": "KnowMem_f (ROUGE-L F1 x100)",
    "knowmem_r": "KnowMem_r (ROUGE-L F1 x100)", "privleak": "PrivLeak (%)",
    "wmdp_acc": "Forget-domain accuracy (%)", "mmlu_acc": "Utility accuracy (%)",
    "qcode_change": "4-bit codes changed (%)",
}


def _atomic_csv(df: pd.DataFrame, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out)


def attack_order(attacks: Sequence[str]) -> list[str]:
    """none, int8, fp4, nf4, then relearn{steps} by step count."""
    fixed = ["none", "int8", "fp4", "nf4"]
    rel = sorted((a for a in attacks if a.startswith("relearn")), key=lambda a: int(a[7:]))
    return [a for a in fixed if a in attacks] + rel + sorted(set(attacks) - set(fixed) - set(rel))


def tidy(evals: Sequence[str | Path], auc_retrain: float | None = None) -> pd.DataFrame:
    """One row per (benchmark, method, optimizer, grade, seed, attack, metric) from eval JSONs.

    PrivLeak is derived here: (AUC - AUC_retrain) / AUC_retrain * 100, with AUC_retrain the retrain
    model's own Min-K% AUC (attack none) unless ``auc_retrain`` is given.
    """
    rows = []
    for path in evals:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        for metric, value in rec["metrics"].items():
            if value is None or not math.isfinite(float(value)):
                raise ValueError(f"{path}: metric {metric} is not finite ({value})")
            rows.append({**{k: rec[k] for k in COLUMNS[:6]}, "metric": metric, "value": float(value)})
    df = pd.DataFrame(rows, columns=COLUMNS)
    auc = df[df.metric == "mink_auc"]
    if not auc.empty:
        if auc_retrain is None:
            ref = auc[(auc.optimizer == "retrain") & (auc.attack == "none")]
            if ref.empty:
                raise ValueError("PrivLeak needs the retrain model's evaluation or evaluation.auc_retrain")
            auc_retrain = float(ref.value.mean())
        leak = auc.copy()
        leak["metric"] = "privleak"
        leak["value"] = (leak["value"] - auc_retrain) / auc_retrain * 100.0
        df = pd.concat([df, leak], ignore_index=True)
    return df.sort_values(COLUMNS[:7], kind="stable").reset_index(drop=True)


def aggregate(evals: Sequence[str | Path], auc_retrain: float | None, out: str | Path) -> pd.DataFrame:
    """Write the tidy table of one benchmark to ``out`` (CSV)."""
    df = tidy(evals, auc_retrain)
    _atomic_csv(df, out)
    return df


def optimizer_order(df: pd.DataFrame) -> list[str]:
    """Reference models first, then optimizers by grade (second, first, compressed, zeroth, hybrid)."""
    pairs = df[["optimizer", "grade"]].drop_duplicates()
    rank = {g: i for i, g in enumerate(GRADE_ORDER)}
    pairs = pairs.assign(r=pairs.grade.map(lambda g: rank.get(g, len(rank))))
    ref_rank = {"target": 0, "retrain": 1}
    pairs = pairs.assign(t=pairs.optimizer.map(lambda o: ref_rank.get(o, 2)))
    return list(pairs.sort_values(["r", "t", "optimizer"]).optimizer)


def summary(tables: Sequence[str | Path], out: str | Path) -> str:
    """Markdown: per benchmark, mean over seeds of every main metric before and after each attack."""
    parts = ["# Study summary", "", "Mean over seeds (± standard deviation where there are several).", ""]
    for table in tables:
        df = pd.read_csv(table)
        bench = df.benchmark.iloc[0]
        parts += [f"## {bench}", ""]
        metrics = [m for m in FORGET_METRICS + UTILITY_METRICS + ["privleak", "qcode_change"]
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return text


# ================================================================================================
# The paper's evidence: main tables with confidence intervals, quantization and relearning views,
# utility/forgetting trade-off, linear mode connectivity, hybrid ablation, and findings judged from
# the 95% confidence intervals. Every number below is computed from the tidy tables.
# ================================================================================================

LEVEL = 0.95
LOWER_IS_BETTER = {"verbmem_f", "knowmem_f", "wmdp_acc"}  # forget knowledge after unlearning
QUANT_ATTACKS = ["int8", "fp4", "nf4"]
FOUR_BIT = ["fp4", "nf4"]
METRIC_ORDER = ["verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mink_auc", "wmdp_acc", "mmlu_acc",
                "qcode_change"]
ATTACK_MARKERS = {"none": "o", "int8": "s", "fp4": "^", "nf4": "v"}
REF_LABELS = {"target": "Original (target)", "retrain": "Retrain"}

# One colour per optimizer name, keyed by name so that every figure agrees; a grade's optimizers share
# a hue family (reference greys, second order reds, first order blues, compressed greens, zeroth order
# purples, hybrid oranges). Names not listed take a shade of their grade's family from a stable hash.
FIXED_COLOURS = {
    "target": "#222222", "retrain": "#8c8c8c",
    "sophia": "#d62728",
    "adam": "#1f77b4", "adamw": "#6baed6", "sam": "#17becf", "rs": "#08306b",
    "signsgd": "#74c476", "signadam": "#2ca02c", "nbit_adam": "#006d2c", "adamw8bit": "#a1d99b",
    "zo": "#9467bd", "adazo": "#9467bd", "zo_sgd": "#c5b0d5",
    "hybrid": "#ff7f0e",
}
GRADE_CMAPS = {"reference": "Greys", "second": "Reds", "first": "Blues", "compressed": "Greens",
               "zeroth": "Purples", "hybrid": "Oranges"}


def colour(optimizer: str, grade: str | None = None) -> str:
    """The optimizer's colour (hex), the same in every figure."""
    if optimizer in FIXED_COLOURS:
        return FIXED_COLOURS[optimizer]
    import zlib

    import matplotlib
    from matplotlib.colors import to_hex

    cmap = matplotlib.colormaps[GRADE_CMAPS.get(grade or "", "Greys")]
    shade = 0.45 + 0.5 * (zlib.crc32(optimizer.encode()) % 97) / 96
    return to_hex(cmap(shade))


def palette(df: pd.DataFrame) -> dict[str, str]:
    """Optimizer -> colour for every optimizer of ``df`` (columns optimizer, grade), grade-ordered."""
    grades = dict(zip(df.optimizer, df.grade))
    return {o: colour(o, grades.get(o)) for o in optimizer_order(df[["optimizer", "grade"]])}


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, int]:
    """Mean, half-width of the ``level`` confidence interval (Student t, n - 1 degrees of freedom)
    and n. With one value there is no interval: the half-width is NaN."""
    import numpy as np
    from scipy import stats

    v = np.asarray([float(x) for x in values], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = float(v.mean())
    if n < 2:
        return m, math.nan, n
    hw = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return m, hw, n


def summarise(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean, 95% CI half-width and number of seeds of ``value`` per ``keys``."""
    rows = []
    for k, g in df.groupby(list(keys), sort=False, dropna=False):
        m, h, n = mean_ci(g.value)
        rows.append({**dict(zip(keys, k if isinstance(k, tuple) else (k,))), "mean": m, "ci95": h, "n": n})
    return pd.DataFrame(rows, columns=[*keys, "mean", "ci95", "n"])


def _fmt(m: float, h: float, digits: int = 1) -> str:
    if m != m:
        return ""
    return f"{m:.{digits}f}" + (f" ± {h:.{digits}f}" if h == h else "")


def metric_order(metrics: Sequence[str]) -> list[str]:
    """Main metrics in a fixed order, then each forget metric's relearned/held-out variants."""
    present = set(metrics)
    out = [m for m in METRIC_ORDER if m in present]
    for base in METRIC_ORDER:
        out += [f"{base}_{v}" for v in ("relearned", "heldout") if f"{base}_{v}" in present]
    return out + sorted(present - set(out))


def relearn_steps(attack: str) -> int:
    return 0 if attack == "none" else int(attack[len("relearn"):])


def row_keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, optimizer) rows of the main table: Original, Retrain, then each method's optimizers
    in grade order (second, first, compressed, zeroth, hybrid)."""
    order = optimizer_order(df)
    rank = {o: i for i, o in enumerate(order)}
    refs = [("none", o) for o in ("target", "retrain") if ((df.method == "none") & (df.optimizer == o)).any()]
    other = df[df.method != "none"][["method", "optimizer"]].drop_duplicates()
    keys = sorted(map(tuple, other.values), key=lambda k: (k[0], rank.get(k[1], 99), k[1]))
    return refs + keys


def row_label(method: str, optimizer: str) -> str:
    return REF_LABELS.get(optimizer, optimizer) if method == "none" else f"{method} / {optimizer}"


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per reference model and (method, optimizer); for every attack and metric
    the mean over seeds (``{metric}@{attack}``) and the 95% CI half-width (``..._ci95``, empty with
    one seed)."""
    s = summarise(df, ["method", "optimizer", "attack", "metric"]).set_index(["method", "optimizer", "attack", "metric"])
    grades = dict(zip(df.optimizer, df.grade))
    attacks = attack_order(df.attack.unique())
    metrics = metric_order(df.metric.unique())
    rows = []
    for method, opt in row_keys(df):
        seeds = df[(df.method == method) & (df.optimizer == opt)].seed.nunique()
        row = {"row": row_label(method, opt), "method": method, "optimizer": opt, "grade": grades[opt],
               "n_seeds": seeds}
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
    """The main table as markdown, one table per attack (rows as in ``main_table``)."""
    wide = main_table(df) if wide is None else wide
    bench = df.benchmark.iloc[0]
    n = int(wide.n_seeds.max())
    note = (f"Mean ± 95% confidence-interval half-width over {n} seeds (Student t)." if n > 1 else
            "One seed: means only, no confidence interval (add seeds for intervals).")
    parts = [f"# {bench}: main table", "", note,
             "Rows: the original (target) model, the retrain model, then each method's optimizers in "
             "grade order (second, first, compressed, zeroth, hybrid). Attack `none` is before any attack.", ""]
    for a in attack_order(df.attack.unique()):
        cols = [c for c in wide.columns if c.endswith(f"@{a}")]
        if not cols:
            continue
        metrics = [c.split("@")[0] for c in cols]
        sub = wide[wide[cols].notna().any(axis=1)]
        title = "before attack" if a == "none" else f"after {a}"
        parts += [f"## {title}", "", "| row | grade | " + " | ".join(metrics) + " |",
                  "|---|---|" + "---:|" * len(metrics)]
        for _, r in sub.iterrows():
            cells = [_fmt(r[c], r[f"{c}_ci95"]) for c in cols]
            parts.append(f"| {r['row']} | {r['grade']} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts) + "\n"


def _atomic_text(text: str, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)


def forget_metrics(df: pd.DataFrame) -> list[str]:
    return [m for m in ["knowmem_f", "verbmem_f", "wmdp_acc"] if m in set(df.metric)]


def utility_metric(df: pd.DataFrame) -> str | None:
    return next((m for m in ["knowmem_r", "mmlu_acc"] if m in set(df.metric)), None)


def quantization_table(df: pd.DataFrame) -> pd.DataFrame:
    """Forget knowledge after each quantization against before (per optimizer, grade-ordered): mean
    and CI of the value after the attack and of the per-seed change (after - before); qcode_change."""
    rows = []
    quants = [a for a in QUANT_ATTACKS if a in set(df.attack)]
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
                             "after": am, "after_ci95": ah, "change": dmn, "change_ci95": dh})
    return pd.DataFrame(rows)


def relearning_table(df: pd.DataFrame) -> pd.DataFrame:
    """Forget metrics (whole set, relearned and held-out parts) against relearning steps; step 0 is
    the unlearned model before any attack."""
    rel = [a for a in df.attack.unique() if a == "none" or str(a).startswith("relearn")]
    d = df[(df.method != "none") & df.attack.isin(rel)]
    bases = forget_metrics(df)
    metrics = [m for m in metric_order(d.metric.unique()) if m.split("_relearned")[0].split("_heldout")[0] in bases]
    d = d[d.metric.isin(metrics)]
    s = summarise(d, ["method", "optimizer", "grade", "metric", "attack"])
    s.insert(5, "steps", s.attack.map(relearn_steps))
    return s.sort_values(["method", "metric", "optimizer", "steps"]).reset_index(drop=True)


def report_tables(table: str | Path, out_main_csv: str | Path, out_main_md: str | Path,
                  out_quant: str | Path, out_relearn: str | Path) -> None:
    """The main table (CSV + markdown), the quantization table and the relearning-curve table."""
    df = pd.read_csv(table)
    wide = main_table(df)
    _atomic_csv(wide, out_main_csv)
    _atomic_text(main_table_markdown(df, wide), out_main_md)
    _atomic_csv(quantization_table(df), out_quant)
    _atomic_csv(relearning_table(df), out_relearn)


# ------------------------------------------------------------------------------------------ figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "svg.fonttype": "none"})
    return plt


def _save(fig, png: str | Path, svg: str | Path | None = None) -> None:
    for path in [p for p in (png, svg) if p is not None]:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)


def _methods(df: pd.DataFrame) -> list[str]:
    return sorted(m for m in df.method.unique() if m != "none")


def _grid(plt, nrows: int, ncols: int, w: float = 3.6, h: float = 2.9):
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return fig, axes


def _label(metric: str) -> str:
    for suffix, word in (("_heldout", " held-out part"), ("_relearned", " relearned part")):
        if metric.endswith(suffix):
            return METRIC_LABELS.get(metric[: -len(suffix)], metric[: -len(suffix)]) + "\n" + word.strip()
    return METRIC_LABELS.get(metric, metric)


def _opt_legend(fig, pal: dict[str, str], extra: list | None = None, title: str = "optimizer") -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", lw=2, label=REF_LABELS.get(o, o)) for o, c in pal.items()]
    fig.legend(handles=handles + (extra or []), loc="center left", bbox_to_anchor=(1.0, 0.5), title=title,
               frameon=False)


def quantization_figure(df: pd.DataFrame, png: str | Path, svg: str | Path | None = None) -> None:
    """Rows: methods; columns: forget metrics and qcode_change; x: attack (none, int8, fp4, nf4);
    one line per optimizer (mean and 95% CI over seeds); Original/Retrain dashed."""
    plt = _plt()
    attacks = [a for a in ["none", *QUANT_ATTACKS] if a in set(df.attack)]
    metrics = forget_metrics(df) + (["qcode_change"] if "qcode_change" in set(df.metric) else [])
    methods = _methods(df)
    pal = palette(df)
    fig, axes = _grid(plt, len(methods), len(metrics))
    bench = df.benchmark.iloc[0]
    for i, method in enumerate(methods):
        sub = df[df.method.isin([method, "none"])]
        opts = [o for o in pal if o in set(sub.optimizer)]
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            d = sub[(sub.metric == metric) & sub.attack.isin(attacks)]
            xs = [a for a in attacks if a in set(d.attack)]
            for k, o in enumerate(opts):
                s = summarise(d[d.optimizer == o], ["attack"]).set_index("attack")
                pts = [a for a in xs if a in s.index]
                if not pts:
                    continue
                x = [xs.index(a) + (k - (len(opts) - 1) / 2) * 0.05 for a in pts]
                ref = o in REF_LABELS
                ax.errorbar(x, s.loc[pts, "mean"], yerr=s.loc[pts, "ci95"].fillna(0), color=pal[o],
                            marker="o", ms=4, lw=1.2, capsize=2, ls="--" if ref else "-", alpha=0.8 if ref else 1)
            ax.set_xticks(range(len(xs)), xs)
            ax.set_ylabel(_label(metric))
            ax.set_title(f"{method}: {metric}")
            ax.grid(alpha=0.3)
    fig.suptitle(f"{bench}: forget knowledge before (none) and after weight quantization "
                 "(mean, 95% CI over seeds; lower = more robust unlearning)", y=1.02)
    _opt_legend(fig, pal)
    fig.tight_layout()
    _save(fig, png, svg)
    plt.close(fig)


def relearning_figure(df: pd.DataFrame, png: str | Path, svg: str | Path | None = None) -> None:
    """Rows: methods; columns: forget metrics on the whole forget set and on its held-out part;
    x: relearning steps (0 = no attack); one line per optimizer with its 95% CI band."""
    plt = _plt()
    rel = relearning_table(df)
    if rel.empty:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no relearning attack in this study", ha="center", va="center")
        ax.axis("off")
        _save(fig, png, svg)
        plt.close(fig)
        return
    cols = [m for b in forget_metrics(df) for m in (b, f"{b}_heldout") if m in set(rel.metric)]
    methods = _methods(df)
    pal = {o: c for o, c in palette(df).items() if o not in REF_LABELS}
    fig, axes = _grid(plt, len(methods), len(cols))
    refs = df[(df.method == "none") & (df.attack == "none")]
    for i, method in enumerate(methods):
        for j, metric in enumerate(cols):
            ax = axes[i][j]
            d = rel[(rel.method == method) & (rel.metric == metric)]
            for o in pal:
                s = d[d.optimizer == o].sort_values("steps")
                if s.empty:
                    continue
                ax.plot(s.steps, s["mean"], color=pal[o], marker="o", ms=3, lw=1.5)
                h = s.ci95.fillna(0)
                ax.fill_between(s.steps, s["mean"] - h, s["mean"] + h, color=pal[o], alpha=0.15, lw=0)
            for ref, ls in (("target", "--"), ("retrain", ":")):
                r = refs[(refs.optimizer == ref) & (refs.metric == metric)]
                if not r.empty:
                    ax.axhline(r.value.mean(), color=colour(ref), ls=ls, lw=1)
            ax.set_xlabel("relearning steps")
            ax.set_ylabel(_label(metric))
            ax.set_title(f"{method}: {metric}")
            ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color=colour("target"), ls="--", label="Original (target)"),
             Line2D([], [], color=colour("retrain"), ls=":", label="Retrain")]
    fig.suptitle(f"{df.benchmark.iloc[0]}: forget knowledge under relearning (mean, 95% CI band over seeds; "
                 "lower = more robust)", y=1.02)
    _opt_legend(fig, pal, extra)
    fig.tight_layout()
    _save(fig, png, svg)
    plt.close(fig)


def tradeoff_figure(df: pd.DataFrame, png: str | Path, svg: str | Path | None = None) -> None:
    """Utility against forget knowledge per optimizer (colour) and attack (marker), per method;
    a thin line joins each optimizer's point before attack to its points after each attack."""
    plt = _plt()
    fx = forget_metrics(df)[0] if forget_metrics(df) else None
    uy = utility_metric(df)
    methods = _methods(df)
    pal = palette(df)
    attacks = attack_order(df.attack.unique())
    rel = [a for a in attacks if a.startswith("relearn")]
    markers = {**ATTACK_MARKERS, **{a: m for a, m in zip(rel, ["D", "P", "X", "*", "h", "p"])}}
    fig, axes = _grid(plt, 1, len(methods), w=4.2, h=3.6)
    for j, method in enumerate(methods):
        ax = axes[0][j]
        sub = df[df.method.isin([method, "none"]) & df.metric.isin([fx, uy])]
        s = summarise(sub, ["optimizer", "attack", "metric"])
        for o in [o for o in pal if o in set(sub.optimizer)]:
            so = s[s.optimizer == o]
            pts = []
            for a in attacks:
                x = so[(so.attack == a) & (so.metric == fx)]
                y = so[(so.attack == a) & (so.metric == uy)]
                if x.empty or y.empty:
                    continue
                pts.append((a, x["mean"].item(), y["mean"].item(), x.ci95.item(), y.ci95.item()))
            for a, x, y, hx, hy in pts:
                ax.errorbar(x, y, xerr=0 if hx != hx else hx, yerr=0 if hy != hy else hy, color=pal[o],
                            marker=markers.get(a, "o"), ms=6, capsize=2, lw=0.8,
                            mfc=pal[o] if a == "none" else "white", mew=1.3)
            if pts:
                x0, y0 = pts[0][1], pts[0][2]
                for _, x, y, _, _ in pts[1:]:
                    ax.plot([x0, x], [y0, y], color=pal[o], lw=0.6, alpha=0.5)
        ax.set_xlabel(_label(fx) + "  (lower = more forgotten)")
        ax.set_ylabel(_label(uy) + "  (higher = better)")
        ax.set_title(f"{method}")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="k", marker=markers.get(a, "o"), ls="", mfc="k" if a == "none" else "white",
                    label=f"attack: {a}") for a in attacks]
    fig.suptitle(f"{df.benchmark.iloc[0]}: utility vs forgetting before and after attacks "
                 "(mean, 95% CI over seeds)", y=1.03)
    _opt_legend(fig, pal, extra, title="optimizer / attack")
    fig.tight_layout()
    _save(fig, png, svg)
    plt.close(fig)


def figures(table: str | Path, out_dir: str | Path) -> list[Path]:
    """The per-benchmark figures (PNG and SVG): quantization, relearning, utility/forgetting."""
    df = pd.read_csv(table)
    out = Path(out_dir)
    written = []
    for name, fn in (("quantization", quantization_figure), ("relearning", relearning_figure),
                     ("tradeoff", tradeoff_figure)):
        fn(df, out / f"{name}.png", out / f"{name}.svg")
        written += [out / f"{name}.png", out / f"{name}.svg"]
    return written


# ------------------------------------------------------------------------------------------ LMC

def lmc_barriers(lmc_csvs: Sequence[str | Path]) -> pd.DataFrame:
    """Per (benchmark, method, seed, optimizer, split): the loss barrier of the path from the
    reference solution, and the loss at both endpoints."""
    from .lmc import barrier

    frames = [pd.read_csv(p) for p in lmc_csvs]
    frames = [f for f in frames if not f.empty]
    cols = ["benchmark", "method", "seed", "reference", "optimizer", "grade", "split", "barrier",
            "loss_ref", "loss_other"]
    if not frames:
        return pd.DataFrame(columns=cols)
    d = pd.concat(frames, ignore_index=True)
    rows = []
    for k, g in d.groupby(["benchmark", "method", "seed", "reference", "optimizer", "grade", "split"]):
        g = g.sort_values("alpha")
        rows.append({**dict(zip(cols[:7], k)), "barrier": barrier(list(g.alpha), list(g.loss)),
                     "loss_ref": g.loss.iloc[0], "loss_other": g.loss.iloc[-1]})
    return pd.DataFrame(rows, columns=cols)


def lmc_figure(lmc_csvs: Sequence[str | Path], png: str | Path, svg: str | Path | None,
               barriers_out: str | Path) -> None:
    """Rows: methods; columns: forget and retain loss along (1-a) theta_ref + a theta_other; one line
    per optimizer (mean over seeds, 95% CI band). Also writes the barrier table."""
    plt = _plt()
    frames = [pd.read_csv(p) for p in lmc_csvs]
    frames = [f for f in frames if not f.empty]
    _atomic_csv(lmc_barriers(lmc_csvs), barriers_out)
    if not frames:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no optimizer besides the reference: no path to draw", ha="center", va="center")
        ax.axis("off")
        _save(fig, png, svg)
        plt.close(fig)
        return
    d = pd.concat(frames, ignore_index=True)
    methods = sorted(d.method.unique())
    splits = [s for s in ("forget", "retain") if s in set(d.split)]
    pal = palette(d[["optimizer", "grade"]].drop_duplicates())
    ref = d.reference.iloc[0]
    fig, axes = _grid(plt, len(methods), len(splits))
    for i, method in enumerate(methods):
        for j, split in enumerate(splits):
            ax = axes[i][j]
            dm = d[(d.method == method) & (d.split == split)].rename(columns={"loss": "value"})
            for o in pal:
                s = summarise(dm[dm.optimizer == o], ["alpha"]).sort_values("alpha")
                if s.empty:
                    continue
                ax.plot(s.alpha, s["mean"], color=pal[o], marker="o", ms=3, lw=1.5)
                h = s.ci95.fillna(0)
                ax.fill_between(s.alpha, s["mean"] - h, s["mean"] + h, color=pal[o], alpha=0.15, lw=0)
            ax.set_xlabel(f"a   (0 = {ref} solution, 1 = other optimizer's)")
            ax.set_ylabel(f"mean NLL on {split} data (nats/token)")
            ax.set_title(f"{method}: {split} loss along the path")
            ax.grid(alpha=0.3)
    fig.suptitle(f"{d.benchmark.iloc[0]}: linear mode connectivity from the {ref} solution "
                 "(a bump above the endpoints = a barrier: different basins)", y=1.02)
    _opt_legend(fig, pal)
    fig.tight_layout()
    _save(fig, png, svg)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ ablation

def ablation_table(evals: Sequence[str | Path], optimizers: dict, out: str | Path,
                   auc_retrain: float | None = None) -> pd.DataFrame:
    """Tidy rows of the hybrid runs of the ablation (benchmark, method), with each entry's phase
    lengths n_fo, n_zo, the switching interval N (= n_fo when n_fo == n_zo, else empty) and the
    FO share n_fo / (n_fo + n_zo)."""
    df = tidy(evals, auc_retrain)
    df = df[df.method != "none"].copy()
    n_fo = {o: optimizers[o].get("n_fo", 20) for o in optimizers if optimizers[o].get("type") == "hybrid"}
    n_zo = {o: optimizers[o].get("n_zo", 20) for o in optimizers if optimizers[o].get("type") == "hybrid"}
    df = df[df.optimizer.isin(n_fo)]
    df["n_fo"] = df.optimizer.map(n_fo)
    df["n_zo"] = df.optimizer.map(n_zo)
    df["fo_share"] = df.n_fo / (df.n_fo + df.n_zo)
    df["interval"] = [f if f == z else math.nan for f, z in zip(df.n_fo, df.n_zo)]
    _atomic_csv(df, out)
    return df


def ablation_figure(table: str | Path, png: str | Path, svg: str | Path | None = None) -> None:
    """Rows: forget metrics; left: against the switching interval N (1:1 entries); right: against the
    FO share n_fo/(n_fo+n_zo); one line per attack (none, 4-bit, largest relearning), 95% CI bars."""
    plt = _plt()
    df = pd.read_csv(table)
    metrics = forget_metrics(df)
    attacks = attack_order(df.attack.unique())
    rel = [a for a in attacks if a.startswith("relearn")]
    shown = [a for a in ["none", *FOUR_BIT] if a in attacks] + rel[-1:]
    acol = {"none": "#000000", "int8": "#7f7f7f", "fp4": "#e377c2", "nf4": "#bcbd22"}
    acol.update({a: "#8c564b" for a in rel})
    fig, axes = _grid(plt, max(1, len(metrics)), 2, w=4.0, h=3.0)
    for i, metric in enumerate(metrics):
        for j, (xcol, xlabel) in enumerate((("interval", "switching interval N (n_fo = n_zo = N)"),
                                            ("fo_share", "FO share n_fo / (n_fo + n_zo)"))):
            ax = axes[i][j]
            d = df[(df.metric == metric) & df[xcol].notna()]
            for a in shown:
                # each entry its own point (1:1 entries with different N stay apart on the right)
                s = summarise(d[d.attack == a], [xcol] if j == 0 else [xcol, "optimizer"]).sort_values(xcol)
                if s.empty:
                    continue
                ax.errorbar(s[xcol], s["mean"], yerr=s.ci95.fillna(0), color=acol[a], marker="o", ms=4,
                            capsize=2, lw=1.2, label=a)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(_label(metric))
            ax.set_title(f"{metric} vs {'N' if j == 0 else 'FO:ZO ratio'}")
            ax.grid(alpha=0.3)
            if j == 0 and d[xcol].notna().any():
                ax.set_xticks(sorted(d[xcol].dropna().unique()))
            if j == 1:
                ticks = df[["fo_share", "n_fo", "n_zo"]].drop_duplicates().sort_values("fo_share")
                ax.set_xticks(ticks.fo_share, [f"{a}:{b}" for a, b in zip(ticks.n_fo, ticks.n_zo)], rotation=30)
            ax.legend(title="attack", fontsize=7)
    b, m = (df.benchmark.iloc[0], df.method.iloc[0]) if not df.empty else ("", "")
    fig.suptitle(f"Hybrid ablation ({b} / {m}): forget knowledge before and after attacks "
                 "(mean, 95% CI over seeds; lower = better)", y=1.02)
    fig.tight_layout()
    _save(fig, png, svg)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ findings

REPRODUCES, DOES_NOT, INCONCLUSIVE = "reproduces", "does not", "inconclusive at this scale"
NOT_TESTED = "not tested (optimizer not configured)"
SIGN_TYPES = {"signsgd", "signadam"}
ZO_TYPES = {"zo_sgd", "adazo"}


def compare(lower: Sequence[float], higher: Sequence[float], level: float = LEVEL) -> dict:
    """Judge the claim mean(lower) < mean(higher) from the two ``level`` confidence intervals:
    disjoint in the claim's direction = reproduces, disjoint against it = does not, overlapping (or
    fewer than two seeds on a side, so no interval) = inconclusive."""
    lm, lh, ln = mean_ci(lower, level)
    hm, hh, hn = mean_ci(higher, level)
    if ln < 2 or hn < 2:
        verdict = INCONCLUSIVE
    elif lm + lh < hm - hh:
        verdict = REPRODUCES
    elif lm - lh > hm + hh:
        verdict = DOES_NOT
    else:
        verdict = INCONCLUSIVE
    return {"lower_mean": lm, "lower_ci95": lh, "lower_n": ln, "higher_mean": hm, "higher_ci95": hh,
            "higher_n": hn, "verdict": verdict}


def overlap(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """Judge a claim of no difference: overlapping intervals = reproduces, disjoint = does not."""
    r = compare(a, b, level)
    if r["lower_n"] >= 2 and r["higher_n"] >= 2:
        r["verdict"] = REPRODUCES if r["verdict"] == INCONCLUSIVE else DOES_NOT
    return r


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a finding from its comparisons: reproduces when none goes against the claim and
    at least half reproduce it; does not when none supports it and at least half go against it;
    otherwise inconclusive."""
    n = len(verdicts)
    rep = sum(v == REPRODUCES for v in verdicts)
    no = sum(v == DOES_NOT for v in verdicts)
    if n and not no and 2 * rep >= n:
        return REPRODUCES
    if n and not rep and 2 * no >= n:
        return DOES_NOT
    return INCONCLUSIVE


def _roles(optimizers: dict, reference: str) -> dict[str, list[str]]:
    t = {n: s.get("type") for n, s in optimizers.items()}
    return {
        "reference": [reference] if reference in optimizers else [],
        "sign_rs": [n for n, s in optimizers.items()
                    if t[n] in SIGN_TYPES | {"rs"} or (t[n] == "nbit_adam" and s.get("bits") == 1)],
        "sign": [n for n, s in optimizers.items()
                 if t[n] in SIGN_TYPES or (t[n] == "nbit_adam" and s.get("bits") == 1)],
        "sophia": [n for n in optimizers if t[n] == "sophia"],
        "zo": [n for n in optimizers if t[n] in ZO_TYPES],
        "hybrid": [n for n in optimizers if t[n] == "hybrid"],
        "sam": [n for n in optimizers if t[n] == "sam"],
        "rs": [n for n in optimizers if t[n] == "rs"],
        "first_downgrades": [n for n in optimizers if t[n] in {"sam", "rs", "signsgd", "signadam", "nbit_adam",
                                                               "adamw8bit"}],
    }


def _vals(df: pd.DataFrame, method: str, opt: str, attack: str, metric: str) -> list[float]:
    d = df[(df.method == method) & (df.optimizer == opt) & (df.attack == attack) & (df.metric == metric)]
    return list(d.sort_values("seed").value)


def _pairs(tables: dict[str, pd.DataFrame], subjects: list[str], others: list[str] | None, attacks, metrics,
           methods_ok=None, subject_lower: bool = True) -> list[dict]:
    """Comparisons subject vs other for every benchmark, method, metric and attack where both ran.
    ``others`` None = every other unlearned optimizer of the benchmark (not of the subject's role)."""
    out = []
    for bench, df in tables.items():
        for method in _methods(df):
            if methods_ok is not None and method not in methods_ok:
                continue
            present = set(df[df.method == method].optimizer)
            for s in [s for s in subjects if s in present]:
                rivals = [o for o in (others if others is not None else sorted(present - set(subjects)))
                          if o in present and o != s]
                for metric in metrics(df):
                    for attack in attacks(df):
                        for o in rivals:
                            a, b = _vals(df, method, s, attack, metric), _vals(df, method, o, attack, metric)
                            if not a or not b:
                                continue
                            r = compare(a, b) if subject_lower else compare(b, a)
                            out.append({"context": f"{bench} / {method} / {metric} / {attack}", "subject": s,
                                        "other": o, **_sides(r, subject_lower)})
    return out


def _sides(r: dict, subject_lower: bool) -> dict:
    s, o = ("lower", "higher") if subject_lower else ("higher", "lower")
    return {"subject_mean": r[f"{s}_mean"], "subject_ci95": r[f"{s}_ci95"], "other_mean": r[f"{o}_mean"],
            "other_ci95": r[f"{o}_ci95"], "n": min(r["lower_n"], r["higher_n"]), "verdict": r["verdict"]}


def _forget_and_heldout(df: pd.DataFrame) -> list[str]:
    base = forget_metrics(df)
    return base + [f"{m}_heldout" for m in base if f"{m}_heldout" in set(df.metric)]


def _four_bit(df: pd.DataFrame) -> list[str]:
    return [a for a in FOUR_BIT if a in set(df.attack)]


def _last_relearn(df: pd.DataFrame) -> list[str]:
    rel = [a for a in attack_order(df.attack.unique()) if a.startswith("relearn")]
    return rel[-1:]


def findings(tables: dict[str, pd.DataFrame], optimizers: dict, methods: dict, reference: str,
             barriers: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None) -> list[dict]:
    """The paper's testable findings, each with its comparisons and a combined verdict.

    ``tables`` maps benchmark -> tidy table; ``optimizers``/``methods`` are the config entries (types
    and objectives pick the roles); ``reference`` is the first-order reference (Adam)."""
    R_ = _roles(optimizers, reference)
    fm = forget_metrics
    util = lambda df: [m for m in ["knowmem_r", "mmlu_acc"] if m in set(df.metric)]  # noqa: E731
    none = lambda df: ["none"]  # noqa: E731
    gd_npo = {m for m, s in methods.items() if s.get("objective") in ("grad_diff", "npo")}
    F: list[dict] = []

    def add(fid, claim, needs, comps, how, missing=NOT_TESTED):
        F.append({"id": fid, "claim": claim, "how": how, "comparisons": comps,
                  "verdict": (combine([c["verdict"] for c in comps]) if comps else
                              (missing if any(not R_[r] for r in needs) else "not tested (no comparable runs)"))})

    add("Q1", "After 4-bit quantization, signAdam, signSGD and RS keep less forget knowledge than Adam.",
        ["sign_rs", "reference"], _pairs(tables, R_["sign_rs"], R_["reference"], _four_bit, fm),
        f"forget metric after FP4/NF4: each sign/RS optimizer < {reference}")
    add("Q2", "Sophia (second order) is the least robust: the most forget knowledge after 4-bit quantization.",
        ["sophia"], _pairs(tables, R_["sophia"], None, _four_bit, fm, subject_lower=False),
        "forget metric after FP4/NF4: Sophia > every other optimizer")
    add("Q3", "Zeroth order keeps the least forget knowledge after 4-bit quantization.",
        ["zo"], _pairs(tables, R_["zo"], None, _four_bit, fm),
        "forget metric after FP4/NF4: ZO < every other optimizer")
    add("Q4", "... but zeroth order has the worst utility.",
        ["zo"], _pairs(tables, R_["zo"], None, none, util),
        "utility (KnowMem_r / MMLU) before attack: ZO < every other optimizer")
    add("Q5", "Hybrid (FO-ZO) is the most robust to 4-bit quantization.",
        ["hybrid"], _pairs(tables, R_["hybrid"], None, _four_bit, fm),
        "forget metric after FP4/NF4: hybrid < every other optimizer")
    add("Q6", "Hybrid beats SAM under 4-bit quantization.",
        ["hybrid", "sam"], _pairs(tables, R_["hybrid"], R_["sam"], _four_bit, fm),
        "forget metric after FP4/NF4: hybrid < SAM")
    add("R1", "After relearning, zeroth order keeps the least forget knowledge.",
        ["zo"], _pairs(tables, R_["zo"], None, _last_relearn, _forget_and_heldout),
        "forget metric (whole set and held-out part) after the longest relearning: ZO < every other optimizer")
    add("R2", "After relearning, hybrid keeps forget knowledge far below Adam for GradDiff and NPO.",
        ["hybrid", "reference"],
        _pairs(tables, R_["hybrid"], R_["reference"], _last_relearn, _forget_and_heldout, methods_ok=gd_npo),
        f"forget metric (whole set and held-out part) after the longest relearning, GradDiff/NPO: hybrid < {reference}")
    add("R3", "After relearning, first-order RS is the best of the first-order downgrades.",
        ["rs"], _pairs(tables, R_["rs"], [o for o in R_["first_downgrades"] if o not in R_["rs"]],
                       _last_relearn, _forget_and_heldout),
        "forget metric after the longest relearning: RS < SAM / sign / N-bit optimizers")
    comps = []
    if barriers is not None and not barriers.empty:
        for (bench, method, split), g in barriers.groupby(["benchmark", "method", "split"]):
            for s in [o for o in R_["sign"] if o in set(g.optimizer)]:
                for z in [o for o in R_["zo"] if o in set(g.optimizer)]:
                    r = compare(list(g[g.optimizer == s].sort_values("seed").barrier),
                                list(g[g.optimizer == z].sort_values("seed").barrier))
                    comps.append({"context": f"{bench} / {method} / {split} loss barrier", "subject": s,
                                  "other": z, **_sides(r, True)})
    add("L1", f"Linear mode connectivity: sign-optimizer solutions share {reference}'s basin, zeroth order's do not.",
        ["reference", "sign", "zo"], comps,
        f"loss barrier on the path from the {reference} solution (forget and retain data): sign < ZO")
    comps_ratio, comps_n = [], []
    if ablation is not None and not ablation.empty:
        entries = ablation[["optimizer", "n_fo", "n_zo"]].drop_duplicates()
        one = entries[entries.n_fo == entries.n_zo]
        off = entries[entries.n_fo != entries.n_zo]
        for bench, method in ablation[["benchmark", "method"]].drop_duplicates().values:
            d = ablation[(ablation.benchmark == bench) & (ablation.method == method)]
            attacks = ["none", *_four_bit(d), *_last_relearn(d)]
            for metric in forget_metrics(d):
                for attack in attacks:
                    for a in one.optimizer:
                        for b in off.optimizer:
                            r = compare(_vals(d, method, a, attack, metric), _vals(d, method, b, attack, metric))
                            if r["lower_n"] and r["higher_n"]:
                                comps_ratio.append({"context": f"{bench} / {method} / {metric} / {attack}",
                                                    "subject": a, "other": b, **_sides(r, True)})
                    ones = list(one.optimizer)
                    for i, a in enumerate(ones):
                        for b in ones[i + 1:]:
                            r = overlap(_vals(d, method, a, attack, metric), _vals(d, method, b, attack, metric))
                            if r["lower_n"] and r["higher_n"]:
                                comps_n.append({"context": f"{bench} / {method} / {metric} / {attack}",
                                                "subject": a, "other": b, **_sides(r, True)})
    add("A1", "Ablation: a 1:1 FO:ZO ratio is best.", [], comps_ratio,
        "forget metric before/after attacks: each 1:1 hybrid < each other-ratio hybrid",
        missing="not tested (no ablation configured)")
    add("A2", "Ablation: the switching interval N hardly matters.", [], comps_n,
        "1:1 hybrids with different N: overlapping 95% CIs = reproduces (a claim of no difference), disjoint = does not",
        missing="not tested (no ablation configured)")
    for f in F:
        if not f["comparisons"] and f["id"] in ("A1", "A2") and (ablation is None or ablation.empty):
            f["verdict"] = "not tested (no ablation configured)"
    return F


def summary_table_markdown(df: pd.DataFrame) -> str:
    """Compact table: key forget and utility metrics before attack, after NF4 (or FP4) and after the
    longest relearning; mean ± 95% CI half-width."""
    attacks = ["none", *(["nf4"] if "nf4" in set(df.attack) else _four_bit(df)[:1]), *_last_relearn(df)]
    metrics = [m for m in forget_metrics(df) + [utility_metric(df), "privleak"] if m and m in set(df.metric)]
    s = summarise(df, ["method", "optimizer", "attack", "metric"]).set_index(["method", "optimizer", "attack", "metric"])
    cols = [(m, a) for a in attacks for m in metrics
            if ((s.index.get_level_values("attack") == a) & (s.index.get_level_values("metric") == m)).any()]
    lines = ["| row | " + " | ".join(f"{m} ({a})" for m, a in cols) + " |", "|---|" + "---:|" * len(cols)]
    for method, opt in row_keys(df):
        cells = [(_fmt(s.loc[(method, opt, a, m), "mean"], s.loc[(method, opt, a, m), "ci95"])
                  if (method, opt, a, m) in s.index else "–") for m, a in cols]
        lines.append(f"| {row_label(method, opt)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings_markdown(tables: dict[str, pd.DataFrame], found: list[dict], figures: Sequence[str] = ()) -> str:
    seeds = max(df.seed.nunique() for df in tables.values())
    parts = ["# Findings of the study, judged from its own tables", "",
             "Generated by `python -m unlearning findings` from `results/tables/*.csv`; do not edit by hand.", "",
             f"Means over {seeds} seed(s) ± the half-width of the 95% confidence interval (Student t). "
             "A comparison *reproduces* when the two intervals are disjoint in the paper's direction, *does "
             "not* when they are disjoint against it, and is *inconclusive* when they overlap (always so "
             "with one seed). A finding reproduces when none of its comparisons goes against it and at least "
             "half reproduce; it does not when none supports it and at least half go against it; otherwise "
             "it is inconclusive at this scale.", "", "## Verdicts", "",
             "| | finding | verdict | comparisons (reproduce / against / overlap) |", "|---|---|---|---|"]
    for f in found:
        v = [c["verdict"] for c in f["comparisons"]]
        counts = (f"{v.count(REPRODUCES)} / {v.count(DOES_NOT)} / {v.count(INCONCLUSIVE)}" if v else "–")
        parts.append(f"| {f['id']} | {f['claim']} | **{f['verdict']}** | {counts} |")
    parts += ["", "## Summary tables", ""]
    for bench, df in tables.items():
        parts += [f"### {bench}", "", summary_table_markdown(df), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figures] + [""]
    parts += ["## Evidence per finding", ""]
    for f in found:
        parts += [f"### {f['id']}: {f['claim']}", "", f"Verdict: **{f['verdict']}**. Test: {f['how']}.", ""]
        if f["comparisons"]:
            parts += ["| context | optimizer | value | compared with | value | verdict |", "|---|---|---:|---|---:|---|"]
            for c in f["comparisons"]:
                parts.append(f"| {c['context']} | {c['subject']} | {_fmt(c['subject_mean'], c['subject_ci95'], 2)} "
                             f"| {c['other']} | {_fmt(c['other_mean'], c['other_ci95'], 2)} | {c['verdict']} |")
            parts.append("")
    return "\n".join(parts) + "\n"


def write_findings(tables: Sequence[str | Path], optimizers: dict, methods: dict, reference: str,
                   out: str | Path, barriers: Sequence[str | Path] = (), ablation: str | Path | None = None,
                   figures: Sequence[str | Path] = (), figure_names: Sequence[str] = ()) -> list[dict]:
    """findings.md next to copies of the main figures (PNG) in ``out``'s folder."""
    import shutil

    dfs = {}
    for t in tables:
        df = pd.read_csv(t)
        dfs[df.benchmark.iloc[0]] = df
    bar = [pd.read_csv(b) for b in barriers]
    bar_df = pd.concat(bar, ignore_index=True) if bar else None
    abl = pd.read_csv(ablation) if ablation else None
    found = findings(dfs, optimizers, methods, reference, bar_df, abl)
    out = Path(out)
    names = list(figure_names) or [Path(f).name for f in figures]
    for src_path, name in zip(figures, names):
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_path, out.parent / name)
    _atomic_text(findings_markdown(dfs, found, names), out)
    return found
