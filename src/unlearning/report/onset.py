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


# The 7B side of the extrapolation (ours, an assumption, not a measurement): Llama-2-7B's linear weights
# taken as N(0, 0.02^2), so a block of 64 has absmax about 2.5 x 0.02 and NF4's mean bin (2 absmax / 15)
# is about 0.0067; Zhang et al.'s learning rates; the scan's step count.
BIN_7B = 2 * 2.5 * 0.02 / 15
PAPER_LRS = (1e-5, 5e-6)


def _stats() -> tuple[float, float]:
    """The study schema's presence rule (report.stats): the share of its gap a point must recover, and
    the least gap (points) for the share to be judged."""
    from ..config import load_schema

    stats = load_schema()["properties"]["report"]["properties"]["stats"]["properties"]
    return float(stats["presence_share"]["default"]), float(stats["presence_min_gap"]["default"])


def recovered(point: dict, quant: str, metric: str, share: float, min_gap: float) -> bool:
    """Whether the quantizer restored the point's knowledge by the study's presence rule: its gap (the
    target's level - the unlearned model's, before the attack) at least ``min_gap`` points and its
    recovery at least ``share`` of that gap."""
    gap = point["gap"][metric]
    return gap >= min_gap and point["recovery"][quant][metric] >= share * gap


def move_per_lr(result: dict, optimizer: str, quant: str = "nf4") -> float:
    """The median over an optimizer entry's points of the mean |update| per unit learning rate (what a
    learning rate moves a weight in the scan's steps; nearly the same at every width)."""
    import statistics

    return statistics.median(p["update"][quant]["update_abs"] / p["lr"] for p in result["points"]
                             if p["optimizer"] == optimizer)


def forgetting_onset(result: dict, metric: str, min_gap: float, quant: str = "nf4") -> dict[int, float]:
    """Per width (with one), the smallest update in ``quant`` bins at which a point forgot ``min_gap``+
    points of ``metric``."""
    out: dict[int, float] = {}
    for p in result["points"]:
        if p["gap"][metric] >= min_gap:
            out[p["width"]] = min(out.get(p["width"], float("inf")), p["update_over_bin"][quant])
    return dict(sorted(out.items()))


def _fmt(x: float) -> str:
    return f"{x:.2g}"


def onset_block(root: Path) -> str:
    """README: where the quantization attack appears in the recorded scan, and what that predicts at 7B."""
    from . import measurements

    m = measurements.load(root, "onset")
    if m is None:
        return measurements._missing(["onset"], COMMAND)
    result = m["output"][0]
    config = result["config"]
    metric, quants = config["metrics"][0], config["quantizers"]
    share, min_gap = _stats()
    points = result["points"]
    widths = [w["width"] for w in result["widths"]]
    steps = config["unlearning"]["steps"]
    hits = [(p, q) for p in points for q in quants if recovered(p, q, metric, share, min_gap)]
    judged = [p for p in points if p["gap"][metric] >= min_gap]
    span = [p["update_over_bin"]["nf4"] for p in points] if "nf4" in quants else [0.0]
    best = max(((p["recovery"][q][metric], p, q) for p in judged for q in quants), key=lambda t: t[0],
               default=None)
    text = [f"**Where does the quantization attack appear?** The onset scan ({provenance_short(m, result)}) "
            f"unlearned hidden {'/'.join(map(str, widths))} targets with GradDiff ({steps} steps; "
            f"{', '.join(config['optimizers'])}; {len(config['lrs'])} learning rates, "
            f"{_fmt(min(config['lrs']))}-{_fmt(max(config['lrs']))}), moving the NF4-quantized weights by "
            f"{_fmt(min(span))}-{_fmt(max(span))} bins on average, and quantized each with "
            f"{', '.join(quants)}."]
    if hits:
        where = sorted({(p["width"], p["optimizer"], q) for p, q in hits})
        text.append(f"A quantizer restored at least {share:.0%} of the forgotten {metric} at {len(hits)} of "
                    f"{len(judged) * len(quants)} (point, quantizer) pairs with a gap of {min_gap:g}+ points: "
                    + "; ".join(f"hidden {w} {o} {q}" for w, o, q in where) + ".")
    else:
        text.append(f"No quantizer restored {share:.0%} of the forgotten {metric} at any of the {len(judged)} "
                    f"points that forgot {min_gap:g}+ points" + (
                        f" (largest recovery {best[0]:+.1f} points, hidden {best[1]['width']} {best[1]['optimizer']} "
                        f"lr {_fmt(best[1]['lr'])} under {best[2]})" if best else "") +
                    ": within this budget the attack does not appear at these widths.")
    if "nf4" in quants:
        onsets = forgetting_onset(result, metric, min_gap)
        if onsets:
            text.append(f"Unlearning forgot {min_gap:g}+ points of {metric} only from "
                        + " / ".join(f"{_fmt(b)}" for b in onsets.values()) + " NF4 bins on (hidden "
                        + " / ".join(map(str, onsets)) + "; the smallest such update of any optimizer)"
                        + (": wider models did not forget with smaller updates" if len(onsets) > 1
                           and list(onsets.values())[-1] >= list(onsets.values())[0] else "") + ".")
    if "adam" in config["optimizers"] and "nf4" in quants:
        a = move_per_lr(result, "adam")
        at7b = {lr: a * lr / BIN_7B for lr in PAPER_LRS}
        near = [p for p in points if p["update_over_bin"]["nf4"] <= 2 * max(at7b.values())]
        most = max((p["gap"][metric] for p in near), default=0.0)
        text.append(f"At 7B, if Adam moves a weight by the same {a:.2g} x lr in {steps} steps as here and NF4's "
                    f"bin is {BIN_7B:.4f} (weights of std 0.02: assumptions), Zhang et al.'s learning rates give "
                    + ", ".join(f"{v:.2g} bins at {lr:g}" for lr, v in at7b.items())
                    + (f"; at updates up to twice that, this scan's models forgot at most {most:.1f} points"
                       + (", so the regime the attack needs (forgotten, yet well within a bin) is not reached "
                          "at these widths" if most < min_gap else "") if near else "")
                    + ". Details: [docs/measurements/onset.md](docs/measurements/onset.md).")
    # the figure ends the paragraph (README keeps to 120 lines)
    return " ".join(text) + f" ![Recovery under each quantizer against the update in bins]({FIGURE})\n"


