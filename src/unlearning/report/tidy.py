"""The tidy table (one row per benchmark, method, optimizer, grade, seed, attack, metric) read from
the evaluation JSON files, PrivLeak derived from it, and the vocabulary of attacks, metrics and
optimizer order that every table, figure and finding shares."""

from __future__ import annotations

import json
import math
from argparse import ArgumentParser
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..commands import Stage
from ..registry import GRADES, PRIMARY_QUANTIZATION, is_relearn, utility_metrics
from ..registry import attack_order as registry_attack_order
from ..registry import forget_metrics as registry_forget
from ..registry import four_bit as four_bit_attacks
from ..registry import relearn_steps as relearn_steps  # the tables and findings import it from here
from ..tofu_metrics import FORGET_TRUTH_RATIOS, forget_quality
from .files import atomic_csv

COLUMNS = ["benchmark", "method", "optimizer", "grade", "seed", "attack", "metric", "value"]
GRADE_ORDER = ["reference", *GRADES]
# Forget-knowledge metrics (lower is better after unlearning) and utility metrics (higher is better).
FORGET_METRICS = registry_forget()
UTILITY_METRICS = utility_metrics()
METRIC_LABELS = {
    "verbmem_f": "VerbMem_f (ROUGE-L F1 x100)", "knowmem_f": "KnowMem_f (ROUGE-L F1 x100)",
    "knowmem_r": "KnowMem_r (ROUGE-L F1 x100)", "privleak": "PrivLeak (%)",
    "wmdp_acc": "Forget-domain accuracy (%)", "mmlu_acc": "Utility accuracy (%)",
    "qcode_change": "4-bit codes changed (%)",
    "tofu_prob_f": "Forget probability (x100)", "tofu_rouge_f": "Forget ROUGE-L recall (x100)",
    "truth_ratio_f": "Forget truth ratio (x100)", "forget_quality": "Forget Quality (KS p-value)",
    "model_utility": "Model utility (x100)",
}
METRIC_ORDER = ["verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mink_auc", "wmdp_acc", "mmlu_acc",
                "tofu_prob_f", "tofu_rouge_f", "truth_ratio_f", "forget_quality", "model_utility",
                "qcode_change"]
REF_LABELS = {"target": "Original (target)", "retrain": "Retrain", "control": "Positive control (thin unlearning)"}


# Metrics that cannot leave a range (intervals of their levels stay inside it: stats.bounded_ci).
BOUNDED_100 = {"qcode_change", "truth_ratio_f"}  # and every forget and utility metric of the registry


def metric_range(metric: str) -> tuple[float, float] | None:
    """The range a metric's values cannot leave: (0, 100) for the forget, utility and code-change
    metrics (and their relearned / held-out parts), (0, 1) for Forget Quality (a p-value), None for
    unbounded ones (PrivLeak, loss barriers)."""
    base = metric.split("_relearned")[0].split("_heldout")[0]
    if base in BOUNDED_100 or base in registry_forget() + utility_metrics():
        return 0.0, 100.0
    if base == "forget_quality":
        return 0.0, 1.0
    return None


def attack_order(attacks: Sequence[str]) -> list[str]:
    """none and the quantizations in registry order (int8, fp4, nf4), then relearn{steps} by step count."""
    return registry_attack_order(attacks)


def tidy(evals: Sequence[str | Path], auc_retrain: float | None = None) -> pd.DataFrame:
    """One row per (benchmark, method, optimizer, grade, seed, attack, metric) from eval JSONs.

    PrivLeak is derived here: (AUC - AUC_retrain) / AUC_retrain * 100, with AUC_retrain the retrain
    model's own Min-K% AUC (attack none) unless ``auc_retrain`` is given. So is TOFU's Forget Quality:
    the KS p-value of each evaluation's per-item forget truth ratios against the retrain model's
    (attack none), the retrain model playing TOFU's retain model.
    """
    rows = []
    ratios: list[tuple[dict, list[float]]] = []  # (row keys, per-item forget truth ratios)
    for path in evals:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        keys = {k: rec[k] for k in COLUMNS[:6]}
        for metric, value in rec["metrics"].items():
            if value is None or not math.isfinite(float(value)):
                raise ValueError(f"{path}: metric {metric} is not finite ({value})")
            rows.append({**keys, "metric": metric, "value": float(value)})
        if FORGET_TRUTH_RATIOS in rec.get("items", {}):
            ratios.append((keys, rec["items"][FORGET_TRUTH_RATIOS]))
    rows += forget_quality_rows(ratios)
    df = pd.DataFrame(rows, columns=COLUMNS)
    auc = df[df.metric == "mink_auc"]
    if not auc.empty:
        if auc_retrain is None:
            ref = auc[(auc.optimizer == "retrain") & (auc.attack == "none")]
            if ref.empty:
                raise ValueError("PrivLeak needs the retrain model's evaluation or evaluation.auc_retrain")
            auc_retrain = float(ref.value.mean())
        leak = auc.copy()
        leak["metric"] = "privleak"
        leak["value"] = (leak["value"] - auc_retrain) / auc_retrain * 100.0
        df = pd.concat([df, leak], ignore_index=True)
    return df.sort_values(COLUMNS[:7], kind="stable").reset_index(drop=True)


