"""The verdicts' statistics (issue 25) on synthetic data: paired tests by seed against the legacy
disjoint-interval rule, Holm's correction, TOST equivalence, the detectable difference, intervals
inside a metric's range, collapsed models, absent attacks, and findings built from all of them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from unlearning.report import findings as fd
from unlearning.report import findings_report as fr
from unlearning.report import stats

COLS = ["benchmark", "method", "optimizer", "grade", "seed", "attack", "metric", "value"]
GRADES = {"target": "reference", "retrain": "reference", "control": "reference", "adam": "first",
          "signadam": "compressed", "zo": "zeroth", "hybrid": "hybrid"}
OPTS = {"adam": {"type": "adam"}, "signadam": {"type": "signadam"}, "zo": {"type": "adazo"}}
METHODS = {"npo": {"objective": "npo"}}


def rows(values: dict, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Tidy rows: values[(method, optimizer, attack, metric)] = one value per seed."""
    out = [["muse", m, o, GRADES[o], s, a, k, v[i]] for (m, o, a, k), v in values.items() for i, s in enumerate(seeds)]
    return pd.DataFrame(out, columns=COLS)


def test_paired_test_detects_a_shift_the_disjoint_interval_rule_misses():
    # three seeds whose levels differ widely (as the MUSE targets do), subject 5 points below on every one
    other = [10.0, 40.0, 70.0]
    subject = [4.9, 35.1, 65.0]
    legacy = stats.compare(subject, other)
    assert legacy["verdict"] == stats.INCONCLUSIVE  # intervals 35 ± 75 and 40 ± 75 overlap
    r = stats.paired(subject, other)
    assert r["effect"] == pytest.approx(-5.0)
    t = -5 / (0.1 / math.sqrt(3))  # -86.6; with 2 df the two-sided p is 1 - |t| / sqrt(t^2 + 2)
    assert r["p"] == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2), rel=1e-6) and r["p"] < 2e-4
    assert r["hi"] < 0  # the paired 95% interval excludes 0
    assert stats.directional(r["effect"], r["p"], -1) == stats.FOR
    assert stats.directional(r["effect"], r["p"], +1) == stats.AGAINST
    assert stats.directional(r["effect"], 0.2, -1) == stats.NEITHER


def test_paired_p_is_scipys_paired_t_test():
    from scipy import stats as sps

    a, b = [4.9, 35.1, 65.2, 20.0], [10.0, 40.0, 70.0, 21.0]
    assert stats.paired(a, b)["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)


def test_paired_edge_cases():
    assert stats.paired([1, 2, 3], [0, 1, 2])["p"] == 0.0  # identical non-zero differences
    assert stats.paired([1, 2, 3], [1, 2, 3])["p"] == 1.0
    assert math.isnan(stats.paired([1], [0])["p"])


def test_sign_flip_test_cannot_reach_five_percent_at_three_seeds():
    # why the verdicts use the t-test: 8 sign patterns, the smallest two-sided p is 2/8
    assert stats.sign_flip_p([5, 6, 7], [0, 0, 0]) == pytest.approx(0.25)
    assert stats.sign_flip_p(list(range(1, 7)), [0] * 6) == pytest.approx(2 / 64)


def test_holm_adjusted_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adj = stats.holm([0.01, math.nan, 0.02])  # NaN does not count in m
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)


def test_tost_equivalence_both_ways():
    base = np.array([10.0, 40.0, 70.0])
    close = base + np.array([0.5, -0.4, 0.2])  # differences near 0 with little spread
    p_eq = stats.tost(close, base, margin=5.0)
    assert p_eq < 0.05
    assert stats.equivalence(p_eq, stats.paired(close, base)["p"]) == stats.EQUIVALENT
    far = base + np.array([11.0, 12.0, 13.0])  # clearly different
    assert stats.tost(far, base, margin=5.0) > 0.5
    assert stats.equivalence(stats.tost(far, base, 5.0), stats.paired(far, base)["p"]) == stats.DIFFERENT
    noisy = base + np.array([8.0, -9.0, 2.0])  # overlapping but not shown equivalent: neither
    assert stats.equivalence(stats.tost(noisy, base, 5.0), stats.paired(noisy, base)["p"]) == stats.NEITHER
    # the legacy rule called that last case "the same" (overlapping intervals)
    assert stats.overlap(list(noisy), list(base))["verdict"] == stats.REPRODUCES
    assert fd.verdict_of([stats.EQUIVALENT, stats.NEITHER], "same") == stats.INCONCLUSIVE
    assert fd.verdict_of([stats.EQUIVALENT, stats.EQUIVALENT], "same") == stats.REPRODUCES
    assert fd.verdict_of([stats.EQUIVALENT, stats.DIFFERENT], "same") == stats.DOES_NOT