def provenance_short(m: dict, result: dict) -> str:
    """The scan's time and machine in a few words: its work in minutes, the CPU, shared or not."""
    minutes = result.get("work_seconds", result["seconds"]) / 60
    cpu = result.get("work_cpu_seconds", result["cpu_seconds"]) / 60
    shared = ", shared with other work" if m.get("shared") else ""
    return f"{minutes:.0f} min, {cpu:.0f} CPU-min, {m['cpu']}{shared}; `{COMMAND}`"


def onset_table(root: Path) -> str:
    """docs/measurements/onset.md: the scan's targets and every point, from the recorded JSON."""
    from . import measurements

    m = measurements.load(root, "onset")
    if m is None:
        return measurements._missing(["onset"], COMMAND)
    result = m["output"][0]
    config = result["config"]
    metric, quants = config["metrics"][0], config["quantizers"]
    lines = [f"From {measurements.provenance(m)}; the scan's own work {result['work_seconds'] / 60:.1f} min "
             f"({result['work_cpu_seconds'] / 60:.1f} CPU-min).", "",
             "Targets (their own change under each quantizer, points of " + ", ".join(config["metrics"]) + "):", "",
             "| hidden | weights | steps | levels met | " + " | ".join(config["metrics"]) + " | "
             + " | ".join(quants) + " | NF4 bin | mean abs weight | minutes |",
             "|---:|---:|---:|---|" + "---:|" * (len(config["metrics"]) + len(quants) + 3)]
    for w in result["widths"]:
        t = w["training"]
        bins = next((p["update"]["nf4"] for p in result["points"] if p["width"] == w["width"] and "nf4" in quants),
                    None)
        lines.append(f"| {w['width']} | {w['params'] / 1e6:.2f}M | {t['steps']} | {t.get('levels_met')} | "
                     + " | ".join(f"{w['scores']['none'][k]:.1f}" for k in config["metrics"]) + " | "
                     + " | ".join(" / ".join(f"{w['quantization_change'][q][k]:+.1f}" for k in config["metrics"])
                                  for q in quants)
                     + (f" | {bins['bin']:.4f} | {bins['weight_abs']:.4f}" if bins else " | | ")
                     + f" | {w['seconds'] / 60:.1f} |")
    lines += ["", f"Points: mean |update| / bin and codes changed (%) per quantizer; {metric} before the attack, "
              f"its gap (the target's level minus it) and recovery (after - before) under each quantizer; "
              f"seconds.", "",
              "| hidden | optimizer | lr | update/bin " + " / ".join(quants) + " | codes changed "
              + " / ".join(quants) + f" | {metric} | gap | recovery " + " / ".join(quants) + " | s |",
              "|---:|---|---:|---|---|---:|---:|---|---:|"]
    for p in result["points"]:
        lines.append(f"| {p['width']} | {p['optimizer']} | {p['lr']:.3g} | "
                     + " / ".join(_fmt(p["update_over_bin"][q]) for q in quants) + " | "
                     + " / ".join(f"{p['qcode_change'][q]:.1f}" for q in quants)
                     + f" | {p['scores']['none'][metric]:.1f} | {p['gap'][metric]:.1f} | "
                     + " / ".join(f"{p['recovery'][q][metric]:+.1f}" for q in quants) + f" | {p['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


RENDERERS = {"onset": onset_block, "onset-table": onset_table}
