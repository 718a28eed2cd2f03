"""The paper's testable findings, written as data and judged from the study's own 95% CIs, and
results/README/findings.md that shows them.

Each finding names which optimizers it compares (roles picked from the config's optimizer types),
under which attacks, on which metrics and in which direction; ``judge`` turns one into comparisons
and a verdict. Comparisons come from one of three kinds of evidence: the benchmarks' tidy tables,
the LMC loss barriers, or the hybrid ablation's table.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..registry import SIGN_TYPES, ZO_TYPES, types_of
from .calibration import NOT_REACHED_NOTE, choices, mark
from .calibration import markdown as calibration_markdown
from .files import atomic_text
from .grade_distance import markdown as grade_distance_markdown
from .provenance import markdown as provenance_markdown
from .stats import DOES_NOT, INCONCLUSIVE, REPRODUCES, combine, compare, fmt, overlap
from .tables import summary_table_markdown
from .tidy import forget_metrics, four_bit, last_relearn, methods

NOT_TESTED = "not tested (optimizer not configured)"
NO_ABLATION = "not tested (no ablation configured)"
NO_RUNS = "not tested (no comparable runs)"

# The paper's "first-order downgrades" (R3): the compressed grade and the robust first-order baselines.
FIRST_DOWNGRADE_TYPES = frozenset(types_of("compressed")) | {"sam", "rs"}


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


@dataclass(frozen=True)
class Finding:
    """One claim of the paper and how the study tests it.

    ``subject`` and ``other`` are roles (see ``roles``; ``other`` None = every other optimizer of the
    same benchmark and method; for ablation evidence the roles are ``one_to_one`` and
    ``other_ratio``). ``direction``: ``lower`` (subject below other), ``higher`` (above) or ``same``
    (overlapping intervals). ``evidence``: ``tables``, ``barriers`` or ``ablation``. ``objectives``
    restricts the methods to those with these objectives. ``needs``: further roles without which the
    finding is not tested. ``claim`` and ``how`` may name ``{reference}``. Barrier evidence compares
    the unlearned models (attack ``before``) on one metric, the loss barrier."""

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
            "utility (KnowMem_r / MMLU) before attack: ZO < every other optimizer",
            "zo", None, "before", "utility"),
    Finding("Q5", "Hybrid (FO-ZO) is the most robust to 4-bit quantization.",
            "forget metric after FP4/NF4: hybrid < every other optimizer",
            "hybrid", None, "four_bit", "forget"),
    Finding("Q6", "Hybrid beats SAM under 4-bit quantization.",
            "forget metric after FP4/NF4: hybrid < SAM",
            "hybrid", "sam", "four_bit", "forget"),
    Finding("R1", "After relearning, zeroth order keeps the least forget knowledge.",
            "forget metric (whole set and held-out part) after the reported relearning: ZO < every other optimizer",
            "zo", None, "last_relearn", "forget_and_heldout"),
    Finding("R2", "After relearning, hybrid keeps forget knowledge far below Adam for GradDiff and NPO.",
            "forget metric (whole set and held-out part) after the reported relearning, GradDiff/NPO: "
            "hybrid < {reference}",
            "hybrid", "reference", "last_relearn", "forget_and_heldout", objectives=("grad_diff", "npo")),
    Finding("R3", "After relearning, first-order RS is the best of the first-order downgrades.",
            "forget metric after the reported relearning: RS < SAM / sign / N-bit optimizers",
            "rs", "first_downgrades", "last_relearn", "forget_and_heldout"),
    Finding("L1",
            "Linear mode connectivity: sign-optimizer solutions share {reference}'s basin, zeroth order's do not.",
            "loss barrier on the path from the {reference} solution (forget and retain data): sign < ZO",
            "sign", "zo", "before", "barrier", evidence="barriers", needs=("reference",)),
    Finding("A1", "Ablation: a 1:1 FO:ZO ratio is best.",
            "forget metric before/after attacks: each 1:1 hybrid < each other-ratio hybrid",
            "one_to_one", "other_ratio", "before_four_bit_last_relearn", "forget", evidence="ablation"),
    Finding("A2", "Ablation: the switching interval N hardly matters.",
            "1:1 hybrids with different N: overlapping 95% CIs = reproduces (a claim of no difference), "
            "disjoint = does not",
            "one_to_one", "one_to_one", "before_four_bit_last_relearn", "forget", direction="same",
            evidence="ablation"),
)


def _vals(df: pd.DataFrame, method: str, opt: str, attack: str, metric: str) -> list[float]:
    d = df[(df.method == method) & (df.optimizer == opt) & (df.attack == attack) & (df.metric == metric)]
    return list(d.sort_values("seed").value)


def _judge_pair(a: list[float], b: list[float], direction: str) -> dict:
    """Subject values ``a`` against other values ``b``: the claim's verdict and both sides."""
    if direction == "same":
        r, lower = overlap(a, b), True
    else:
        lower = direction == "lower"
        r = compare(a, b) if lower else compare(b, a)
    s, o = ("lower", "higher") if lower else ("higher", "lower")
    return {"subject_mean": r[f"{s}_mean"], "subject_ci95": r[f"{s}_ci95"], "other_mean": r[f"{o}_mean"],
            "other_ci95": r[f"{o}_ci95"], "n": min(r["lower_n"], r["higher_n"]), "verdict": r["verdict"]}