def test_detectable_difference_has_the_stated_power():
    d = stats.detectable(10.0, 3)
    assert d == pytest.approx(32.64, abs=0.05)
    # Monte Carlo check: at that true difference the paired t-test at 5% rejects 80% of the time
    rng = np.random.default_rng(0)
    from scipy import stats as sps

    diffs = rng.normal(d, 10.0, size=(20000, 3))
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(3))
    assert np.mean(np.abs(t) > sps.t.ppf(0.975, 2)) == pytest.approx(0.80, abs=0.01)
    assert stats.detectable(10.0, 5) < d and stats.detectable(10.0, 3, alpha=0.05 / 4) > d
    assert stats.seeds_for(10.0, 10.0) == 10
    assert stats.detectable(10.0, 10) <= 10.0 < stats.detectable(10.0, 9)


def test_bounded_interval_stays_in_range():
    v = [94.4, 39.4, 92.1]  # the MUSE targets' KnowMem_f: the t-interval is 75.3 ± 77.3
    m, h, _ = stats.mean_ci(v)
    assert m + h > 100 and m - h < 0
    lo, hi = stats.bounded_ci(v)
    assert 0 < lo < m < hi <= 100
    assert (lo, hi) == pytest.approx((5.67, 100.0), abs=0.01)  # 99.76 is within 0.5 of the edge: the edge
    # all three within 0.5 points of 0: the squeezed logits coincide, the interval reaches the edge
    assert stats.bounded_ci([0.3, 0.4, 0.45]) == (0.0, pytest.approx(0.5))
    lo0, hi0 = stats.bounded_ci([0.0, 0.0, 3.0])  # at the edge: asymmetric, never beyond it
    assert 0 <= lo0 < 0.5 and 3 < hi0 < 100 and stats.mean_ci([0.0, 0.0, 3.0])[1] > 1  # t: 1 ± 4.3
    assert stats.bounded_ci([100, 100, 100]) == (100.0, 100.0)
    assert stats.bounded_ci([0.2, 0.5, 0.9], 0, 1)[1] < 1
    assert stats.fmt_interval(75.3, 5.67, 99.79) == "75.3 [5.7, 99.8]"


def study(zo_utility: float | None = None, nf4_recovery: float = 20.0, zo_offset: float = -10.0) -> pd.DataFrame:
    """A MUSE-like study: seeds whose levels differ, Adam and signAdam recover ``nf4_recovery`` under
    NF4 and 30 under relearning, ZO ``zo_offset`` less on every seed (plus a little noise); the
    attacks' positive control (gap 27.3 points) recovers ``nf4_recovery`` and 30 likewise. Utility:
    80% of each seed's target's; ZO's ``zo_utility`` % of it, or (None) 10 points below the others."""
    base = np.array([5.0, 12.0, 8.0])
    jitter = np.array([0.3, -0.2, 0.1])
    v = {("none", "target", "none", "knowmem_f"): [94, 39, 92], ("none", "target", "none", "knowmem_r"): [99, 31, 93],
         ("none", "retrain", "none", "knowmem_f"): [12, 8, 11], ("none", "retrain", "nf4", "knowmem_f"): [12, 8, 11],
         ("none", "retrain", "relearn25", "knowmem_f"): [15, 9, 13],
         ("none", "control", "none", "knowmem_f"): [60, 25, 58],
         ("none", "control", "nf4", "knowmem_f"): [60 + nf4_recovery, 25 + nf4_recovery, 58 + nf4_recovery],
         ("none", "control", "relearn25", "knowmem_f"): [90, 55, 88]}
    for o, off in (("adam", 0.0), ("signadam", 1.0), ("zo", zo_offset)):
        v[("npo", o, "none", "knowmem_f")] = list(base)
        v[("npo", o, "nf4", "knowmem_f")] = list(base + np.maximum(0.0, nf4_recovery + off + jitter * (o != "adam")))
        v[("npo", o, "relearn25", "knowmem_f")] = list(base + 30 + off + jitter * (o != "adam"))
        util = np.array([99, 31, 93]) * 0.8 + jitter
        if o == "zo":
            util = np.array([99, 31, 93]) * zo_utility / 100 if zo_utility is not None else util - 10 - jitter / 2
        v[("npo", o, "none", "knowmem_r")] = list(util)
    return rows(v)


