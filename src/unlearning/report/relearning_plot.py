"""Figure: forget knowledge against relearning steps, per method and optimizer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .style import colour, grid, label, opt_legend, palette, placeholder, pyplot, save
from .tables import relearning_table
from .tidy import REF_LABELS, forget_metrics, methods


def relearning_figure(df: pd.DataFrame, png: str | Path, svg: str | Path | None = None) -> None:
    """Rows: methods; columns: forget metrics on the whole forget set and on its held-out part;
    x: relearning steps (0 = no attack); one line per optimizer with its 95% CI band."""
    plt = pyplot()
    rel = relearning_table(df)
    if rel.empty:
        placeholder(plt, "no relearning attack in this study", png, svg)
        return
    cols = [m for b in forget_metrics(df) for m in (b, f"{b}_heldout") if m in set(rel.metric)]
    rows = methods(df)
    pal = {o: c for o, c in palette(df).items() if o not in REF_LABELS}
    fig, axes = grid(plt, len(rows), len(cols))
    refs = df[(df.method == "none") & (df.attack == "none")]
    for i, method in enumerate(rows):
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
            ax.set_ylabel(label(metric))
            ax.set_title(f"{method}: {metric}")
            ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color=colour("target"), ls="--", label="Original (target)"),
             Line2D([], [], color=colour("retrain"), ls=":", label="Retrain")]
    fig.suptitle(f"{df.benchmark.iloc[0]}: forget knowledge under relearning (mean, 95% CI band over seeds; "
                 "lower = more robust)", y=1.02)
    opt_legend(fig, pal, extra)
    fig.tight_layout()
    save(fig, png, svg)
    plt.close(fig)
