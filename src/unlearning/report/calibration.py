"""The calibration's outputs a reader checks: results/tables/calibration.csv (one row per grid point)
and, per benchmark, the tuning curves (forget metric against utility, one line per optimizer, the
chosen point marked, the target's and retrain model's levels drawn)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..calibration import groups, status, worst
from ..commands import Stage
from .files import atomic_csv
from .style import colour, grid, label, pyplot, save

COLUMNS = ["benchmark", "method", "optimizer", "grade", "seed", "scale", "forget_metric", "forget", "utility_metric",
           "utility", "qualifies", "chosen", "status", "gap", "at_grid_edge", "threshold", "retrain_forget",
           "target_forget", "criterion", "seeds", "stop_step", "forget_levels"]


def load(choices: Sequence[str | Path]) -> list[dict]:
    """The choice records (stages/calibrate.py), in the order given."""
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in choices]


def table(records: Sequence[dict]) -> pd.DataFrame:
    """Tidy: one row per benchmark, method, optimizer, choice and grid multiplier; ``chosen`` marks the
    multiplier the study runs and ``status`` whether it met the criterion (``not reached``: the
    closest point, taken because none did; ``overshot``: an early-stopped run whose matching state lay
    more than the margin below the retrain level). ``seed`` is the study seed a choice is for under
    `calibration.seeds: each` (empty when every seed runs one choice); ``seeds`` the seeds a point
    averages. Early-stopped ladders add each run's ``stop_step`` and every forget metric the criterion
    bounds (``forget_levels``; MUSE's VerbMem_f too)."""
    rows = []
    for r in records:
        for g in groups(r):
            for p in g["points"]:
                rows.append({
                    "benchmark": r["benchmark"], "method": r["method"], "optimizer": r["optimizer"],
                    "grade": r["grade"], "seed": g["seed"], "scale": p["scale"],
                    "forget_metric": r["forget_metric"], "forget": p["forget"],
                    "utility_metric": r["utility_metric"], "utility": p["utility"], "qualifies": p["qualifies"],
                    "chosen": p["scale"] == g["scale"], "status": status(g), "gap": g["gap"],
                    "at_grid_edge": g["at_grid_edge"], "threshold": g["threshold"],
                    "retrain_forget": g["retrain_forget"], "target_forget": g["target_forget"],
                    "criterion": r["criterion"], "seeds": " ".join(str(s) for s in p["seeds"]),
                    # early stopping: the step each seed's run stopped at (empty: it never reached)
                    "stop_step": " ".join("" if x is None else str(x) for x in p.get("stop_step", [])),
                    "forget_levels": " ".join(f"{k}={v:.1f}" for k, v in p.get("levels", {}).items()),
                })
    return pd.DataFrame(rows, columns=COLUMNS).astype({"seed": "Int64"})


def choices(csv: str | Path | pd.DataFrame | None) -> dict[tuple[str, str, str], dict]:
    """(benchmark, method, optimizer) -> the chosen point's row of a calibration table (CSV path or
    DataFrame): ``scale``, ``status``, ``at_grid_edge``, ``forget``, ``utility``... Empty for None.
    With one choice per seed (`calibration.seeds: each`), ``scale`` is the seeds' multipliers in seed
    order ("1/3/3"), ``status`` "not reached" when any seed's choice was, and ``by_seed`` holds the
    rows."""
    if csv is None:
        return {}
    df = pd.read_csv(csv) if not isinstance(csv, pd.DataFrame) else csv
    picked = df[df.chosen.astype(bool)]
    out = {}
    for key, g in picked.groupby(["benchmark", "method", "optimizer"], sort=False):
        rows = [r._asdict() for r in g.sort_values("seed").itertuples(index=False)]
        if len(rows) == 1:
            out[key] = rows[0]
            continue
        out[key] = {**rows[0], "scale": "/".join(f"{r['scale']:g}" for r in rows),
                    "status": worst(r["status"] for r in rows),
                    "at_grid_edge": any(bool(r["at_grid_edge"]) for r in rows), "by_seed": rows}
    return out


NOT_REACHED_MARK = "†"
NOT_REACHED_NOTE = (f"{NOT_REACHED_MARK} calibration not reached: no grid multiplier met the criterion, and the "
                    "one with the lowest forget metric was run (results/tables/calibration.csv).")
OVERSHOT_MARK = "‡"
OVERSHOT_NOTE = (f"{OVERSHOT_MARK} calibration overshot: the run stopped at its first check matching the retrain "
                 "model, but every forget metric there lay more than the margin below the retrain level "
                 "(results/tables/calibration.csv).")
MARKS = {"not reached": NOT_REACHED_MARK, "overshot": OVERSHOT_MARK}


def mark(name: str, choice: dict | None) -> str:
    """``name`` with the not-reached (†) or overshot (‡) mark when its calibration was either."""
    flag = MARKS.get(choice["status"]) if choice is not None else None
    return f"{name} {flag}" if flag else name


def markdown(csv: str | Path | pd.DataFrame) -> str:
    """The choices as markdown, one table per benchmark and method (a row per seed when each seed
    chose by itself)."""
    df = pd.read_csv(csv) if not isinstance(csv, pd.DataFrame) else csv
    per_seed = df.seed.notna().any() if "seed" in df.columns else False
    parts = []
    for (bench, method), g in df[df.chosen.astype(bool)].groupby(["benchmark", "method"], sort=False):
        first = g.iloc[0]
        if per_seed:
            lows = g.groupby("seed").first()
            ceiling = (f"{first.forget_metric} <= {lows.threshold.min():.1f}-{lows.threshold.max():.1f} by seed")
            if first.criterion == "match_retrain":
                ceiling += " (that seed's retrain model + margin)"
            target = f"{lows.target_forget.min():.1f}-{lows.target_forget.max():.1f} by seed"
        else:
            ceiling = f"{first.forget_metric} <= {first.threshold:.1f}"
            if first.criterion == "match_retrain":
                ceiling += f" (retrain {first.retrain_forget:.1f} + margin)"
            target = f"{first.target_forget:.1f}"
        seed_head, seed_rule = ("seed | ", "---:|") if per_seed else ("", "")
        parts += [f"**{bench} / {method}**: criterion {ceiling}, best {first.utility_metric}; target "
                  f"{first.forget_metric} {target}.", "",
                  f"| optimizer | grade | {seed_head}multiplier | grid | {first.forget_metric} | "
                  f"{first.utility_metric} | criterion |", f"|---|---|{seed_rule}---:|---|---:|---:|---|"]
        for r in g.itertuples(index=False):
            grid = ", ".join(f"{x:g}" for x in sorted(set(df[(df.benchmark == bench) & (df.method == method)
                                                             & (df.optimizer == r.optimizer)].scale)))
            edge = ", grid edge" if r.at_grid_edge else ""
            seed_cell = f"{int(r.seed)} | " if per_seed else ""
            parts.append(f"| {r.optimizer} | {r.grade} | {seed_cell}x{r.scale:g} | {grid} | {r.forget:.1f} | "
                         f"{r.utility:.1f} | {r.status}{edge} |")
        parts.append("")
    return "\n".join(parts)


def figure(records: Sequence[dict], png: str | Path, svg: str | Path | None = None) -> None:
    """Tuning curves of one benchmark: a panel per method, a line per optimizer through its grid
    points (ordered by multiplier, each labelled with it), the chosen point filled (a cross where it
    did not meet the criterion), the ceiling shaded and the target and retrain levels drawn."""
    plt = pyplot()
    methods = sorted({r["method"] for r in records})
    fig, axes = grid(plt, 1, len(methods), w=4.4, h=3.6)
    for j, method in enumerate(methods):
        ax = axes[0][j]
        recs = [r for r in records if r["method"] == method]
        first = recs[0]
        chosen_groups = []
        for r in recs:
            c = colour(r["optimizer"], r["grade"])
            for k, g in enumerate(groups(r)):  # one curve per choice: per seed under `seeds: each`
                pts = sorted(g["points"], key=lambda p: p["scale"])
                ax.plot([p["forget"] for p in pts], [p["utility"] for p in pts], color=c, lw=1, marker="o", ms=3,
                        mfc="white", label=r["optimizer"] if k == 0 else None, alpha=1.0 if g["seed"] is None else 0.6)
                for p in pts:
                    ax.annotate(f"x{p['scale']:g}", (p["forget"], p["utility"]), fontsize=6, color=c,
                                xytext=(2, 2), textcoords="offset points")
                best = next(p for p in pts if p["scale"] == g["scale"])
                ax.plot(best["forget"], best["utility"], color=c, marker="o" if g["reached"] else "X", ms=8,
                        ls="", mec="k", mew=0.6)
                chosen_groups.append(g)
        # the reference levels of every choice (one per seed when each seed chose by itself)
        for key, style, name in (("retrain_forget", dict(color="#8c8c8c", ls="--"), "retrain"),
                                 ("target_forget", dict(color="#222222", ls=":"), "target")):
            for k, x in enumerate(sorted({g[key] for g in chosen_groups if g.get(key) is not None})):
                ax.axvline(x, lw=1, label=name if k == 0 else None, **style)
        for y in sorted({g["target_utility"] for g in chosen_groups if g.get("target_utility") is not None}):
            ax.axhline(y, color="#222222", ls=":", lw=0.6)
        ceiling = min(g["threshold"] for g in chosen_groups)
        ax.axvspan(ax.get_xlim()[0], ceiling, color="#2ca02c", alpha=0.08, lw=0,
                   label="meets the criterion" + (" (every seed)" if len(chosen_groups) > len(recs) else ""))
        ax.set_xlabel(label(first["forget_metric"]) + "  (lower = more forgotten)")
        ax.set_ylabel(label(first["utility_metric"]) + "  (higher = better)")
        ax.set_title(method)
        ax.grid(alpha=0.3)
    legend: dict = {}  # every panel's lines, once each (the ablation's entries run on one method only)
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    fig.legend(list(legend.values()), list(legend), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               title="optimizer (filled: chosen;\nX: criterion not reached)")
    per_seed = any("by_seed" in r for r in records)
    fig.suptitle(f"{records[0]['benchmark']}: learning-rate calibration (grid multipliers, unattacked, "
                 + ("a curve per seed)" if per_seed else "mean over calibration seeds)"), y=1.03)
    fig.tight_layout()
    save(fig, png, svg)
    plt.close(fig)


def report(choices: Sequence[str | Path], csv: str | Path | None, figures: Sequence[str] = ()) -> pd.DataFrame:
    """Write the calibration table to ``csv`` (when given) and, for each ``BENCH=PNG`` of ``figures``,
    that benchmark's tuning curves (SVG beside the PNG)."""
    records = load(choices)
    df = table(records)
    if csv is not None:
        atomic_csv(df, csv)
    for item in figures:
        bench, _, png = item.partition("=")
        recs = [r for r in records if r["benchmark"] == bench]
        if not recs:
            raise ValueError(f"calibration-report: no choices for benchmark {bench!r}")
        figure(recs, png, Path(png).with_suffix(".svg"))
    return df


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--choices", nargs="+", required=True)
    p.add_argument("--csv", default=None, help="the calibration table (CSV)")
    p.add_argument("--figures", nargs="*", default=[], help="BENCH=PNG: one figure per benchmark (SVG beside it)")


STAGE = Stage(_arguments, lambda a: report(a.choices, a.csv, a.figures), needs_torch=False)
