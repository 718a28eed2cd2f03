"""Figure: utility against forget knowledge before and after each attack, per method."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .stats import summarise
from .style import attack_styles, grid, label, opt_legend, palette, pyplot, save
from .tidy import attack_order, forget_metrics, methods, utility_metric


def tradeoff_figure(df: pd.DataFrame, png: str | Path, svg: str | Path | None = None) -> None:
    """Utility against forget knowledge per optimizer (colour) and attack (marker), per method;
    a thin line joins each optimizer's point before attack to its points after each attack."""
    plt = pyplot()
    fx = forget_metrics(df)[0] if forget_metrics(df) else None
    uy = utility_metric(df)
    cols = methods(df)
    pal = palette(df)
    attacks = attack_order(df.attack.unique())
    markers, _ = attack_styles(attacks)
    fig, axes = grid(plt, 1, len(cols), w=4.2, h=3.6)
    for j, method in enumerate(cols):
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
        ax.set_xlabel(label(fx) + "  (lower = more forgotten)")
        ax.set_ylabel(label(uy) + "  (higher = better)")
        ax.set_title(f"{method}")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="k", marker=markers.get(a, "o"), ls="", mfc="k" if a == "none" else "white",
                    label=f"attack: {a}") for a in attacks]
    fig.suptitle(f"{df.benchmark.iloc[0]}: utility vs forgetting before and after attacks "
                 "(mean, 95% CI over seeds)", y=1.03)
    opt_legend(fig, pal, extra, title="optimizer / attack")
    fig.tight_layout()
    save(fig, png, svg)
    plt.close(fig)
