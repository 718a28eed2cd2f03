"""Linear mode connectivity: loss along the paths from the reference solution, and the barriers."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..commands import Stage
from .files import atomic_csv
from .stats import summarise
from .style import grid, opt_legend, palette, placeholder, pyplot, save


def lmc_barriers(lmc_csvs: Sequence[str | Path]) -> pd.DataFrame:
    """Per (benchmark, method, seed, optimizer, split): the loss barrier of the path from the
    reference solution, and the loss at both endpoints."""
    from ..lmc import barrier

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
    plt = pyplot()
    frames = [pd.read_csv(p) for p in lmc_csvs]
    frames = [f for f in frames if not f.empty]
    atomic_csv(lmc_barriers(lmc_csvs), barriers_out)
    if not frames:
        placeholder(plt, "no optimizer besides the reference: no path to draw", png, svg)
        return
    d = pd.concat(frames, ignore_index=True)
    methods = sorted(d.method.unique())
    splits = [s for s in ("forget", "retain") if s in set(d.split)]
    pal = palette(d[["optimizer", "grade"]].drop_duplicates())
    ref = d.reference.iloc[0]
    fig, axes = grid(plt, len(methods), len(splits))
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
    opt_legend(fig, pal)
    fig.tight_layout()
    save(fig, png, svg)
    plt.close(fig)


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="*", default=[])
    p.add_argument("--png", required=True)
    p.add_argument("--svg", default=None)
    p.add_argument("--barriers", required=True)


STAGE = Stage(_arguments, lambda a: lmc_figure(a.inputs, a.png, a.svg, a.barriers), needs_torch=False)
