"""Figure: forget knowledge before and after each weight quantization, per method and optimizer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..registry import quantizations
from .stats import summarise
from .style import grid, label, opt_legend, palette, pyplot, save
from .tidy import REF_LABELS, forget_metrics, methods


def quantization_figure(df: pd.DataFrame, png: str | Path, svg: str | Path | None = None) -> None:
    """Rows: methods; columns: forget metrics and qcode_change; x: attack (none, int8, fp4, nf4);
    one line per optimizer (mean and 95% CI over seeds); Original/Retrain dashed."""
    plt = pyplot()
    attacks = [a for a in ["none", *quantizations()] if a in set(df.attack)]
    metrics = forget_metrics(df) + (["qcode_change"] if "qcode_change" in set(df.metric) else [])
    rows = methods(df)
    pal = palette(df)
    fig, axes = grid(plt, len(rows), len(metrics))
    bench = df.benchmark.iloc[0]
    for i, method in enumerate(rows):
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
            ax.set_ylabel(label(metric))
            ax.set_title(f"{method}: {metric}")
            ax.grid(alpha=0.3)
    fig.suptitle(f"{bench}: forget knowledge before (none) and after weight quantization "
                 "(mean, 95% CI over seeds; lower = more robust unlearning)", y=1.02)
    opt_legend(fig, pal)
    fig.tight_layout()
    save(fig, png, svg)
    plt.close(fig)
