"""The hybrid ablation: forget metrics against the FO:ZO ratio and the switching interval N."""

from __future__ import annotations

import math
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..commands import Stage, json_arg
from ..registry import four_bit
from .files import atomic_csv
from .stats import summarise
from .style import attack_styles, grid, label, pyplot, save
from .tidy import attack_order, forget_metrics, relearn_attacks, tidy


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
    atomic_csv(df, out)
    return df


def ablation_figure(table: str | Path, png: str | Path, svg: str | Path | None = None) -> None:
    """Rows: forget metrics; left: against the switching interval N (1:1 entries); right: against the
    FO share n_fo/(n_fo+n_zo); one line per attack (none, 4-bit, largest relearning), 95% CI bars."""
    plt = pyplot()
    df = pd.read_csv(table)
    metrics = forget_metrics(df)
    attacks = attack_order(df.attack.unique())
    rel = relearn_attacks(attacks)
    shown = [a for a in ["none", *four_bit()] if a in attacks] + rel[-1:]
    _, acol = attack_styles(attacks)
    fig, axes = grid(plt, max(1, len(metrics)), 2, w=4.0, h=3.0)
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
            ax.set_ylabel(label(metric))
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
    save(fig, png, svg)
    plt.close(fig)


def ablation(evals: Sequence[str | Path], optimizers: dict, table: str | Path, png: str | Path,
             svg: str | Path | None = None, auc_retrain: float | None = None) -> None:
    """The ablation table, then its figure."""
    ablation_table(evals, optimizers, table, auc_retrain)
    ablation_figure(table, png, svg)


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--optimizers", type=json_arg, required=True, help="optimizer entries (JSON)")
    p.add_argument("--auc-retrain", type=float, default=None)
    p.add_argument("--table", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--svg", default=None)


def _run(a: Namespace) -> None:
    ablation(a.inputs, a.optimizers, a.table, a.png, a.svg, a.auc_retrain)


STAGE = Stage(_arguments, _run, needs_torch=False)
