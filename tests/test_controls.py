"""The attacks' controls (issue 24): whether an attack is present, from the positive control (the target
after a thin unlearning update) and the negative one (the retrain model under the same attack), on
constructed tidy tables with known answers; and where the controls show in the tables and findings.md."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from unlearning.report import findings as fd
from unlearning.report import findings_report as fr
from unlearning.report import tables as tb

GRADES = {"target": "reference", "retrain": "reference", "control": "reference", "adam": "first", "zo": "zeroth"}
STATS = {"presence_share": 0.3, "presence_negative_points": 10.0}


def _table(control_nf4: float = 20.0, retrain_nf4: float = 1.0, control_before: tuple = (50.0, 40.0, 45.0),
           heldout: bool = False) -> pd.DataFrame:
    """Three seeds of a MUSE-like benchmark: the target at 90 / 80 / 85 KnowMem_f (gap to the control 40
    by default); the control recovers ``control_nf4`` under NF4 on every seed and the retrain model moves
    ``retrain_nf4``; relearning restores 30 on the whole set (the retrain model learns 20 of it: taught)
    and, with ``heldout``, 25 of the held-out part, where the retrain model moves 2."""
    v = {("none", "target", "none", "knowmem_f"): [90.0, 80.0, 85.0],
         ("none", "target", "none", "knowmem_r"): [95.0, 85.0, 90.0],
         ("none", "retrain", "none", "knowmem_f"): [10.0, 12.0, 11.0],
         ("none", "retrain", "nf4", "knowmem_f"): [10.0 + retrain_nf4, 12.0 + retrain_nf4, 11.0 + retrain_nf4],
         ("none", "retrain", "relearn5", "knowmem_f"): [30.0, 32.0, 31.0],
         ("none", "control", "none", "knowmem_f"): list(control_before),
         ("none", "control", "nf4", "knowmem_f"): [b + control_nf4 for b in control_before],
         ("none", "control", "relearn5", "knowmem_f"): [b + 30.0 for b in control_before]}
    if heldout:
        v |= {("none", "target", "none", "knowmem_f_heldout"): [88.0, 78.0, 83.0],
              ("none", "retrain", "none", "knowmem_f_heldout"): [10.0, 10.0, 10.0],
              ("none", "retrain", "relearn5", "knowmem_f_heldout"): [12.0, 12.0, 12.0],
              ("none", "control", "none", "knowmem_f_heldout"): [48.0, 38.0, 43.0],
              ("none", "control", "relearn5", "knowmem_f_heldout"): [73.0, 63.0, 68.0]}
    for opt, rec in (("adam", 10.0), ("zo", 2.0)):
        v |= {("npo", opt, "none", "knowmem_f"): [5.0, 8.0, 6.0],
              ("npo", opt, "nf4", "knowmem_f"): [5.0 + rec, 8.0 + rec + 0.3, 6.0 + rec - 0.2],
              ("npo", opt, "relearn5", "knowmem_f"): [35.0 - rec, 38.0 - rec, 36.0 - rec + 0.1],
              ("npo", opt, "none", "knowmem_r"): [85.0, 75.0, 80.0]}
    rows = [{"benchmark": "muse", "method": m, "optimizer": o, "grade": GRADES[o], "seed": s, "attack": a,
             "metric": k, "value": x} for (m, o, a, k), xs in v.items() for s, x in enumerate(xs)]
    return pd.DataFrame(rows)


def test_present_when_the_positive_control_recovers_its_share_and_the_negative_stays():
    p = fd.attack_presence(_table(), "nf4", "knowmem_f", **{"share": 0.3, "negative_points": 10.0})
    # gap: 85 - 45 = 40; recovery 20 per seed, retrain moves 1: excess 19 = 47.5% of the gap
    assert (p["gap"], p["positive"], p["negative"], p["excess"]) == (40.0, 20.0, 1.0, 19.0)
    assert p["share"] == pytest.approx(0.475) and p["present"] is True


def test_absent_when_the_positive_control_recovers_too_little():
    p = fd.attack_presence(_table(control_nf4=12.0), "nf4", "knowmem_f", 0.3, 10.0)
    assert p["excess"] == 11.0 and p["share"] == pytest.approx(11 / 40) and p["present"] is False
    # the declared share decides: at 25% the same recovery is enough
    assert fd.attack_presence(_table(control_nf4=12.0), "nf4", "knowmem_f", 0.25, 10.0)["present"] is True


def test_absent_when_the_negative_control_moves():
    # the retrain model, which never saw the forget set, moves 12 points: whatever the attack does is not
    # recovery, though the control's excess (32 - 12 = 20, half its gap) would pass
    p = fd.attack_presence(_table(control_nf4=32.0, retrain_nf4=12.0), "nf4", "knowmem_f", 0.3, 10.0)
    assert p["excess"] == 20.0 and p["negative"] == 12.0 and p["present"] is False
    # a drop counts as a move too
    assert fd.attack_presence(_table(retrain_nf4=-11.0), "nf4", "knowmem_f", 0.3, 10.0)["present"] is False
    assert fd.attack_presence(_table(control_nf4=32.0, retrain_nf4=12.0), "nf4", "knowmem_f", 0.3, 15.0)["present"]


def test_relearning_is_judged_on_the_held_out_part_where_the_table_has_it():
    # whole set: the retrain model learns 20 points (taught): absent; held out: it moves 2, the control
    # recovers 25 of its 40: present
    assert fd.attack_presence(_table(), "relearn5", "knowmem_f", 0.3, 10.0)["present"] is False
    p = fd.attack_presence(_table(heldout=True), "relearn5", "knowmem_f", 0.3, 10.0)
    assert p["metric"] == "knowmem_f_heldout" and (p["gap"], p["negative"], p["excess"]) == (40.0, 2.0, 23.0)
    assert p["present"] is True
    # a quantization changes no training data: judged on the whole set
    assert fd.attack_presence(_table(heldout=True), "nf4", "knowmem_f", 0.3, 10.0)["metric"] == "knowmem_f"


def test_unknown_without_the_control_or_when_it_lost_nothing():
    df = _table()
    assert fd.attack_presence(df[df.optimizer != "control"], "nf4", "knowmem_f", 0.3, 10.0)["present"] is None
    p = fd.attack_presence(_table(control_before=(90.0, 80.0, 85.0)), "nf4", "knowmem_f", 0.3, 10.0)
    assert p["gap"] == 0.0 and p["present"] is None and math.isnan(p["share"])
    assert fd.attack_presence(df, "none", "knowmem_f", 0.3, 10.0)["present"] is True


def test_a_gap_under_the_declared_minimum_leaves_presence_unknown():
    # The control forgot 4 points (85 -> 81 on average): too little to judge at min_gap 10, whatever it
    # recovers; at min_gap 3 the same table is judged (and present: it recovers its whole gap).
    thin = _table(control_before=(86.0, 76.0, 81.0), control_nf4=4.0)
    p = fd.attack_presence(thin, "nf4", "knowmem_f", 0.3, 10.0, min_gap=10.0)
    assert p["gap"] == pytest.approx(4.0) and p["present"] is None and math.isnan(p["share"])
    assert fd.attack_presence(thin, "nf4", "knowmem_f", 0.3, 10.0, min_gap=3.0)["present"] is True
    table = fd.presence_table({"muse": thin}, 0.3, 10.0, min_gap=10.0)
    assert table.set_index("attack").loc["nf4", "present"] is None


def test_a_finding_on_an_absent_attack_is_untestable_and_findings_md_shows_the_controls():
    weak = {"muse": _table(control_nf4=2.0, heldout=True)}
    found = {f["id"]: f for f in fd.findings(weak, {"adam": {"type": "adam"}, "zo": {"type": "adazo"}},
                                             {"npo": {"objective": "npo"}}, "adam", stats_cfg=STATS)}
    assert found["Q3"]["verdict"] == fd.UNTESTABLE  # NF4: the control recovered 1 of 40 beyond retrain
    c = next(c for c in found["R1"]["comparisons"] if c["primary"])
    assert c["status"] == "ok" and c["control"] == 20.0  # relearning present on the held-out part
    # ZO recovers 28 on the whole set, Adam 20; the retrain model learns 20 of it
    assert (c["subject_beyond"], c["other_beyond"]) == pytest.approx((8.0 + 0.1 / 3, 0.1 / 3))
    md = fr.findings_markdown(weak, list(found.values()), stats_cfg=STATS)
    assert "## Attack presence" in md
    assert "| muse | nf4 | knowmem_f | 85.0 | 45.0 | 40.0 | 2.0 | 1.0 | 1.0 | 2% | **absent** |" in md
    assert "| muse | relearn5 | knowmem_f_heldout | 83.0 | 43.0 | 40.0 | 25.0 | 2.0 | 23.0 | 57% | present |" in md
    q3 = next(line for line in md.splitlines() if line.startswith("| Q3 |"))
    assert "**untestable: attack absent at this scale**" in q3 and "inconclusive" not in q3
    assert "| Positive control (thin unlearning) |" in md  # the summary tables' control row


def test_tables_show_the_controls_and_the_change_beyond_retrain():
    df = _table(heldout=True)
    wide = tb.main_table(df)
    assert wide.row.tolist()[:3] == ["Original (target)", "Retrain", "Positive control (thin unlearning)"]
    q = tb.quantization_table(df)
    row = q[(q.optimizer == "adam") & (q.metric == "knowmem_f") & (q.attack == "nf4")].iloc[0]
    assert row.change == pytest.approx(10.0 + 0.1 / 3) and row.beyond_retrain == pytest.approx(9.0 + 0.1 / 3)
    ctl = q[(q.optimizer == "control") & (q.metric == "knowmem_f")].iloc[0]
    assert (ctl.change, ctl.beyond_retrain) == (20.0, 19.0)
    rel = tb.relearning_table(df)
    assert {"retrain", "control", "adam", "zo"} == set(rel.optimizer)  # the target is not relearned
    held = rel[(rel.optimizer == "retrain") & (rel.metric == "knowmem_f_heldout")]
    assert held.set_index("steps")["mean"].to_dict() == {0: 10.0, 5: 12.0}
