"""The paper's testable findings, written as data and judged by paired tests over the study's seeds
(``report.findings_report`` writes results/README/findings.md, verdicts.csv and comparisons.csv).

Each finding names which optimizers it compares (roles picked from the config's optimizer types),
under which attacks, on which metrics and in which direction, and declares before any run its
*primary* comparisons: per benchmark one metric (``PRIMARY_METRICS``) under one attack
(``PRIMARY_ATTACKS``), for every method and pair of optimizers its roles name. Only the primary
comparisons vote; the others are shown as secondary. ``judge`` turns a finding into comparisons and a
verdict (docs/reference/statistics.md):

- a comparison is the paired difference over seeds (each seed a whole replicate), tested by a paired
  t-test; under an attack its measure is the *recovery* (after - before, per seed), the level after
  the attack shown beside it;
- Holm's correction runs across a finding's primary comparisons; a claim of no difference is tested
  by TOST against ``report.stats.equivalence_margin``;
- an optimizer whose utility fell below ``report.stats.collapse_share`` of the target's is
  *collapsed* and left out; an attack absent in a benchmark (``attack_presence``: its positive
  control does not recover, or its negative control moves) makes its comparisons *untestable*.

Comparisons come from one of three kinds of evidence: the benchmarks' tidy tables, the LMC loss
barriers, or the hybrid ablation's table. The legacy rule (two disjoint unpaired intervals, half the
comparisons) is computed beside, for README's "old rule" column only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from ..registry import (
    BENCHMARK_KINDS,
    PRIMARY_QUANTIZATION,
    SIGN_TYPES,
    ZO_TYPES,
    attack_order,
    stage_attack,
    types_of,
)
from ..registry import attack as attack_entry
from .stats import (
    AGAINST,
    DIFFERENT,
    DOES_NOT,
    EQUIVALENT,
    FOR,
    INCONCLUSIVE,
    REPRODUCES,
    bounded_ci,
    combine,
    compare,
    detectable,
    directional,
    equivalence,
    holm,
    mean_ci,
    overlap,
    paired,
    seeds_for,
    tost,
)
from .tidy import forget_metrics, four_bit, last_relearn, methods, metric_range, primary_quantization

NOT_TESTED = "not tested (optimizer not configured)"
NO_ABLATION = "not tested (no ablation configured)"
NO_RUNS = "not tested (no comparable runs)"
NO_PRIMARY = "not tested (none of its declared primary comparisons ran)"
UNTESTABLE = "untestable: attack absent at this scale"
COLLAPSED = "collapsed"

# Defaults of config `report.stats` (workflow/schemas/config.schema.yaml holds them; these are for
# callers without a config, e.g. tests).
STATS_DEFAULTS = {"alpha": 0.05, "equivalence_margin": 5.0, "collapse_share": 0.5, "presence_share": 0.3,
                  "presence_negative_points": 5.0, "presence_min_gap": 10.0, "target_detectable": 10.0,
                  "quantization_target_share": 0.9}
# The attacks' controls in the tidy tables (method ``none``): plan.CONTROL and plan.NEGATIVE, spelled
# out because importing plan would make every report job depend on config.py and calibration.py.
POSITIVE, NEGATIVE = "control", "retrain"

# The paper's "first-order downgrades" (R3): the compressed grade and the robust first-order baselines.
FIRST_DOWNGRADE_TYPES = frozenset(types_of("compressed")) | {"sam", "rs"}

# Primary metric per benchmark kind, declared before the run (ours): the forget metric the calibration
# matches (MUSE KnowMem_f, WMDP forget accuracy, TOFU forget probability) and the utility metric it
# maximises. The benchmark's kind is read from the metrics its table holds.
PRIMARY_METRICS: dict[str, dict[str, str]] = {  # from each kind's registry entry (``primary``)
    role: {kind: k.primary[i] for kind, k in BENCHMARK_KINDS.items()} for i, role in enumerate(("forget", "utility"))
}
UTILITY = PRIMARY_METRICS["utility"]
# Chance level of the 4-choice accuracies: utility shares (and quant_check's forget shares) count what
# lies above it, so a model at chance has kept none of it whatever the target's accuracy.
CHANCE = {"mmlu_acc": 25.0, "wmdp_acc": 25.0}
# Primary attack of each attack family (ours): registry.PRIMARY_QUANTIZATION (NF4) for 4-bit
# quantization (FP4 gives practically the same model here, so it would vote twice), the reported
# relearning (`attacks.relearn.report`). The keys are the Finding's ``primary_attack`` values.
PRIMARY_ATTACKS: dict[str, Callable[[pd.DataFrame, int | None], list[str]]] = {
    "none": lambda df, report: ["none"],
    "nf4": lambda df, report: primary_quantization(df),
    "relearn": lambda df, report: judged_relearn(df, report),
}


def roles(optimizers: dict, reference: str) -> dict[str, list[str]]:
    """Role -> configured optimizer names. ``reference`` is the first-order reference (Adam); a
    1-bit N-bit Adam counts as a sign optimizer."""
    t = {n: s.get("type") for n, s in optimizers.items()}
    one_bit = {n for n, s in optimizers.items() if t[n] == "nbit_adam" and s.get("bits") == 1}
    return {
        "reference": [reference] if reference in optimizers else [],
        "sign_rs": [n for n in optimizers if t[n] in SIGN_TYPES | {"rs"} or n in one_bit],
        "sign": [n for n in optimizers if t[n] in SIGN_TYPES or n in one_bit],
        "sophia": [n for n in optimizers if t[n] == "sophia"],
        "zo": [n for n in optimizers if t[n] in ZO_TYPES],
        "hybrid": [n for n in optimizers if t[n] == "hybrid"],
        "sam": [n for n in optimizers if t[n] == "sam"],
        "rs": [n for n in optimizers if t[n] == "rs"],
        "first_downgrades": [n for n in optimizers if t[n] in FIRST_DOWNGRADE_TYPES],
    }


def judged_relearn(df: pd.DataFrame, report: int | None = None) -> list[str]:
    """The relearning attack findings judge: ``relearn{report}`` (config `attacks.relearn.report`,
    the paper's headline attack) where the table has it, else the longest."""
    if report is not None and f"relearn{report}" in set(df.attack):
        return [f"relearn{report}"]
    return last_relearn(df)


# Attack and metric selections a finding names: each maps a tidy table (and the reported relearning
# step count) to the names present in it.
ATTACKS: dict[str, Callable[[pd.DataFrame, int | None], list[str]]] = {
    "before": lambda df, report: ["none"],
    "four_bit": lambda df, report: four_bit(df),
    "last_relearn": judged_relearn,
    "before_four_bit_last_relearn": lambda df, report: ["none", *four_bit(df), *judged_relearn(df, report)],
}
METRICS: dict[str, Callable[[pd.DataFrame], list[str]]] = {
    "forget": forget_metrics,
    "forget_and_heldout": lambda df: forget_metrics(df) + [f"{m}_heldout" for m in forget_metrics(df)
                                                           if f"{m}_heldout" in set(df.metric)],
    "utility": lambda df: [m for m in ["knowmem_r", "mmlu_acc"] if m in set(df.metric)],
}


def kind_of(df: pd.DataFrame) -> str | None:
    """The benchmark kind of a tidy table (muse, wmdp or tofu), read from its forget metrics, else
    from its utility metrics."""
    present = set(df.metric)
    return next((k for role in ("forget", "utility") for k, m in PRIMARY_METRICS[role].items() if m in present),
                None)


@dataclass(frozen=True)
class Finding:
    """One claim of the paper and how the study tests it.

    ``subject`` and ``other`` are roles (see ``roles``; ``other`` None = every other optimizer of the
    same benchmark and method; for ablation evidence the roles are ``one_to_one`` and
    ``other_ratio``). ``direction``: ``lower`` (subject below other), ``higher`` (above) or ``same``
    (no difference, TOST). ``evidence``: ``tables``, ``barriers`` or ``ablation``. ``objectives``
    restricts the methods to those with these objectives. ``needs``: further roles without which the
    finding is not tested. ``claim`` and ``how`` may name ``{reference}``. Barrier evidence compares
    the unlearned models (attack ``before``) on one metric, the loss barrier.

    ``primary_metric`` (a key of ``PRIMARY_METRICS``, or ``barrier``: the forget split's barrier) and
    ``primary_attack`` (a key of ``PRIMARY_ATTACKS``) declare the comparisons that vote: per
    benchmark, method and pair of optimizers, that metric under that attack (its recovery when the
    attack is not ``none``). Every other comparison is secondary."""

    id: str
    claim: str
    how: str
    subject: str
    other: str | None
    attacks: str
    metrics: str
    direction: str = "lower"
    evidence: str = "tables"
    objectives: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    primary_metric: str = "forget"
    primary_attack: str = "nf4"


FINDINGS: tuple[Finding, ...] = (
    Finding("Q1", "After 4-bit quantization, signAdam, signSGD and RS keep less forget knowledge than Adam.",
            "forget metric after FP4/NF4: each sign/RS optimizer < {reference}",
            "sign_rs", "reference", "four_bit", "forget"),
    Finding("Q2", "Sophia (second order) is the least robust: the most forget knowledge after 4-bit quantization.",
            "forget metric after FP4/NF4: Sophia > every other optimizer",
            "sophia", None, "four_bit", "forget", direction="higher"),
    Finding("Q3", "Zeroth order keeps the least forget knowledge after 4-bit quantization.",
            "forget metric after FP4/NF4: ZO < every other optimizer",
            "zo", None, "four_bit", "forget"),
    Finding("Q4", "... but zeroth order has the worst utility.",
            "utility (KnowMem_r / MMLU) before attack: ZO < every other optimizer that kept its utility",
            "zo", None, "before", "utility", primary_metric="utility", primary_attack="none"),
    Finding("Q5", "Hybrid (FO-ZO) is the most robust to 4-bit quantization.",
            "forget metric after FP4/NF4: hybrid < every other optimizer",
            "hybrid", None, "four_bit", "forget"),
    Finding("Q6", "Hybrid beats SAM under 4-bit quantization.",
            "forget metric after FP4/NF4: hybrid < SAM",
            "hybrid", "sam", "four_bit", "forget"),
    Finding("R1", "After relearning, zeroth order keeps the least forget knowledge.",
            "forget metric (whole set and held-out part) after the reported relearning: ZO < every other optimizer",
            "zo", None, "last_relearn", "forget_and_heldout", primary_attack="relearn"),
    Finding("R2", "After relearning, hybrid keeps forget knowledge far below Adam for GradDiff and NPO.",
            "forget metric (whole set and held-out part) after the reported relearning, GradDiff/NPO: "
            "hybrid < {reference}",
            "hybrid", "reference", "last_relearn", "forget_and_heldout", objectives=("grad_diff", "npo"),
            primary_attack="relearn"),
    Finding("R3", "After relearning, first-order RS is the best of the first-order downgrades.",
            "forget metric after the reported relearning: RS < SAM / sign / N-bit optimizers",
            "rs", "first_downgrades", "last_relearn", "forget_and_heldout", primary_attack="relearn"),
    Finding("L1",
            "Linear mode connectivity: sign-optimizer solutions share {reference}'s basin, zeroth order's do not.",
            "loss barrier on the path from the {reference} solution (forget and retain data): sign < ZO",
            "sign", "zo", "before", "barrier", evidence="barriers", needs=("reference",),
            primary_metric="barrier", primary_attack="none"),
    Finding("A1", "Ablation: a 1:1 FO:ZO ratio is best.",
            "forget metric before/after attacks: each 1:1 hybrid < each other-ratio hybrid",
            "one_to_one", "other_ratio", "before_four_bit_last_relearn", "forget", evidence="ablation",
            primary_attack="relearn"),
    Finding("A2", "Ablation: the switching interval N hardly matters.",
            "1:1 hybrids with different N: equivalent within the margin (TOST) = reproduces, a significant "
            "difference = does not",
            "one_to_one", "one_to_one", "before_four_bit_last_relearn", "forget", direction="same",
            evidence="ablation", primary_attack="relearn"),
)


# ----------------------------------------------------------------------------------- per-seed values


def _series(df: pd.DataFrame, method: str, opt: str, attack: str, metric: str) -> pd.Series:
    """Values by seed of one row of a tidy table (empty when absent)."""
    d = df[(df.method == method) & (df.optimizer == opt) & (df.attack == attack) & (df.metric == metric)]
    return d.groupby("seed").value.mean()


def _vals(df: pd.DataFrame, method: str, opt: str, attack: str, metric: str) -> list[float]:
    return list(_series(df, method, opt, attack, metric).sort_index())


def _measure(df: pd.DataFrame, method: str, opt: str, attack: str, metric: str) -> pd.Series:
    """Per seed: the recovery (after - before) under ``attack``, or the level for ``none``."""
    after = _series(df, method, opt, attack, metric)
    if attack == "none":
        return after
    return (after - _series(df, method, opt, "none", metric)).dropna()


def collapsed(df: pd.DataFrame, method: str, opt: str, share: float,
              target: pd.DataFrame | None = None) -> float | None:
    """The mean over seeds of an entry's unattacked utility / that seed's target's (paired by seed;
    above chance for a multiple-choice metric, ``CHANCE``), when it is below ``share`` (the entry is
    collapsed), else None. ``target``: the tidy table holding the target rows when ``df`` lacks them
    (the ablation's table). None also when unknown."""
    kind = kind_of(df) or (kind_of(target) if target is not None else None)
    metric = UTILITY.get(kind or "")
    if metric is None:
        return None
    c = CHANCE.get(metric, 0.0)
    u = _series(df, method, opt, "none", metric) - c
    t = _series(df if target is None else target, "none", "target", "none", metric) - c
    ratio = (u / t.where(t > 0)).dropna()
    if ratio.empty:
        return None
    r = float(ratio.mean())
    return r if r < share else None


def presence_metric(df: pd.DataFrame, attack: str, metric: str) -> str:
    """The metric an attack's presence is judged on: ``metric``, or its held-out part (``*_heldout``)
    under an attack that trains on part of the forget set (relearning) where the table has it, so that
    what the attack taught is not counted as restored."""
    held = f"{metric}_heldout"
    return held if stage_attack(attack) is not None and held in set(df.metric) else metric


def attack_presence(df: pd.DataFrame, attack: str, metric: str, share: float, negative_points: float,
                    positive: str = POSITIVE, negative: str = NEGATIVE, min_gap: float = 0.0) -> dict:
    """Whether ``attack`` can restore knowledge in this benchmark (its tidy table ``df``), from its controls.

    On ``presence_metric`` (``metric``, the primary forget metric, or its held-out part): the positive
    control (method ``none``, optimizer ``positive``: the target after a thin unlearning update) has a
    *gap*, the target's level minus its own before the attack (means over seeds); its *recovery* is
    after - before per seed; the negative control (``negative``, the retrain model) *moves* by its
    own after - before. The *excess* is recovery - the negative's move, paired by seed (against the
    negative's mean where their seeds differ; a missing negative counts as no move). Present when
    excess >= ``share`` x gap and |the negative's mean move| <= ``negative_points``. ``present`` is
    None (unknown; the comparisons are judged as if present) without the positive control or the
    target, or when the control lost too little to judge (gap < ``min_gap``, or <= 0). Attack ``none``
    is present."""
    m = presence_metric(df, attack, metric)
    out = {"metric": m, "target": math.nan, "before": math.nan, "gap": math.nan, "positive": math.nan,
           "negative": math.nan, "excess": math.nan, "share": math.nan, "present": None}
    if attack == "none":
        return {**out, "present": True}
    target = _series(df, "none", "target", "none", m)
    before = _series(df, "none", positive, "none", m)
    pos = _measure(df, "none", positive, attack, m)
    neg = _measure(df, "none", negative, attack, m)
    if not neg.empty:
        out["negative"] = float(neg.mean())
    if pos.empty or target.empty or before.empty:
        return out
    both = pd.concat([pos, neg], axis=1, keys=["pos", "neg"]).dropna()
    moved = 0.0 if neg.empty else float(neg.mean())
    excess = float((both.pos - both.neg).mean()) if not both.empty else float(pos.mean()) - moved
    gap = float(target.mean() - before.mean())
    out.update(target=float(target.mean()), before=float(before.mean()), gap=gap, positive=float(pos.mean()),
               excess=excess)
    if gap <= 0 or gap < min_gap:
        return out
    out["share"] = excess / gap
    out["present"] = bool(excess >= share * gap and abs(moved) <= negative_points)
    return out


PRESENCE_COLUMNS = ["benchmark", "attack", "metric", "target", "before", "gap", "positive", "negative", "excess",
                    "share", "present"]


def presence_table(tables: dict[str, pd.DataFrame], share: float, negative_points: float,
                   min_gap: float = 0.0) -> pd.DataFrame:
    """Per benchmark and attack (``none`` left out): the controls' numbers and the verdict of
    ``attack_presence`` on the benchmark's primary forget metric (one row each)."""
    rows = []
    for bench, df in tables.items():
        metric = PRIMARY_METRICS["forget"].get(kind_of(df) or "")
        if metric is None:
            continue
        for attack in attack_order(df.attack.unique()):
            if attack != "none":
                rows.append({"benchmark": bench, "attack": attack,
                             **attack_presence(df, attack, metric, share, negative_points, min_gap=min_gap)})
    return pd.DataFrame(rows, columns=PRESENCE_COLUMNS)


def _side(values: Sequence[float], metric: str) -> tuple[float, float, float]:
    """Mean and range-respecting 95% interval of one side's level (Student t where unbounded)."""
    m, h, n = mean_ci(values)
    bounds = metric_range(metric)
    if bounds is None:
        return m, m - h, m + h
    lo, hi = bounded_ci(values, *bounds)
    return m, lo, hi


def _pair(df: pd.DataFrame, method: str, s: str, o: str, attack: str, metric: str, direction: str,
          margin: float) -> dict | None:
    """One comparison of subject ``s`` against other ``o``: levels after the attack (each side with
    its bounded interval), the paired level difference, the paired measure (recovery under an
    attack, level before) with its t-test and TOST, and the legacy verdict from the levels."""
    la, lb = _series(df, method, s, attack, metric), _series(df, method, o, attack, metric)
    if la.empty or lb.empty:
        return None
    legacy = _legacy(list(la.sort_index()), list(lb.sort_index()), direction)
    lev = pd.concat([la, lb], axis=1, keys=["a", "b"]).dropna()
    ma, mb = _measure(df, method, s, attack, metric), _measure(df, method, o, attack, metric)
    mea = pd.concat([ma, mb], axis=1, keys=["a", "b"]).dropna()
    sm, slo, shi = _side(list(la.sort_index()), metric)
    om, olo, ohi = _side(list(lb.sort_index()), metric)
    lp = paired(lev.a, lev.b)
    mp = paired(mea.a, mea.b)
    return {"measure": "level" if attack == "none" else "recovery", "n": mp["n"],
            "subject_level": sm, "subject_lo": slo, "subject_hi": shi,
            "other_level": om, "other_lo": olo, "other_hi": ohi,
            "level_effect": lp["effect"], "level_lo": lp["lo"], "level_hi": lp["hi"],
            "subject_recovery": float(mea.a.mean()) if attack != "none" and len(mea) else math.nan,
            "other_recovery": float(mea.b.mean()) if attack != "none" and len(mea) else math.nan,
            "effect": mp["effect"], "lo": mp["lo"], "hi": mp["hi"], "sd": mp["sd"], "p": mp["p"],
            "p_tost": tost(mea.a, mea.b, margin) if direction == "same" else math.nan, "legacy": legacy}


def _legacy(a: list[float], b: list[float], direction: str) -> str:
    """The old rule's verdict of one comparison: two unpaired 95% intervals (stats.compare)."""
    if direction == "same":
        return overlap(a, b)["verdict"]
    return compare(a, b)["verdict"] if direction == "lower" else compare(b, a)["verdict"]


# ------------------------------------------------------------------------------------- comparisons


def _table_comparisons(f: Finding, tables: dict[str, pd.DataFrame], R: dict[str, list[str]],
                       method_objective: dict[str, str], report: int | None, st: dict) -> list[dict]:
    """Subject vs other for every benchmark, method, metric and attack where both ran."""
    subjects, others = R[f.subject], (R[f.other] if f.other is not None else None)
    out = []
    for bench, df in tables.items():
        kind = kind_of(df)
        pmetric = PRIMARY_METRICS.get(f.primary_metric, {}).get(kind or "")
        pattacks = PRIMARY_ATTACKS[f.primary_attack](df, report)
        for method in methods(df):
            if f.objectives and method_objective.get(method) not in f.objectives:
                continue
            present = set(df[df.method == method].optimizer)
            for s in [s for s in subjects if s in present]:
                # other None: every other unlearned optimizer of the benchmark; never one of the subject's role
                rivals = [o for o in (others if others is not None else sorted(present - set(subjects)))
                          if o in present and o not in subjects]
                for metric in METRICS[f.metrics](df):
                    for attack in ATTACKS[f.attacks](df, report):
                        for o in rivals:
                            r = _pair(df, method, s, o, attack, metric, f.direction, st["equivalence_margin"])
                            if r is None:
                                continue
                            out.append({"context": f"{bench} / {method} / {metric} / {attack}", "benchmark": bench,
                                        "method": method, "metric": metric, "attack": attack, "subject": s,
                                        "other": o, "primary": metric == pmetric and attack in pattacks, **r})
    return out


def _barrier_comparisons(f: Finding, barriers: pd.DataFrame | None, R: dict[str, list[str]]) -> list[dict]:
    """Subject vs other loss barriers per benchmark, method and data split, paired by seed; the
    forget split's barrier is primary."""
    out = []
    if barriers is None or barriers.empty:
        return out
    for (bench, method, split), g in barriers.groupby(["benchmark", "method", "split"]):
        for s in [o for o in R[f.subject] if o in set(g.optimizer)]:
            for z in [o for o in R[f.other] if o in set(g.optimizer)]:
                a = g[g.optimizer == s].groupby("seed").barrier.mean()
                b = g[g.optimizer == z].groupby("seed").barrier.mean()
                both = pd.concat([a, b], axis=1, keys=["a", "b"]).dropna()
                sm, slo, shi = _side(list(a), "barrier")
                om, olo, ohi = _side(list(b), "barrier")
                pp = paired(both.a, both.b)
                out.append({"context": f"{bench} / {method} / {split} loss barrier", "benchmark": bench,
                            "method": method, "metric": f"{split}_barrier", "attack": "none", "subject": s,
                            "other": z, "primary": split == "forget", "measure": "level", "n": pp["n"],
                            "subject_level": sm, "subject_lo": slo, "subject_hi": shi, "other_level": om,
                            "other_lo": olo, "other_hi": ohi, "level_effect": pp["effect"], "level_lo": pp["lo"],
                            "level_hi": pp["hi"], "subject_recovery": math.nan, "other_recovery": math.nan,
                            "effect": pp["effect"], "lo": pp["lo"], "hi": pp["hi"], "sd": pp["sd"], "p": pp["p"],
                            "p_tost": math.nan, "legacy": _legacy(list(a), list(b), f.direction)})
    return out


def _ablation_comparisons(f: Finding, ablation: pd.DataFrame | None, report: int | None, st: dict) -> list[dict]:
    """Hybrid entries of the ablation against each other: ``one_to_one`` (n_fo == n_zo) against
    ``other_ratio`` entries, or each pair of distinct 1:1 entries when both roles are ``one_to_one``."""
    out = []
    if ablation is None or ablation.empty:
        return out
    entries = ablation[["optimizer", "n_fo", "n_zo"]].drop_duplicates()
    group = {"one_to_one": list(entries[entries.n_fo == entries.n_zo].optimizer),
             "other_ratio": list(entries[entries.n_fo != entries.n_zo].optimizer)}
    if f.subject == f.other:
        ones = group[f.subject]
        pairs = [(a, b) for i, a in enumerate(ones) for b in ones[i + 1:]]
    else:
        pairs = [(a, b) for a in group[f.subject] for b in group[f.other]]
    for bench, method in ablation[["benchmark", "method"]].drop_duplicates().values:
        d = ablation[(ablation.benchmark == bench) & (ablation.method == method)]
        pmetric = PRIMARY_METRICS.get(f.primary_metric, {}).get(kind_of(d) or "")
        pattacks = PRIMARY_ATTACKS[f.primary_attack](d, report)
        for metric in METRICS[f.metrics](d):
            for attack in ATTACKS[f.attacks](d, report):
                for a, b in pairs:
                    r = _pair(d, method, a, b, attack, metric, f.direction, st["equivalence_margin"])
                    if r is not None and r["n"]:
                        out.append({"context": f"{bench} / {method} / {metric} / {attack}", "benchmark": bench,
                                    "method": method, "metric": metric, "attack": attack, "subject": a, "other": b,
                                    "primary": metric == pmetric and attack in pattacks, **r})
    return out


# ---------------------------------------------------------------------------------------- verdicts


def _exclusions(comps: list[dict], f: Finding, tables: dict[str, pd.DataFrame], ablation: pd.DataFrame | None,
                st: dict) -> None:
    """Mark each comparison's ``status``: ``ok``, ``collapsed`` (a side's utility below the declared
    share of the target's; ``collapsed`` names it) or ``untestable`` (its attack absent in that
    benchmark, ``attack_presence``; ``presence_share``: the share of its gap the positive control
    recovered beyond the negative control's move). ``control``: the retrain model's mean change under
    the same attack and metric; ``subject_beyond`` / ``other_beyond``: each side's recovery minus it."""
    presence: dict[tuple, dict] = {}
    for c in comps:
        bench, method = c["benchmark"], c["method"]
        df = tables.get(bench)
        own = ablation[(ablation.benchmark == bench)] if f.evidence == "ablation" and ablation is not None else df
        base = df if df is not None else own
        gone = []
        if own is not None and base is not None:
            for o in (c["subject"], c["other"]):
                r = collapsed(own, method, o, st["collapse_share"], target=base if own is not base else None)
                if r is not None:
                    gone.append(f"{o} ({100 * r:.0f}% of the target's utility)")
        c["collapsed"] = "; ".join(gone)
        c["control"] = c["subject_beyond"] = c["other_beyond"] = math.nan
        c["presence_share"] = math.nan
        state = "ok"
        if base is not None and c["attack"] != "none":
            ch = _measure(base, "none", NEGATIVE, c["attack"], c["metric"])
            c["control"] = float(ch.mean()) if not ch.empty else math.nan
            c["subject_beyond"] = c.get("subject_recovery", math.nan) - c["control"]
            c["other_beyond"] = c.get("other_recovery", math.nan) - c["control"]
            key = (bench, c["attack"])
            if key not in presence:
                fm = PRIMARY_METRICS["forget"].get(kind_of(base) or "")
                presence[key] = (attack_presence(base, c["attack"], fm, st["presence_share"],
                                                 st["presence_negative_points"], min_gap=st["presence_min_gap"])
                                 if fm else {"present": None, "share": math.nan})
            c["presence_share"] = presence[key]["share"]
            if presence[key]["present"] is False:
                state = "untestable"
        if gone and state == "ok":
            state = "collapsed"
        c["status"] = state


def _outcomes(comps: list[dict], direction: str, alpha: float) -> None:
    """Holm across the primary comparisons that are ``ok``; each comparison's ``p_holm`` and
    ``outcome`` (for / against / neither, or equivalent / different / neither for a claim of no
    difference). Secondary comparisons get their unadjusted outcome, marked as not voting."""
    voting = [c for c in comps if c["primary"] and c["status"] == "ok"]
    ph = holm([c["p"] for c in voting])
    pt = holm([c["p_tost"] for c in voting]) if direction == "same" else [math.nan] * len(voting)
    for c in comps:
        c["p_holm"], c["p_tost_holm"] = math.nan, math.nan
    for c, p, q in zip(voting, ph, pt):
        c["p_holm"], c["p_tost_holm"] = p, q
    sign = {"lower": -1, "higher": 1}.get(direction, 0)
    votes = {id(c) for c in voting}
    for c in comps:
        p = c["p_holm"] if id(c) in votes else c["p"]
        q = c["p_tost_holm"] if id(c) in votes else c["p_tost"]
        if c["status"] != "ok":
            c["outcome"] = c["status"]
        elif direction == "same":
            c["outcome"] = equivalence(q if q == q else 1.0, p if p == p else 1.0, alpha)
        else:
            c["outcome"] = directional(c["effect"], p if p == p else 1.0, sign, alpha)


def verdict_of(outcomes: Sequence[str], direction: str) -> str:
    """A finding's verdict from the outcomes of its voting primary comparisons (all of them ``ok``):
    a directional claim reproduces when every one is significant in the paper's direction and does
    not when any is significant against it; a claim of no difference reproduces when every one is
    shown equivalent and does not when any differs significantly; otherwise inconclusive."""
    if not outcomes:
        return INCONCLUSIVE
    if direction == "same":
        if any(o == DIFFERENT for o in outcomes):
            return DOES_NOT
        return REPRODUCES if all(o == EQUIVALENT for o in outcomes) else INCONCLUSIVE
    if any(o == AGAINST for o in outcomes):
        return DOES_NOT
    return REPRODUCES if all(o == FOR for o in outcomes) else INCONCLUSIVE


def power(comps: list[dict], alpha: float, target: float) -> dict:
    """The power statement of a finding from its voting primary comparisons: the pooled paired SD
    (root mean square of their SDs), their seeds, and the smallest paired difference a two-sided
    paired t-test detects with 80% power at ``alpha`` (``mde``) and at Holm's strictest level
    alpha / m (``mde_holm``), the same at 5 seeds, and the seeds needed to detect ``target`` points at
    alpha / m (None: more than 100)."""
    voting = [c for c in comps if c["primary"] and c["status"] == "ok" and c["sd"] == c["sd"]]
    if not voting:
        return {"sd": math.nan, "n": 0, "m": 0, "mde": math.nan, "mde_holm": math.nan, "mde5_holm": math.nan,
                "seeds_needed": None}
    sd = math.sqrt(sum(c["sd"] ** 2 for c in voting) / len(voting))
    n, m = min(c["n"] for c in voting), len(voting)
    return {"sd": sd, "n": n, "m": m, "mde": detectable(sd, n, alpha), "mde_holm": detectable(sd, n, alpha / m),
            "mde5_holm": detectable(sd, 5, alpha / m), "seeds_needed": seeds_for(target, sd, alpha / m)}


def primary_label(f: Finding, metrics_used: Sequence[str] = ()) -> str:
    """The declared primary comparison of a finding, in words: the primary metrics its comparisons
    used (``metrics_used``), else every declared one."""
    if f.primary_metric == "barrier":
        return "forget-split loss barrier"
    metrics = "/".join(dict.fromkeys(metrics_used or PRIMARY_METRICS[f.primary_metric].values()))
    attack = {"none": "before attack (level)",
              "nf4": f"recovery under {attack_entry(PRIMARY_QUANTIZATION).label} (after - before)",
              "relearn": "recovery under the reported relearning (after - before)"}[f.primary_attack]
    return f"{metrics}, {attack}"


def judge(f: Finding, tables: dict[str, pd.DataFrame], optimizers: dict, methods_cfg: dict, reference: str,
          barriers: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None,
          relearn_report: int | None = None, stats_cfg: dict | None = None) -> dict:
    """One finding's comparisons and verdict (see the module's docstring and ``findings``)."""
    st = {**STATS_DEFAULTS, **(stats_cfg or {})}
    R = roles(optimizers, reference)
    if f.evidence == "tables":
        objective = {m: s.get("objective") for m, s in methods_cfg.items()}
        comps = _table_comparisons(f, tables, R, objective, relearn_report, st)
    elif f.evidence == "barriers":
        comps = _barrier_comparisons(f, barriers, R)
    elif f.evidence == "ablation":
        comps = _ablation_comparisons(f, ablation, relearn_report, st)
    else:
        raise ValueError(f"finding {f.id}: unknown evidence {f.evidence!r}")
    _exclusions(comps, f, tables, ablation, st)
    _outcomes(comps, f.direction, st["alpha"])
    primaries = [c for c in comps if c["primary"]]
    voting = [c for c in primaries if c["status"] == "ok"]
    if voting:
        verdict = verdict_of([c["outcome"] for c in voting], f.direction)
    elif primaries and all(c["status"] == "untestable" for c in primaries):
        verdict = UNTESTABLE
    elif primaries and any(c["status"] == "collapsed" for c in primaries):
        verdict = COLLAPSED if not any(c["status"] == "untestable" for c in primaries) else UNTESTABLE
    elif comps:
        verdict = NO_PRIMARY
    elif f.evidence == "ablation":
        verdict = NO_ABLATION if ablation is None or ablation.empty else NO_RUNS
    elif any(not R[r] for r in (f.subject, f.other, *f.needs) if r is not None):
        verdict = NOT_TESTED
    else:
        verdict = NO_RUNS
    # the old rule cannot test an absent attack either
    legacy = combine([c["legacy"] for c in comps]) if comps and verdict != UNTESTABLE else verdict
    return {"id": f.id, "claim": f.claim.format(reference=reference), "how": f.how.format(reference=reference),
            "direction": f.direction, "primary": primary_label(f, [c["metric"] for c in primaries]),
            "comparisons": comps, "verdict": verdict,
            "legacy_verdict": legacy, "power": power(comps, st["alpha"], st["target_detectable"]),
            "alpha": st["alpha"], "margin": st["equivalence_margin"], "target": st["target_detectable"]}


def findings(tables: dict[str, pd.DataFrame], optimizers: dict, methods: dict, reference: str,
             barriers: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None,
             catalogue: Sequence[Finding] = FINDINGS, relearn_report: int | None = None,
             stats_cfg: dict | None = None) -> list[dict]:
    """The paper's testable findings, each with its comparisons and a verdict.

    ``tables`` maps benchmark -> tidy table; ``optimizers``/``methods`` are the config entries (types
    and objectives pick the roles); ``reference`` is the first-order reference (Adam);
    ``relearn_report`` the relearning step count judged
    (`attacks.relearn.report`; None: the longest); ``stats_cfg`` config `report.stats`."""
    return [judge(f, tables, optimizers, methods, reference, barriers, ablation, relearn_report, stats_cfg)
            for f in catalogue]
