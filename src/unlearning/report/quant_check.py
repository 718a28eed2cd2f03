"""Does the target keep its forget knowledge under each quantizer the study declares? (issue 24)

A quantization attack can only restore what the quantized target itself still knows: a quantizer that
destroys the target's forget knowledge would "restore" nothing even where unlearning changed no code,
and one that leaves it intact is a fair attack. The check reads the target's own evaluations
(``eval/<bench>/none/target/seed<s>/<attack>.json``, rows ``method none, optimizer target`` of the tidy
tables): per benchmark, quantization and forget metric, the share of the unquantized value each seed
keeps (above chance for multiple-choice accuracy); the quantizer passes when every seed keeps at least
`report.stats.quantization_target_share`.
"""

from __future__ import annotations

import pandas as pd

from ..registry import attack, forget_metrics, quantizations
from .findings import CHANCE

QUANT_CHECK = "quant_check.csv"  # results/README/ (beside presence.csv)
COLUMNS = ["benchmark", "attack", "metric", "seeds", "before", "after", "kept", "kept_min", "keeps"]


def target_keeps(tables: dict[str, pd.DataFrame], share: float) -> pd.DataFrame:
    """One row per benchmark, quantization attack and forget metric present for the target: its mean
    before and after over seeds, the mean and the worst seed's share kept (after / before, above
    ``CHANCE`` for multiple choice), and ``keeps``: every seed keeps at least ``share`` (a seed whose
    target knew nothing keeps it trivially)."""
    rows = []
    for bench, df in tables.items():
        t = df[(df.method == "none") & (df.optimizer == "target")]
        wide = t.pivot_table(index=["seed", "metric"], columns="attack", values="value")
        for q in [a for a in quantizations() if a in wide.columns]:
            for metric in [m for m in forget_metrics() if m in wide.index.get_level_values("metric")]:
                pair = wide.xs(metric, level="metric")[["none", q]].dropna()
                if pair.empty:
                    continue
                c = CHANCE.get(metric, 0.0)
                kept = ((pair[q] - c) / (pair["none"] - c)).where(pair["none"] > c, 1.0)
                rows.append({"benchmark": bench, "attack": q, "metric": metric, "seeds": len(pair),
                             "before": pair["none"].mean(), "after": pair[q].mean(), "kept": kept.mean(),
                             "kept_min": kept.min(), "keeps": bool((kept >= share).all())})
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(tables: dict[str, pd.DataFrame], share: float) -> str:
    """``target_keeps`` as findings.md's paragraph and table: which quantizers fail the check."""
    df = target_keeps(tables, share)
    if df.empty:
        return "No quantization attack in this study: nothing to check."
    failed = df[~df.keeps]
    verdict = ("The target keeps at least {:.0%} of its forget knowledge under every declared quantizer "
               "(each seed, each forget metric).".format(share) if failed.empty else
               "Under {} the target itself loses more than {:.0%} of its forget knowledge on some seed: "
               "recovery under {} is bounded by what the quantized target keeps.".format(
                   ", ".join(sorted({attack(a).label for a in failed.attack})), 1 - share,
                   "it" if failed.attack.nunique() == 1 else "them"))
    lines = [verdict, "", "| benchmark | quantization | metric | target before | after | kept (mean) "
             "| kept (worst seed) | keeps |", "|---|---|---|---:|---:|---:|---:|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.benchmark} | {attack(r.attack).label} | {r.metric} | {r.before:.1f} | {r.after:.1f} "
                     f"| {r.kept:.1%} | {r.kept_min:.1%} | {'yes' if r.keeps else '**no**'} |")
    return "\n".join(lines)
