"""results/README/findings.md, verdicts.csv and comparisons.csv: the findings judged by
``report.findings`` shown with their primary comparisons (paired effect, interval, Holm p), the
secondary ones, the power statement, the legacy rule's verdicts beside, summary tables, figures, the
calibration's choices, the grades' distances and where the numbers were made."""

from __future__ import annotations

import shutil
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..commands import Stage, json_arg
from . import quant_check
from .calibration import NOT_REACHED_NOTE, OVERSHOT_NOTE, choices, mark
from .calibration import markdown as calibration_markdown
from .files import atomic_csv, atomic_text
from .findings import STATS_DEFAULTS, findings, presence_table
from .grade_distance import markdown as grade_distance_markdown
from .provenance import markdown as provenance_markdown
from .stats import AGAINST, DIFFERENT, EQUIVALENT, FOR, NEITHER, fmt_interval
from .tables import summary_table_markdown


def counts(f: dict) -> dict[str, int]:
    """How a finding's primary comparisons came out: voting ones by outcome, excluded ones by reason."""
    prim = [c for c in f["comparisons"] if c["primary"]]
    out = {k: sum(c["outcome"] == k for c in prim) for k in (FOR, AGAINST, EQUIVALENT, DIFFERENT, NEITHER)}
    out["collapsed"] = sum(c["status"] == "collapsed" for c in prim)
    out["untestable"] = sum(c["status"] == "untestable" for c in prim)
    out["primary"] = len(prim)
    return out


def _pfmt(p: float) -> str:
    return "" if p != p else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _num(x: float, digits: int = 1) -> str:
    return "" if x != x else f"{x:.{digits}f}"


def outcome_summary(f: dict) -> str:
    """Primary outcomes in words: e.g. ``2 for, 0 against, 10 neither; 4 collapsed``."""
    k = counts(f)
    if not k["primary"]:
        return "–"
    if f["direction"] == "same":
        parts = [f"{k[EQUIVALENT]} equivalent, {k[DIFFERENT]} different, {k[NEITHER]} neither"]
    else:
        parts = [f"{k[FOR]} for, {k[AGAINST]} against, {k[NEITHER]} neither"]
    extra = [f"{k[x]} {x}" for x in ("collapsed", "untestable") if k[x]]
    return parts[0] + ("; " + ", ".join(extra) if extra else "")


def power_summary(f: dict) -> str:
    """The power statement in words (empty without voting comparisons)."""
    pw = f["power"]
    if not pw["m"]:
        return ""
    need = pw["seeds_needed"]
    return (f"paired SD {pw['sd']:.1f}; detectable at {pw['n']} seeds: {pw['mde']:.1f} (alpha {f['alpha']:g}), "
            f"{pw['mde_holm']:.1f} (alpha/{pw['m']}); at 5 seeds {pw['mde5_holm']:.1f}; "
            + (f"{need} seeds detect {f['target']:g} points" if need is not None
               else f"over 100 seeds to detect {f['target']:g} points"))


def verdicts_frame(found: list[dict], seeds: int) -> pd.DataFrame:
    """One row per finding: the verdict, the legacy rule's verdict, the primary comparison, the
    outcomes and the power statement (results/README/verdicts.csv, which README's block reads)."""
    rows = []
    for f in found:
        k, pw = counts(f), f["power"]
        rows.append({"id": f["id"], "claim": f["claim"], "primary": f["primary"], "verdict": f["verdict"],
                     "legacy_verdict": f["legacy_verdict"], "outcomes": outcome_summary(f), "seeds": seeds,
                     **{f"n_{x}": k[x] for x in ("primary", FOR, AGAINST, EQUIVALENT, DIFFERENT, NEITHER,
                                                  "collapsed", "untestable")},
                     "paired_sd": pw["sd"], "mde": pw["mde"], "mde_holm": pw["mde_holm"],
                     "mde5_holm": pw["mde5_holm"], "target_detectable": f["target"],
                     "seeds_for_target": pw["seeds_needed"]})
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = ["id", "benchmark", "method", "metric", "attack", "subject", "other", "primary", "status",
                      "collapsed", "measure", "n", "subject_level", "subject_lo", "subject_hi", "other_level",
                      "other_lo", "other_hi", "subject_recovery", "other_recovery", "control", "subject_beyond",
                      "other_beyond", "presence_share",
                      "effect", "lo", "hi", "sd", "p", "p_holm", "p_tost", "p_tost_holm", "outcome", "legacy"]