def test_findings_recovery_primary_and_legacy_side_by_side():
    found = {f["id"]: f for f in fd.findings({"muse": study()}, OPTS, METHODS, "adam")}
    q3 = found["Q3"]
    prim = [c for c in q3["comparisons"] if c["primary"]]
    assert {(c["other"], c["attack"], c["metric"]) for c in prim} == {("adam", "nf4", "knowmem_f"),
                                                                       ("signadam", "nf4", "knowmem_f")}
    assert all(c["measure"] == "recovery" and c["p_holm"] >= c["p"] for c in prim)
    assert q3["verdict"] == stats.REPRODUCES  # ZO recovers 10-11 points less on every seed
    assert q3["legacy_verdict"] == stats.INCONCLUSIVE  # the levels' unpaired intervals overlap
    assert q3["power"]["m"] == 2 and q3["power"]["mde"] < 10
    r1 = found["R1"]
    assert {c["attack"] for c in r1["comparisons"] if c["primary"]} == {"relearn25"}
    c = next(c for c in r1["comparisons"] if c["primary"] and c["other"] == "adam")
    assert c["control"] == pytest.approx(2.0)  # the retrain model's change under the same attack
    v = fr.verdicts_frame(list(found.values()), 3)
    assert list(v.columns[:5]) == ["id", "claim", "primary", "verdict", "legacy_verdict"]


@pytest.mark.slow
def test_collapsed_model_is_left_out_and_counted():
    found = {f["id"]: f for f in fd.findings({"muse": study(zo_utility=10.0)}, OPTS, METHODS, "adam")}
    assert found["Q3"]["verdict"] == fd.COLLAPSED
    assert found["Q4"]["verdict"] == fd.COLLAPSED  # judged among models that kept utility: none is ZO
    assert fr.counts(found["Q4"])["collapsed"] == 2
    c = next(c for c in found["Q3"]["comparisons"] if c["primary"])
    assert c["status"] == "collapsed" and c["collapsed"].startswith("zo (10% of the target's utility)")
    assert math.isnan(c["p_holm"])  # not voting
    # 10 points below the others on every seed (62% of the targets' utility on average) ZO kept its
    # utility at the declared share 0.5: judged, and the worst; at a declared share of 0.7 it collapsed
    kept = {f["id"]: f for f in fd.findings({"muse": study()}, OPTS, METHODS, "adam")}
    assert kept["Q4"]["verdict"] == stats.REPRODUCES and fr.counts(kept["Q4"])["collapsed"] == 0
    share = {f["id"]: f for f in fd.findings({"muse": study()}, OPTS, METHODS, "adam",
                                             stats_cfg={"collapse_share": 0.7})}
    assert share["Q4"]["verdict"] == fd.COLLAPSED


def test_absent_attack_makes_a_finding_untestable():
    # NF4 restores nothing (Adam recovers 0 beyond the retrain model's 0): Q1, Q3 untestable, never
    # inconclusive; relearning restores 30 - 2 points: R1 judged
    found = {f["id"]: f for f in fd.findings({"muse": study(nf4_recovery=0.0)}, OPTS, METHODS, "adam")}
    assert found["Q1"]["verdict"] == fd.UNTESTABLE == "untestable: attack absent at this scale"
    assert found["Q3"]["verdict"] == fd.UNTESTABLE
    assert found["R1"]["verdict"] == stats.REPRODUCES
    df = study(nf4_recovery=0.0)
    pres = fd.attack_presence(df, "nf4", "knowmem_f", share=0.3, negative_points=10.0)
    assert pres["present"] is False and pres["excess"] == pytest.approx(0.0)
    rel = fd.attack_presence(df, "relearn25", "knowmem_f", share=0.3, negative_points=10.0)
    assert rel["present"] is True and rel["excess"] == pytest.approx(28.0)
    assert fd.attack_presence(df, "relearn25", "knowmem_f", 0.3, 10.0, positive="sophia")["present"] is None
    # the declared bound decides: the retrain model moves 2 points under relearning, over a bound of 1
    strict = {f["id"]: f for f in fd.findings({"muse": df}, OPTS, METHODS, "adam",
                                              stats_cfg={"presence_negative_points": 1.0})}
    assert strict["R1"]["verdict"] == fd.UNTESTABLE
    md = fr.findings_markdown({"muse": df}, list(found.values()))
    assert "**untestable: attack absent at this scale**" in md


