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


def figures(table: str | Path, out_dir: str | Path) -> list[Path]:
    """Bar charts of each forget and utility metric per optimizer, one bar per attack (mean and
    standard error over seeds), one PNG per method and metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = pd.read_csv(table)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    written = []
    attacks = attack_order(df.attack.unique())
    cmap = plt.get_cmap("viridis")
    colours = {a: cmap(i / max(1, len(attacks) - 1)) for i, a in enumerate(attacks)}
    for method in sorted(m for m in df.method.unique() if m != "none"):
        sub = df[df.method.isin([method, "none"])]
        for metric in [m for m in FORGET_METRICS + UTILITY_METRICS if m in set(sub.metric)]:
            d = sub[sub.metric == metric]
            opts = [o for o in optimizer_order(d) if o in set(d.optimizer)]
            fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(opts)), 4))
            width = 0.8 / len(attacks)
            for i, atk in enumerate(attacks):
                g = d[d.attack == atk].groupby("optimizer").value
                mean, sem = g.mean(), g.sem().fillna(0)
                x = np.arange(len(opts)) + (i - (len(attacks) - 1) / 2) * width
                ax.bar(x, [mean.get(o, np.nan) for o in opts], width, yerr=[sem.get(o, 0) for o in opts],
                       color=colours[atk], label=atk, capsize=2)
            ax.set_xticks(np.arange(len(opts)), opts, rotation=30, ha="right")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.set_title(f"{d.benchmark.iloc[0]} / {method}: {metric} by optimizer and attack")
            ax.legend(title="attack", fontsize=7, ncol=2)
            fig.tight_layout()
            path = tmp / f"{method}_{metric}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(out / path.name)
    import shutil

    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return written


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
