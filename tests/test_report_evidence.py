"""The paper's evidence from tidy tables: confidence intervals, the main table's rows, the verdict
of each finding, and the figures (on constructed tables, so every number is known)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from unlearning.report import findings as fd
from unlearning.report import findings_report as fr
from unlearning.report import stats, style, tables
from unlearning.report.figures import figures

COLS = ["benchmark", "method", "optimizer", "grade", "seed", "attack", "metric", "value"]
GRADES = {"target": "reference", "retrain": "reference", "sophia": "second", "adam": "first",
          "signadam": "compressed", "zo": "zeroth", "hybrid": "hybrid"}
OPTS = {"sophia": {"type": "sophia"}, "adam": {"type": "adam"}, "signadam": {"type": "signadam"},
        "zo": {"type": "adazo"}, "hybrid": {"type": "hybrid", "n_fo": 10, "n_zo": 10}}
METHODS = {"npo": {"objective": "npo"}, "graddiff": {"objective": "grad_diff"}}


def table(values: dict, seeds=(0, 1, 2), spread=(-1.0, 0.0, 1.0), bench="muse") -> pd.DataFrame:
    """Tidy rows: values[(method, optimizer, attack, metric)] = mean; seeds spread around it."""
    rows = []
    for (method, opt, attack, metric), mean in values.items():
        for s, d in zip(seeds, spread):
            rows.append([bench, method, opt, GRADES[opt], s, attack, metric, mean + d])
    return pd.DataFrame(rows, columns=COLS)


def test_mean_ci_of_known_samples():
    m, h, n = stats.mean_ci([1, 2, 3])
    assert (m, n) == (2.0, 3)
    assert h == pytest.approx(4.302652729911275 / math.sqrt(3))  # t_{0.975,2} * s / sqrt(n), s = 1
    assert h == pytest.approx(2.484, abs=1e-3)
    m, h, n = stats.mean_ci([5.0])
    assert m == 5.0 and n == 1 and math.isnan(h)  # one seed: no interval
    m, h, _ = stats.mean_ci([2.0, 4.0])
    assert h == pytest.approx(12.706204736174698 * math.sqrt(2) / math.sqrt(2))


def test_compare_and_combine_verdicts():
    assert stats.compare([1, 2, 3], [10, 11, 12])["verdict"] == stats.REPRODUCES
    assert stats.compare([10, 11, 12], [1, 2, 3])["verdict"] == stats.DOES_NOT
    assert stats.compare([1, 2, 3], [2, 3, 4])["verdict"] == stats.INCONCLUSIVE  # 2 ± 2.48 vs 3 ± 2.48
    assert stats.compare([1], [10])["verdict"] == stats.INCONCLUSIVE  # one seed, no interval
    assert stats.overlap([1, 2, 3], [2, 3, 4])["verdict"] == stats.REPRODUCES
    assert stats.overlap([1, 2, 3], [10, 11, 12])["verdict"] == stats.DOES_NOT
    R, N, I = stats.REPRODUCES, stats.DOES_NOT, stats.INCONCLUSIVE
    assert stats.combine([R, R, I]) == R
    assert stats.combine([R, I, I]) == I
    assert stats.combine([R, N]) == I
    assert stats.combine([N, N, I]) == N
    assert stats.combine([I]) == I


def test_main_table_rows_columns_and_ci():
    vals = {("none", "target", "none", "knowmem_f"): 90, ("none", "retrain", "none", "knowmem_f"): 20}
    for method in ("npo", "graddiff"):
        for opt in ("hybrid", "zo", "signadam", "adam", "sophia"):
            vals[(method, opt, "none", "knowmem_f")] = 10
            vals[(method, opt, "nf4", "knowmem_f")] = 30
            vals[(method, opt, "relearn10", "knowmem_f")] = 40
    df = table(vals)
    wide = tables.main_table(df)
    assert list(wide.row[:2]) == ["Original (target)", "Retrain"]
    assert list(wide.optimizer[2:7]) == ["sophia", "adam", "signadam", "zo", "hybrid"]
    assert list(wide.method[2:]) == ["graddiff"] * 5 + ["npo"] * 5
    assert wide.loc[0, "knowmem_f@none"] == 90
    assert wide.loc[0, "knowmem_f@none_ci95"] == pytest.approx(2.484, abs=1e-3)
    assert math.isnan(wide.loc[0, "knowmem_f@relearn10"])  # references are not relearned
    assert "knowmem_f@nf4" in wide.columns and "knowmem_f@int8" not in wide.columns
    md = tables.main_table_markdown(df, wide)
    assert "## before attack" in md and "## after nf4" in md
    assert "| Original (target) | reference | 90.0 [87.3, 92.3] |" in md  # logit scale: 90 - 2.7, + 2.3
    one = tables.main_table_markdown(table(vals, seeds=(0,), spread=(0.0,)))
    assert "no confidence interval" in one and "±" not in one and "[" not in one


def paper_like(direction: float = 1.0) -> pd.DataFrame:
    """Forget knowledge after NF4 in the paper's order (direction 1) or reversed (-1)."""
    after = {"sophia": 60, "adam": 50, "signadam": 40, "zo": 20, "hybrid": 10}
    vals = {("none", "target", "none", "knowmem_f"): 90}
    for method in ("npo", "graddiff"):
        for o, v in after.items():
            vals[(method, o, "none", "knowmem_f")] = 5
            vals[(method, o, "nf4", "knowmem_f")] = 50 + direction * (v - 50)
            vals[(method, o, "relearn10", "knowmem_f")] = 50 + direction * (v - 50)
            vals[(method, o, "none", "knowmem_r")] = 30 if o == "zo" else 60
    return table(vals)