def _table_comparisons(f: Finding, tables: dict[str, pd.DataFrame], R: dict[str, list[str]],
                       method_objective: dict[str, str], report: int | None = None) -> list[dict]:
    """Subject vs other for every benchmark, method, metric and attack where both ran."""
    subjects, others = R[f.subject], (R[f.other] if f.other is not None else None)
    out = []
    for bench, df in tables.items():
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
                            a, b = _vals(df, method, s, attack, metric), _vals(df, method, o, attack, metric)
                            if not a or not b:
                                continue
                            out.append({"context": f"{bench} / {method} / {metric} / {attack}", "subject": s,
                                        "other": o, **_judge_pair(a, b, f.direction)})
    return out


def _barrier_comparisons(f: Finding, barriers: pd.DataFrame | None, R: dict[str, list[str]]) -> list[dict]:
    """Subject vs other loss barriers per benchmark, method and data split (values over seeds)."""
    out = []
    if barriers is None or barriers.empty:
        return out
    for (bench, method, split), g in barriers.groupby(["benchmark", "method", "split"]):
        for s in [o for o in R[f.subject] if o in set(g.optimizer)]:
            for z in [o for o in R[f.other] if o in set(g.optimizer)]:
                a = list(g[g.optimizer == s].sort_values("seed").barrier)
                b = list(g[g.optimizer == z].sort_values("seed").barrier)
                out.append({"context": f"{bench} / {method} / {split} loss barrier", "subject": s,
                            "other": z, **_judge_pair(a, b, f.direction)})
    return out


def _ablation_comparisons(f: Finding, ablation: pd.DataFrame | None, report: int | None = None) -> list[dict]:
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
        for metric in METRICS[f.metrics](d):
            for attack in ATTACKS[f.attacks](d, report):
                for a, b in pairs:
                    r = _judge_pair(_vals(d, method, a, attack, metric), _vals(d, method, b, attack, metric),
                                    f.direction)
                    if r["n"]:
                        out.append({"context": f"{bench} / {method} / {metric} / {attack}", "subject": a,
                                    "other": b, **r})
    return out