def comparisons_frame(found: list[dict]) -> pd.DataFrame:
    """Every comparison of every finding, one row each (results/README/comparisons.csv)."""
    rows = [{"id": f["id"], **{k: c.get(k) for k in COMPARISON_COLUMNS[1:]}} for f in found for c in f["comparisons"]]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _context_choice(calibrated: dict, context: str, optimizer: str) -> dict | None:
    bench, method = context.split(" / ")[:2]
    return calibrated.get((bench, method, optimizer))


HOW = (
    "Each seed is a whole replicate (its own target, retrain model, calibration and runs), so two "
    "optimizers are compared by their per-seed differences: the *paired effect* (subject - other, mean "
    "over seeds) with its 95% Student-t interval and a two-sided paired t-test. Under an attack the "
    "measure is the **recovery** (after - before, per seed); the level after the attack is shown beside "
    "it. Each finding declares its **primary** comparisons before the run (per benchmark one metric under "
    "one attack, for every method and pair of optimizers); only they vote, with Holm's correction across "
    "them; every other comparison is secondary. A directional finding *reproduces* when every voting "
    "primary comparison is significant in the paper's direction, *does not* when any is significant "
    "against it, and is *inconclusive at this scale* otherwise. A claim of no difference (A2) reproduces "
    "when every primary comparison is equivalent within ±{margin:g} points (TOST), does not when any "
    "differs significantly. A model whose unattacked utility fell below {share:.0%} of the target's (above "
    "chance for MMLU) is "
    "*collapsed* and left out (a finding with only collapsed primaries reads *collapsed*). An attack is "
    "*present* in a benchmark when its positive control (the target after a thin unlearning update) recovers "
    "at least {share_gap:.0%} of its gap beyond the retrain model's move under the same attack (paired by "
    "seed), and the retrain model moves at most {negative:g} points (see *Attack presence*); under an absent "
    "attack the comparisons are *untestable*, never inconclusive. Levels are "
    "given with 95% intervals on the logit scale, which stay inside 0-100. alpha = {alpha:g}. "
    "docs/reference/statistics.md says why each choice.")


