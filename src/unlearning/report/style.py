"""What every figure shares: one colour per optimizer, matplotlib's set-up, the grid of panels,
axis labels, the optimizer legend and atomic saving (PNG + SVG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..registry import ATTACKS, STAGE_ATTACKS, attack_order, stage_attack
from .tidy import METRIC_LABELS, REF_LABELS, optimizer_order


def attack_styles(attacks: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(marker, colour) of each attack in ``attacks`` (registry.ATTACKS; a stage attack's settings take
    its markers in setting order and share its colour)."""
    markers = {name: a.marker for name, a in ATTACKS.items()}
    colours = {name: a.colour for name, a in ATTACKS.items()}
    for prefix, entry in STAGE_ATTACKS.items():
        ordered = [a for a in attack_order(attacks) if (stage_attack(a) or ("",))[0] == prefix]
        markers.update(zip(ordered, entry.markers))
        colours.update({a: entry.colour for a in ordered})
    return markers, colours

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


def pyplot():
    """matplotlib.pyplot on the Agg backend with the report's font sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "svg.fonttype": "none"})
    return plt


def save(fig, png: str | Path, svg: str | Path | None = None) -> None:
    """Save ``fig`` as PNG (and SVG), each through a temporary file renamed into place."""
    for path in [p for p in (png, svg) if p is not None]:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)


def grid(plt, nrows: int, ncols: int, w: float = 3.6, h: float = 2.9):
    """A figure of ``nrows`` x ``ncols`` panels of ``w`` x ``h`` inches (axes always 2-D)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return fig, axes


def label(metric: str) -> str:
    """Axis label of a metric (its relearned/held-out parts on a second line)."""
    for suffix, word in (("_heldout", " held-out part"), ("_relearned", " relearned part")):
        if metric.endswith(suffix):
            return METRIC_LABELS.get(metric[: -len(suffix)], metric[: -len(suffix)]) + "\n" + word.strip()
    return METRIC_LABELS.get(metric, metric)


def opt_legend(fig, pal: dict[str, str], extra: list | None = None, title: str = "optimizer") -> None:
    """One legend right of the panels: a line per optimizer of ``pal``, then ``extra`` handles."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", lw=2, label=REF_LABELS.get(o, o)) for o, c in pal.items()]
    fig.legend(handles=handles + (extra or []), loc="center left", bbox_to_anchor=(1.0, 0.5), title=title,
               frameon=False)


def placeholder(plt, text: str, png: str | Path, svg: str | Path | None = None) -> None:
    """A small figure saying why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    save(fig, png, svg)
    plt.close(fig)
