"""The onset scan's figure and README paragraph (bench/onset.py writes the scan's JSON; this module reads
it and imports no torch).

``figure``: recovery under each quantizer (after - before, points of the scan's first metric) against
the update's size in that quantizer's bins, one line per width, a panel per quantizer (columns) and
optimizer entry (rows). ``onset_block``: the README block from the recorded scan
(docs/measurements/data/onset.json, scripts/record_measurement.py).
"""

from __future__ import annotations

from pathlib import Path

FIGURE = Path("docs") / "measurements" / "onset.png"  # the committed figure, relative to the repository root
COMMAND = "unlearning onset-scan --configfile configs/onset.yaml --out results/onset"


def figure(result: dict, path: str | Path) -> Path:
    """Draw the scan ``result`` (bench/onset.py's JSON) to ``path`` (PNG, small) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = result["config"]
    quants, metric = config["quantizers"], config["metrics"][0]
    names = list(config["optimizers"])
    widths = [w["width"] for w in result["widths"]]
    colours = plt.get_cmap("viridis")
    fig, axes = plt.subplots(len(names), len(quants), figsize=(2.3 * len(quants), 2.0 * len(names) + 0.4),
                             sharex=True, sharey=True, squeeze=False)
    for i, name in enumerate(names):
        for j, q in enumerate(quants):
            ax = axes[i][j]
            ax.axhline(0, color="#999999", lw=0.6)
            ax.axvline(1, color="#999999", lw=0.6, ls=":")
            for k, width in enumerate(widths):
                pts = sorted((p for p in result["points"] if p["optimizer"] == name and p["width"] == width),
                             key=lambda p: p["update_over_bin"][q])
                if not pts:
                    continue
                ax.plot([p["update_over_bin"][q] for p in pts], [p["recovery"][q][metric] for p in pts], "o-",
                        ms=3, lw=1, color=colours(k / max(1, len(widths) - 1) * 0.85), label=f"hidden {width}")
            ax.set_xscale("log")
            if i == 0:
                ax.set_title(q, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{name}\nrecovery ({metric})", fontsize=8)
            if i == len(names) - 1:
                ax.set_xlabel("mean |update| / bin", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