def forget_quality_rows(ratios: Sequence[tuple[dict, list[float]]]) -> list[dict]:
    """A ``forget_quality`` row per evaluation with per-item forget truth ratios: the KS p-value of its
    ratios against those of the retrain model without attack (seeds pooled if several)."""
    if not ratios:
        return []
    ref = [v for keys, items in ratios if (keys["optimizer"], keys["attack"]) == ("retrain", "none")
           for v in items]
    if not ref:
        raise ValueError("Forget Quality needs the retrain model's evaluation (TOFU's retain model)")
    return [{**keys, "metric": "forget_quality", "value": forget_quality(items, ref)} for keys, items in ratios]


def aggregate(evals: Sequence[str | Path], auc_retrain: float | None, out: str | Path) -> pd.DataFrame:
    """Write the tidy table of one benchmark to ``out`` (CSV)."""
    df = tidy(evals, auc_retrain)
    atomic_csv(df, out)
    return df


def optimizer_order(df: pd.DataFrame) -> list[str]:
    """Reference models first, then optimizers by grade (second, first, compressed, zeroth, hybrid)."""
    pairs = df[["optimizer", "grade"]].drop_duplicates()
    rank = {g: i for i, g in enumerate(GRADE_ORDER)}
    pairs = pairs.assign(r=pairs.grade.map(lambda g: rank.get(g, len(rank))))
    ref_rank = {"target": 0, "retrain": 1, "control": 2}
    pairs = pairs.assign(t=pairs.optimizer.map(lambda o: ref_rank.get(o, 3)))
    return list(pairs.sort_values(["r", "t", "optimizer"]).optimizer)


def metric_order(metrics: Sequence[str]) -> list[str]:
    """Main metrics in a fixed order, then each forget metric's relearned/held-out variants."""
    present = set(metrics)
    out = [m for m in METRIC_ORDER if m in present]
    for base in METRIC_ORDER:
        out += [f"{base}_{v}" for v in ("relearned", "heldout") if f"{base}_{v}" in present]
    return out + sorted(present - set(out))


def forget_metrics(df: pd.DataFrame) -> list[str]:
    """The forget-knowledge metrics present in ``df``, each kind's primary one first."""
    return [m for m in registry_forget(primary_first=True) if m in set(df.metric)]


def utility_metric(df: pd.DataFrame) -> str | None:
    """The utility metric of ``df`` (KnowMem_r for MUSE, MMLU accuracy for WMDP, model utility for TOFU)."""
    return next((m for m in utility_metrics() if m in set(df.metric)), None)


def methods(df: pd.DataFrame) -> list[str]:
    """The unlearning methods of ``df`` (the reference models' ``none`` left out)."""
    return sorted(m for m in df.method.unique() if m != "none")


def four_bit(df: pd.DataFrame) -> list[str]:
    """The 4-bit quantization attacks present in ``df``."""
    return [a for a in four_bit_attacks() if a in set(df.attack)]


def primary_quantization(df: pd.DataFrame) -> list[str]:
    """The quantization findings and the summary table judge: registry.PRIMARY_QUANTIZATION (NF4) when
    ``df`` has it, else its first 4-bit one (a list of at most one)."""
    return [PRIMARY_QUANTIZATION] if PRIMARY_QUANTIZATION in set(df.attack) else four_bit(df)[:1]


def relearn_attacks(attacks: Sequence[str]) -> list[str]:
    """The relearning attacks among ``attacks``, by step count."""
    return [a for a in attack_order(attacks) if is_relearn(a)]


def last_relearn(df: pd.DataFrame) -> list[str]:
    """The longest relearning attack of ``df`` (a list of at most one)."""
    return relearn_attacks(df.attack.unique())[-1:]


def row_keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, optimizer) rows of the main table: Original, Retrain, the attacks' positive control, then
    each method's optimizers in grade order (second, first, compressed, zeroth, hybrid)."""
    order = optimizer_order(df)
    rank = {o: i for i, o in enumerate(order)}
    refs = [("none", o) for o in REF_LABELS if ((df.method == "none") & (df.optimizer == o)).any()]
    other = df[df.method != "none"][["method", "optimizer"]].drop_duplicates()
    keys = sorted(map(tuple, other.values), key=lambda k: (k[0], rank.get(k[1], 99), k[1]))
    return refs + keys


def row_label(method: str, optimizer: str) -> str:
    """A table row's label: the reference model's name, or ``method / optimizer``."""
    return REF_LABELS.get(optimizer, optimizer) if method == "none" else f"{method} / {optimizer}"


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--auc-retrain", type=float, default=None)
    p.add_argument("--out", required=True)


STAGE = Stage(_arguments, lambda a: aggregate(a.inputs, a.auc_retrain, a.out), needs_torch=False)