@pytest.mark.slow
def test_findings_verdicts_on_constructed_tables():
    f = {x["id"]: x for x in fd.findings({"muse": paper_like(1.0)}, OPTS, METHODS, "adam")}
    for fid in ("Q1", "Q2", "Q4", "Q5", "R2"):
        assert f[fid]["verdict"] == stats.REPRODUCES, (fid, f[fid]["comparisons"])
    # ZO (20) below Sophia, Adam, signAdam but above the hybrid (10): every seed says so, so the paired
    # tests find both directions; the hybrid's significant win goes against "ZO keeps the least"
    prim = [c for c in f["Q3"]["comparisons"] if c["primary"]]
    o = [c["outcome"] for c in prim]
    assert (o.count(stats.FOR), o.count(stats.AGAINST)) == (6, 2) and f["Q3"]["verdict"] == stats.DOES_NOT
    assert f["Q3"]["legacy_verdict"] == stats.INCONCLUSIVE  # the old rule: half reproduce, some against
    assert f["Q6"]["verdict"] == fd.NOT_TESTED  # no SAM configured
    assert f["L1"]["verdict"] == fd.NOT_TESTED or f["L1"]["verdict"].startswith("not tested")
    assert f["A1"]["verdict"] == "not tested (no ablation configured)"
    q1 = [c for c in f["Q1"]["comparisons"] if c["primary"]][0]
    assert (q1["subject"], q1["other"], q1["attack"], q1["measure"]) == ("signadam", "adam", "nf4", "recovery")
    assert q1["subject_level"] == 40 and q1["other_level"] == 50 and q1["effect"] == -10  # recovery 35 vs 45
    # logit-scale interval of 39, 40, 41: close to the ordinary 40 ± 2.48 this far from the edges
    assert q1["subject_lo"] == pytest.approx(37.5, abs=0.1) and q1["subject_hi"] == pytest.approx(42.5, abs=0.1)
    # FP4 is not in this table, the relearning not in Q1's attacks: every Q1 comparison is primary
    assert all(c["primary"] for c in f["Q1"]["comparisons"])
    rev = {x["id"]: x for x in fd.findings({"muse": paper_like(-1.0)}, OPTS, METHODS, "adam")}
    assert rev["Q1"]["verdict"] == stats.DOES_NOT and rev["Q5"]["verdict"] == stats.DOES_NOT
    # differences that vary from seed to seed around 0: inconclusive
    noisy = paper_like(1.0)
    noisy.loc[(noisy.optimizer != "adam") & (noisy.attack == "nf4"), "value"] += noisy.seed.map({0: 30, 1: -25, 2: 5})
    flat = {x["id"]: x for x in fd.findings({"muse": noisy}, OPTS, METHODS, "adam")}
    assert flat["Q1"]["verdict"] == stats.INCONCLUSIVE
    # LMC from barriers: sign below ZO reproduces
    bar = pd.DataFrame([{"benchmark": "muse", "method": "npo", "seed": s, "reference": "adam", "optimizer": o,
                         "grade": GRADES[o], "split": "forget", "barrier": b + 0.01 * s}
                        for s in range(3) for o, b in (("signadam", 0.0), ("zo", 1.0))])
    lmc = {x["id"]: x for x in fd.findings({"muse": paper_like()}, OPTS, METHODS, "adam", barriers=bar)}
    assert lmc["L1"]["verdict"] == stats.REPRODUCES
    md = fr.findings_markdown({"muse": paper_like()}, list(lmc.values()), ["muse_quantization.png"])
    assert "| Q1 |" in md and "**reproduces**" in md and "![muse_quantization](muse_quantization.png)" in md
    assert "| npo / signadam |" in md  # summary table row
    assert "Holm p" in md and "old rule" in md


@pytest.mark.slow
def test_figures_and_tables_render(tmp_path):
    df = paper_like()
    extra = table({("npo", o, a, "qcode_change"): 5.0 for o in ("adam", "zo") for a in ("int8", "fp4", "nf4")})
    df = pd.concat([df, extra, table({("npo", "adam", "relearn10", "knowmem_f_heldout"): 12.0,
                                      ("npo", "adam", "none", "knowmem_f_heldout"): 3.0})], ignore_index=True)
    path = tmp_path / "muse.csv"
    df.to_csv(path, index=False)
    tables.report_tables(path, tmp_path / "m.csv", tmp_path / "m.md", tmp_path / "q.csv", tmp_path / "r.csv")
    q = pd.read_csv(tmp_path / "q.csv")
    row = q[(q.optimizer == "adam") & (q.method == "npo") & (q.metric == "knowmem_f") & (q.attack == "nf4")].iloc[0]
    assert (row.before, row.after, row.change) == (5, 50, 45) and row.change_ci95 == 0
    r = pd.read_csv(tmp_path / "r.csv")
    assert sorted(r[(r.optimizer == "adam") & (r.metric == "knowmem_f_heldout")].steps) == [0, 10]
    figures(path, tmp_path / "fig")
    for name in ("quantization", "relearning", "tradeoff"):
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 5000
        assert (tmp_path / "fig" / f"{name}.svg").exists()


def test_palette_is_fixed_per_optimizer_and_grade_ordered():
    df = pd.DataFrame({"optimizer": ["hybrid", "adam", "target", "hybrid_n5"],
                       "grade": ["hybrid", "first", "reference", "hybrid"]})
    pal = style.palette(df)
    assert list(pal) == ["target", "adam", "hybrid", "hybrid_n5"]
    assert pal["adam"] == style.colour("adam") == style.palette(df[df.optimizer == "adam"])["adam"]
    assert style.colour("hybrid_n5", "hybrid") == pal["hybrid_n5"] != pal["hybrid"]