def findings_markdown(tables: dict[str, pd.DataFrame], found: list[dict], figures: Sequence[str] = (),
                      provenance: str | None = None, grade_distance: str | None = None,
                      calibration: pd.DataFrame | None = None, stats_cfg: dict | None = None,
                      reference: str = "adam") -> str:
    """findings.md: how verdicts are judged, the verdicts (with the legacy rule's beside), summary
    tables, figures, the evidence (primary comparisons with paired effect, interval, Holm p; then the
    secondary ones), how far apart the grades' solutions landed (``grade_distance``, markdown) and
    where the evaluations ran (``provenance``, markdown). With the ``calibration`` table, the learning
    rates the study ran and a mark on every comparison side whose calibration did not meet its
    criterion."""
    st = {**STATS_DEFAULTS, **(stats_cfg or {})}
    calibrated = choices(calibration)
    seeds = max(df.seed.nunique() for df in tables.values())
    parts = ["# Findings of the study, judged from its own tables", "",
             "Generated by `unlearning findings` from `results/tables/*.csv`; do not edit by hand.", "",
             f"{seeds} seed(s). " + HOW.format(margin=st["equivalence_margin"], share=st["collapse_share"],
                                               share_gap=st["presence_share"],
                                               negative=st["presence_negative_points"], alpha=st["alpha"]),
             "", "## Verdicts", "",
             "| | finding | primary comparison | primary outcomes | verdict | old rule (disjoint intervals) |",
             "|---|---|---|---|---|---|"]
    for f in found:
        outcomes = outcome_summary(f)
        flagged = sum(1 for c in f["comparisons"] if c["primary"] and " / " in c["context"] and any(
            mark(o, _context_choice(calibrated, c["context"], o)) != o for o in (c["subject"], c["other"])))
        if flagged:
            outcomes += f" ({flagged} with a side whose calibration was not reached † or overshot ‡)"
        parts.append(f"| {f['id']} | {f['claim']} | {f['primary']} | {outcomes} | **{f['verdict']}** "
                     f"| {f['legacy_verdict']} |")
    parts += ["", "Smallest paired difference the seeds detect (two-sided paired t-test, 80% power, from the "
              "observed paired SD of the voting primary comparisons; at alpha and at Holm's strictest level "
              f"alpha/m), and the seeds needed to detect {st['target_detectable']:g} points at alpha/m:", "",
              "| | seeds | voting primaries (m) | paired SD | detectable (alpha) | detectable (alpha/m) "
              f"| at 5 seeds (alpha/m) | seeds for {st['target_detectable']:g} points |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in found:
        pw = f["power"]
        if pw["m"]:
            need = pw["seeds_needed"] if pw["seeds_needed"] is not None else "> 100"
            parts.append(f"| {f['id']} | {pw['n']} | {pw['m']} | {_num(pw['sd'])} | {_num(pw['mde'])} | "
                         f"{_num(pw['mde_holm'])} | {_num(pw['mde5_holm'])} | {need} |")
    parts += ["", "## Attack presence", "", presence_markdown(tables, st)]
    parts += ["", "### Does the target keep its forget knowledge under each quantizer?", "",
              quant_check.markdown(tables, st["quantization_target_share"])]
    if calibration is not None:
        parts += ["", "## Learning rates (calibration)", "",
                  "Each optimizer entry ran at the multiplier of its configured learning rate that the "
                  "calibration chose (before any attack, on the calibration seeds, or on each seed for itself "
                  "where a row names its seed): the best utility among the grid points whose forget metric met "
                  "the criterion (under early stopping: the lowest rung whose run stopped at the retrain "
                  "model's level). " + NOT_REACHED_NOTE + " " + OVERSHOT_NOTE, "",
                  calibration_markdown(calibration)]
    parts += ["", "## Summary tables", "",
              "Mean over seeds [95% interval; logit scale for 0-100 metrics, Student t otherwise].", ""]
    for bench, df in tables.items():
        parts += [f"### {bench}", "", summary_table_markdown(df, bounded=True), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figures] + [""]
    parts += ["## Evidence per finding", ""]
    for f in found:
        parts += [f"### {f['id']}: {f['claim']}", "",
                  f"Verdict: **{f['verdict']}** (old rule: {f['legacy_verdict']}). Test: {f['how']}. "
                  f"Primary: {f['primary']}; outcomes: {outcome_summary(f)}."]
        ps = power_summary(f)
        parts += ([f"Power: {ps}."] if ps else []) + [""]
        prim = [c for c in f["comparisons"] if c["primary"]]
        sec = [c for c in f["comparisons"] if not c["primary"]]
        if prim:
            parts += ["Primary comparisons (voting; level: mean [95% interval] after the attack; paired effect: "
                      "subject - other in the measure, paired by seed; retrain's change: the negative control "
                      "under the same attack; beyond retrain: each side's recovery minus it, subject / other):",
                      "",
                      "| benchmark / method | optimizer | level | compared with | level | retrain's change "
                      "| beyond retrain | measure | paired effect [95% CI] | p | Holm p | outcome |",
                      "|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|---|"]
            for c in prim:
                parts.append(_row(c, calibrated, f["direction"]))
            parts.append("")
        if sec:
            parts += [f"Secondary comparisons ({len(sec)}, not voting; p unadjusted):", "",
                      "| context | optimizer | compared with | measure | paired effect [95% CI] | p | outcome "
                      "| old rule |", "|---|---|---|---|---:|---:|---|---|"]
            for c in sec:
                s_name, o_name = _names(c, calibrated)
                parts.append(f"| {c['context']} | {s_name} | {o_name} | {c['measure']} | "
                             f"{fmt_interval(c['effect'], c['lo'], c['hi'], 2)} | {_pfmt(c['p'])} | {c['outcome']} "
                             f"| {c['legacy']} |")
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


def _pct(x: float) -> str:
    return "an unknown share" if x != x else f"{100 * x:.0f}%"


def _beyond(c: dict) -> str:
    """Each side's recovery beyond the retrain model's change (blank before any attack)."""
    s, o = c.get("subject_beyond", float("nan")), c.get("other_beyond", float("nan"))
    return "" if s != s and o != o else f"{_num(s)} / {_num(o)}"


def presence_markdown(tables: dict[str, pd.DataFrame], st: dict) -> str:
    """The attacks' controls per benchmark and attack (``findings.presence_table``) as markdown."""
    df = presence_table(tables, st["presence_share"], st["presence_negative_points"], st["presence_min_gap"])
    lines = ["Per benchmark and attack, on the primary forget metric (its held-out part under relearning, which "
             "trains on part of the forget set), means over seeds: the target's level; the positive control's "
             "(the target after a thin unlearning update, config `controls.positive`) before the attack; its "
             "*gap* (target - control); its *recovery* (after - before); the retrain model's move under the same "
             "attack (the negative control, relearned the same steps); the *excess* (recovery - retrain's move, "
             f"paired by seed) and its share of the gap. Present: share >= {st['presence_share']:.0%} and "
             f"|retrain's move| <= {st['presence_negative_points']:g} points; unknown when the control's gap is under "
             f"{st['presence_min_gap']:g} points (it forgot too little to judge).", "",
             *presence_rows(df, {True: "present", False: "**absent**"},
                            "unknown (no control, or its gap is too small)")]
    return "\n".join(lines)


def presence_rows(df: pd.DataFrame, verdicts: dict, unknown: str,
                  num: Callable[[float], str] = _num) -> list[str]:
    """The controls' table (``findings.presence_table``'s frame, or presence.csv read back): header and
    one row per benchmark and attack, ``verdicts[present]`` in the last column (``unknown`` otherwise)."""
    lines = ["| benchmark | attack | metric | target | control before | gap | recovery | retrain moves | excess "
             "| share of gap | present |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in df.itertuples():
        verdict = verdicts.get(r.present, unknown) if r.present == r.present else unknown
        share = "" if r.share != r.share else f"{100 * r.share:.0f}%"
        lines.append(f"| {r.benchmark} | {r.attack} | {r.metric} | {num(r.target)} | {num(r.before)} | "
                     f"{num(r.gap)} | {num(r.positive)} | {num(r.negative)} | {num(r.excess)} | {share} "
                     f"| {verdict} |")
    return lines


def _names(c: dict, calibrated: dict) -> tuple[str, str]:
    s_name, o_name = c["subject"], c["other"]
    if " / " in c["context"]:
        s_name = mark(s_name, _context_choice(calibrated, c["context"], s_name))
        o_name = mark(o_name, _context_choice(calibrated, c["context"], o_name))
    return s_name, o_name


def _row(c: dict, calibrated: dict, direction: str) -> str:
    s_name, o_name = _names(c, calibrated)
    where = f"{c['benchmark']} / {c['method']} / {c['metric']} / {c['attack']}"
    p = c["p_tost"] if direction == "same" else c["p"]
    ph = c["p_tost_holm"] if direction == "same" else c["p_holm"]
    outcome = c["outcome"] if c["status"] == "ok" else f"{c['status']}" + (
        f": {c['collapsed']}" if c["status"] == "collapsed" else
        f" (positive control recovered {_pct(c['presence_share'])} of its gap beyond retrain)")
    ptest = " (TOST)" if direction == "same" else ""
    return (f"| {where} | {s_name} | {fmt_interval(c['subject_level'], c['subject_lo'], c['subject_hi'])} | "
            f"{o_name} | {fmt_interval(c['other_level'], c['other_lo'], c['other_hi'])} | {_num(c['control'])} | "
            f"{_beyond(c)} | {c['measure']} | {fmt_interval(c['effect'], c['lo'], c['hi'], 2)} | {_pfmt(p)}{ptest} | "
            f"{_pfmt(ph)} | {outcome} |")


def write_findings(tables: Sequence[str | Path], optimizers: dict, methods: dict, reference: str,
                   out: str | Path, barriers: Sequence[str | Path] = (), ablation: str | Path | None = None,
                   figures: Sequence[str | Path] = (), figure_names: Sequence[str] = (),
                   provenance: str | Path | None = None, grade_distance: str | Path | None = None,
                   relearn_report: int | None = None, calibration: str | Path | None = None,
                   stats_cfg: dict | None = None, verdicts_csv: str | Path | None = None,
                   comparisons_csv: str | Path | None = None) -> list[dict]:
    """findings.md next to copies of the main figures (PNG) in ``out``'s folder; ``provenance`` is the
    study's provenance table (CSV), ``grade_distance`` its grade-distance table (CSV), ``calibration``
    its calibration table (CSV) when learning rates were calibrated; ``stats_cfg`` config
    `report.stats`. ``verdicts_csv`` / ``comparisons_csv``: where to write the verdicts and every
    comparison as CSV (README's generated blocks read the first)."""
    dfs = {}
    for t in tables:
        df = pd.read_csv(t)
        dfs[df.benchmark.iloc[0]] = df
    bar = [pd.read_csv(b) for b in barriers]
    bar_df = pd.concat(bar, ignore_index=True) if bar else None
    abl = pd.read_csv(ablation) if ablation else None
    found = findings(dfs, optimizers, methods, reference, bar_df, abl, relearn_report=relearn_report,
                     stats_cfg=stats_cfg)
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
    atomic_text(findings_markdown(dfs, found, names, env, dist, cal, stats_cfg, reference), out)
    seeds = max(df.seed.nunique() for df in dfs.values())
    if verdicts_csv is not None:
        atomic_csv(verdicts_frame(found, seeds), verdicts_csv)
    if comparisons_csv is not None:
        atomic_csv(comparisons_frame(found), comparisons_csv)
    return found


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--tables", nargs="+", required=True)
    p.add_argument("--optimizers", type=json_arg, required=True)
    p.add_argument("--methods", type=json_arg, required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--barriers", nargs="*", default=[])
    p.add_argument("--ablation", default=None)
    p.add_argument("--provenance", default=None, help="the study's provenance table (CSV)")
    p.add_argument("--grade-distance", default=None, help="the study's grade-distance table (CSV)")
    p.add_argument("--figures", nargs="*", default=[], help="PNG files copied next to the markdown")
    p.add_argument("--figure-names", nargs="*", default=[], help="their names there")
    p.add_argument("--relearn-report", type=int, default=None,
                   help="relearning step count the findings judge (default the longest)")
    p.add_argument("--calibration", default=None, help="the calibration table (CSV), if calibrated")
    p.add_argument("--stats", type=json_arg, default=None,
                   help="config `report.stats` (JSON): alpha, margins, shares")
    p.add_argument("--verdicts-csv", default=None, help="write one row per finding here (CSV)")
    p.add_argument("--comparisons-csv", default=None, help="write every comparison here (CSV)")
    p.add_argument("--out", required=True)


def _run(a: Namespace) -> None:
    write_findings(a.tables, a.optimizers, a.methods, a.reference, a.out, barriers=a.barriers or (),
                   ablation=a.ablation, figures=a.figures or (), figure_names=a.figure_names or (),
                   provenance=a.provenance, grade_distance=a.grade_distance, relearn_report=a.relearn_report,
                   calibration=a.calibration, stats_cfg=a.stats, verdicts_csv=a.verdicts_csv,
                   comparisons_csv=a.comparisons_csv)


STAGE = Stage(_arguments, _run, needs_torch=False)