def test_collapse_counts_multiple_choice_utility_above_chance():
    # WMDP-like: the target answers 40% of MMLU-style questions (chance 25); ZO at 27% has kept 2 of the
    # 15 points above chance (13%), Adam at 38% 13 of them (87%)
    vals = {("none", "target", "none", "mmlu_acc"): [40, 41, 39], ("none", "target", "none", "wmdp_acc"): [100] * 3,
            ("npo", "zo", "none", "mmlu_acc"): [27, 28, 26], ("npo", "adam", "none", "mmlu_acc"): [38, 39, 37],
            ("npo", "zo", "none", "wmdp_acc"): [30] * 3, ("npo", "adam", "none", "wmdp_acc"): [30] * 3}
    df = rows(vals).assign(benchmark="wmdp")
    assert fd.collapsed(df, "npo", "zo", 0.5) == pytest.approx((2 / 15 + 3 / 16 + 1 / 14) / 3)  # by seed
    assert fd.collapsed(df, "npo", "adam", 0.5) is None



def test_write_findings_writes_markdown_verdicts_and_comparisons(tmp_path):
    table = tmp_path / "muse.csv"
    df = study()
    fp4 = df[df.attack == "nf4"].assign(attack="fp4")  # FP4: secondary, it does not vote
    pd.concat([df, fp4]).to_csv(table, index=False)
    found = fr.write_findings([table], OPTS, METHODS, "adam", tmp_path / "README" / "findings.md",
                              stats_cfg={"alpha": 0.05}, verdicts_csv=tmp_path / "README" / "verdicts.csv",
                              comparisons_csv=tmp_path / "README" / "comparisons.csv")
    v = pd.read_csv(tmp_path / "README" / "verdicts.csv")
    assert list(v.id) == [f.id for f in fd.FINDINGS] and v.set_index("id").loc["Q3", "verdict"] == stats.REPRODUCES
    c = pd.read_csv(tmp_path / "README" / "comparisons.csv")
    assert len(c) == sum(len(f["comparisons"]) for f in found) and c.primary.any() and (~c.primary).any()
    md = (tmp_path / "README" / "findings.md").read_text()
    assert "Primary comparisons (voting" in md and "Secondary comparisons" in md and "seeds for 10 points" in md


def test_a_finding_without_its_primary_comparison_is_not_tested():
    # only FP4 ran: NF4, the declared primary attack family's member, falls back to FP4 (the first 4-bit
    # attack present); with no 4-bit attack at all the relearning findings still run but Q1 has no row
    df = study()
    q1 = {f["id"]: f for f in fd.findings({"muse": df.assign(attack=df.attack.replace("nf4", "fp4"))}, OPTS,
                                          METHODS, "adam")}["Q1"]
    assert {c["attack"] for c in q1["comparisons"] if c["primary"]} == {"fp4"}
    no_utility = df[df.metric != "knowmem_f"]  # Q4's comparisons run; the forget findings have none
    found = {f["id"]: f for f in fd.findings({"muse": no_utility}, OPTS, METHODS, "adam")}
    assert found["Q4"]["verdict"] == stats.REPRODUCES and found["Q3"]["verdict"] == fd.NO_RUNS
    barrier_only = {f["id"]: f for f in fd.findings({"muse": df}, OPTS, METHODS, "adam", barriers=pd.DataFrame(
        [{"benchmark": "muse", "method": "npo", "seed": s, "optimizer": o, "split": "retain", "barrier": 0.1 * s}
         for s in range(3) for o in ("signadam", "zo")]))}
    assert barrier_only["L1"]["verdict"] == fd.NO_PRIMARY  # only the retain split's barrier: secondary