def judge(f: Finding, tables: dict[str, pd.DataFrame], optimizers: dict, methods_cfg: dict, reference: str,
          barriers: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None,
          relearn_report: int | None = None) -> dict:
    """One finding's comparisons and verdict (see ``findings``)."""
    R = roles(optimizers, reference)
    if f.evidence == "tables":
        objective = {m: s.get("objective") for m, s in methods_cfg.items()}
        comps = _table_comparisons(f, tables, R, objective, relearn_report)
    elif f.evidence == "barriers":
        comps = _barrier_comparisons(f, barriers, R)
    elif f.evidence == "ablation":
        comps = _ablation_comparisons(f, ablation, relearn_report)
    else:
        raise ValueError(f"finding {f.id}: unknown evidence {f.evidence!r}")
    if comps:
        verdict = combine([c["verdict"] for c in comps])
    elif f.evidence == "ablation":
        verdict = NO_ABLATION if ablation is None or ablation.empty else NO_RUNS
    elif any(not R[r] for r in (f.subject, f.other, *f.needs) if r is not None):
        verdict = NOT_TESTED
    else:
        verdict = NO_RUNS
    return {"id": f.id, "claim": f.claim.format(reference=reference), "how": f.how.format(reference=reference),
            "comparisons": comps, "verdict": verdict}


def findings(tables: dict[str, pd.DataFrame], optimizers: dict, methods: dict, reference: str,
             barriers: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None,
             catalogue: Sequence[Finding] = FINDINGS, relearn_report: int | None = None) -> list[dict]:
    """The paper's testable findings, each with its comparisons and a combined verdict.

    ``tables`` maps benchmark -> tidy table; ``optimizers``/``methods`` are the config entries (types
    and objectives pick the roles); ``reference`` is the first-order reference (Adam);
    ``relearn_report`` the relearning step count judged (`attacks.relearn.report`; None: the longest)."""
    return [judge(f, tables, optimizers, methods, reference, barriers, ablation, relearn_report)
            for f in catalogue]


def _context_choice(calibrated: dict, context: str, optimizer: str) -> dict | None:
    bench, method = context.split(" / ")[:2]
    return calibrated.get((bench, method, optimizer))


