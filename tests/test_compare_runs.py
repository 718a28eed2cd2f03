"""unlearning compare-runs (unlearning.bench.compare_runs): two runs' verdicts, calibration choices and
per-metric agreement."""

from __future__ import annotations

import pandas as pd

from unlearning.bench import compare_runs as cr


def _run(root, values, chosen, findings="reproduces"):
    """A results folder: a tidy table (3 seeds per optimizer), a calibration table, findings.md."""
    (root / "tables").mkdir(parents=True)
    (root / "README").mkdir()
    rows = [{"benchmark": "muse", "method": "npo", "optimizer": o, "grade": "first", "seed": s, "attack": "none",
             "metric": "knowmem_f", "value": v + s} for o, v in values.items() for s in (0, 1, 2)]
    pd.DataFrame(rows).to_csv(root / "tables" / "muse.csv", index=False)
    cal = [{"benchmark": "muse", "method": "npo", "optimizer": o, "seed": s, "scale": x, "chosen": x == c}
           for o, by_seed in chosen.items() for s, c in enumerate(by_seed) for x in (1.0, 3.0)]
    pd.DataFrame(cal).to_csv(root / "tables" / "calibration.csv", index=False)
    (root / "README" / "findings.md").write_text(f"| Q1 | claim | **{findings}** | 1 / 0 / 0 |\n")
    return root


def test_choices_that_move_are_counted_and_split_the_metrics(tmp_path):
    a = _run(tmp_path / "a", {"adam": 10.0, "zo": 50.0}, {"adam": [1, 1, 3], "zo": [3, 3, 3]})
    b = _run(tmp_path / "b", {"adam": 10.5, "zo": 90.0}, {"adam": [1, 1, 3], "zo": [3, 1, 3]}, "inconclusive")
    res = cr.compare(a, b)
    assert res["verdicts_differing"] == ["Q1"] and not res["verdicts_agree"]
    assert res["calibration"]["choices"] == 6 and res["calibration"]["differing"] == 1
    assert res["calibration"]["differing_choices"] == [{"entry": "muse/npo/zo", "seed": 1, "a": 3.0, "b": 1.0}]
    pm = res["per_metric"]
    # adam: 10 vs 10.5, well inside its interval (t * 1 / sqrt(3) * 4.30 = 2.5); zo: 40 apart, outside
    assert (pm["metrics"], pm["overlap"]) == (2, 1)
    assert pm["same_choices"]["overlap"] == 1 and pm["choice_differs"] == {
        "metrics": 1, "inside_a": 0, "inside_b": 0, "overlap": 0}


def test_the_agreement_valid_intervals_give():
    # two runs of 3 seeds whose 95% t-intervals are exact: one's mean lies in the other's interval 90.7%
    # of the time (|t_2| < 4.30 / sqrt(2)), and the intervals overlap 99.5% of the time
    rates = cr.valid_interval_rates(3)
    assert abs(rates["inside"] - 0.907) < 0.005 and abs(rates["overlap"] - 0.995) < 0.002
    # with more seeds the interval narrows like the difference does: P(|Z| < 1.96 / sqrt(2)) = 0.834 in the limit
    assert 0.84 < cr.valid_interval_rates(10)["inside"] < 0.87