def findings_markdown(tables: dict[str, pd.DataFrame], found: list[dict], figures: Sequence[str] = (),
                      provenance: str | None = None, grade_distance: str | None = None,
                      calibration: pd.DataFrame | None = None) -> str:
    """findings.md: how verdicts are judged, the verdicts, summary tables, figures, the evidence,
    how far apart the grades' solutions landed (``grade_distance``, markdown) and where the evaluations
    ran (``provenance``, markdown). With the ``calibration`` table, the learning rates the study ran
    and a mark on every comparison side whose calibration did not meet its criterion."""
    calibrated = choices(calibration)
    seeds = max(df.seed.nunique() for df in tables.values())
    parts = ["# Findings of the study, judged from its own tables", "",
             "Generated by `unlearning findings` from `results/tables/*.csv`; do not edit by hand.", "",
             f"Means over {seeds} seed(s) ± the half-width of the 95% confidence interval (Student t). "
             "A comparison *reproduces* when the two intervals are disjoint in the paper's direction, *does "
             "not* when they are disjoint against it, and is *inconclusive* when they overlap (always so "
             "with one seed). A finding reproduces when none of its comparisons goes against it and at least "
             "half reproduce; it does not when none supports it and at least half go against it; otherwise "
             "it is inconclusive at this scale.", "", "## Verdicts", "",
             "| | finding | verdict | comparisons (reproduce / against / overlap) |", "|---|---|---|---|"]
    for f in found:
        v = [c["verdict"] for c in f["comparisons"]]
        counts = (f"{v.count(REPRODUCES)} / {v.count(DOES_NOT)} / {v.count(INCONCLUSIVE)}" if v else "–")
        flagged = sum(1 for c in f["comparisons"] if " / " in c["context"] and any(
            mark(o, _context_choice(calibrated, c["context"], o)) != o for o in (c["subject"], c["other"])))
        if flagged:
            counts += f" ({flagged} with a side whose calibration was not reached †)"
        parts.append(f"| {f['id']} | {f['claim']} | **{f['verdict']}** | {counts} |")
    if calibration is not None:
        parts += ["", "## Learning rates (calibration)", "",
                  "Each optimizer entry ran at the multiplier of its configured learning rate that the "
                  "calibration chose (before any attack, on the calibration seeds, or on each seed for itself "
                  "where a row names its seed): the best utility among the grid points whose forget metric met "
                  "the criterion. " + NOT_REACHED_NOTE, "",
                  calibration_markdown(calibration)]
    parts += ["", "## Summary tables", ""]
    for bench, df in tables.items():
        parts += [f"### {bench}", "", summary_table_markdown(df), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figures] + [""]
    parts += ["## Evidence per finding", ""]
    for f in found:
        parts += [f"### {f['id']}: {f['claim']}", "", f"Verdict: **{f['verdict']}**. Test: {f['how']}.", ""]
        if f["comparisons"]:
            parts += ["| context | optimizer | value | compared with | value | verdict |",
                      "|---|---|---:|---|---:|---|"]
            for c in f["comparisons"]:
                s_name, o_name = c["subject"], c["other"]
                if " / " in c["context"]:
                    s_name = mark(s_name, _context_choice(calibrated, c["context"], s_name))
                    o_name = mark(o_name, _context_choice(calibrated, c["context"], o_name))
                parts.append(f"| {c['context']} | {s_name} | {fmt(c['subject_mean'], c['subject_ci95'], 2)} "
                             f"| {o_name} | {fmt(c['other_mean'], c['other_ci95'], 2)} | {c['verdict']} |")
            parts.append("")
    if grade_distance:
        parts += ["## How far apart the grades landed", "",
                  "Unlearned weights of each pair of optimizers of different grades (same benchmark, method "
                  "and seed), mean over seeds: relative distance ||w_a - w_b|| / ||w_a - w_target|| (0: the "
                  "same solution; about 1.4: unrelated moves of equal size), cosine of the two updates, and "
                  "the share of bit-identical weights. A grade that collapsed onto another would show a "
                  "small distance and many identical weights.", "", grade_distance, ""]
    if provenance:
        parts += ["## Where these numbers were made", "", provenance, ""]
    return "\n".join(parts) + "\n"


def write_findings(tables: Sequence[str | Path], optimizers: dict, methods: dict, reference: str,
                   out: str | Path, barriers: Sequence[str | Path] = (), ablation: str | Path | None = None,
                   figures: Sequence[str | Path] = (), figure_names: Sequence[str] = (),
                   provenance: str | Path | None = None, grade_distance: str | Path | None = None,
                   relearn_report: int | None = None, calibration: str | Path | None = None) -> list[dict]:
    """findings.md next to copies of the main figures (PNG) in ``out``'s folder; ``provenance`` is the
    study's provenance table (CSV), ``grade_distance`` its grade-distance table (CSV), ``calibration``
    its calibration table (CSV) when learning rates were calibrated."""
    dfs = {}
    for t in tables:
        df = pd.read_csv(t)
        dfs[df.benchmark.iloc[0]] = df
    bar = [pd.read_csv(b) for b in barriers]
    bar_df = pd.concat(bar, ignore_index=True) if bar else None
    abl = pd.read_csv(ablation) if ablation else None
    found = findings(dfs, optimizers, methods, reference, bar_df, abl, relearn_report=relearn_report)
    out = Path(out)
    names = list(figure_names) or [Path(f).name for f in figures]
    for src_path, name in zip(figures, names):
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_path, out.parent / name)
    env = None
    if provenance is not None:
        env = provenance_markdown(provenance)
    dist = grade_distance_markdown(grade_distance) if grade_distance is not None else None
    cal = pd.read_csv(calibration) if calibration is not None else None
    atomic_text(findings_markdown(dfs, found, names, env, dist, cal), out)
    return found
