"""The results page's summaries (report/summaries.py) on constructed tidy tables with known answers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from unlearning.report import blocks, summaries


def _rows(method, opt, grade, attack, metric, values):
    return [{"benchmark": "muse", "method": method, "optimizer": opt, "grade": grade, "seed": s, "attack": attack,
             "metric": metric, "value": v} for s, v in enumerate(values)]


def _table() -> pd.DataFrame:
    rows = []
    rows += _rows("none", "target", "reference", "none", "knowmem_f", [90.0, 80.0])
    rows += _rows("none", "target", "reference", "none", "knowmem_r", [95.0, 85.0])
    rows += _rows("none", "retrain", "reference", "none", "knowmem_f", [10.0, 12.0])
    rows += _rows("none", "retrain", "reference", "nf4", "knowmem_f", [11.0, 12.0])  # changes by +1, 0
    rows += _rows("graddiff", "adam", "first", "none", "knowmem_f", [10.0, 20.0])
    rows += _rows("graddiff", "adam", "first", "none", "knowmem_r", [90.0, 80.0])
    rows += _rows("graddiff", "adam", "first", "nf4", "knowmem_f", [30.0, 26.0])  # recovers +20, +6
    rows += _rows("graddiff", "adam", "first", "relearn2", "knowmem_f", [12.0, 21.0])
    rows += _rows("none", "control", "reference", "none", "knowmem_f", [50.0, 40.0])  # gap mean(40, 40) = 40
    rows += _rows("none", "control", "reference", "nf4", "knowmem_f", [70.0, 46.0])  # recovers +20, +6
    rows += _rows("none", "control", "reference", "relearn2", "knowmem_f", [52.0, 41.0])  # +2, +1: no negative
    rows += _rows("graddiff", "adazo", "zeroth", "none", "knowmem_r", [19.0, 17.0])  # 0.2 of target's
    return pd.DataFrame(rows)


def test_presence_is_the_positive_controls_recovery_beyond_the_retrain_models_change():
    df = summaries.presence_frame({"muse": _table()}, share=0.3, negative_points=5.0)
    nf4 = df[df.attack == "nf4"].iloc[0]
    # positive: mean(+20, +6) = 13; negative: mean(+1, 0) = 0.5; excess paired: mean(19, 6) = 12.5 of a
    # gap of 40 (31%)
    assert (nf4.gap, nf4.positive, nf4.negative, nf4.excess, bool(nf4.present)) == (40.0, 13.0, 0.5, 12.5, True)
    rel = df[df.attack == "relearn2"].iloc[0]
    assert rel.positive == 1.5 and rel.excess == 1.5 and not rel.present  # no negative control: counts as 0
    assert summaries.presence_frame({"muse": _table()}, share=0.35, negative_points=5.0).present.tolist() == [
        False, False]


def test_references_hold_each_seeds_primary_metrics_and_collapse_the_utility_share():
    ref = summaries.references_frame({"muse": _table()})
    assert set(ref.metric) == {"knowmem_f", "knowmem_r"} and set(ref.role) == {"target", "retrain"}
    assert ref[(ref.role == "target") & (ref.metric == "knowmem_f")].value.tolist() == [90.0, 80.0]
    col = summaries.collapse_frame({"muse": _table()}, share=0.5)
    assert col.optimizer.tolist() == ["adazo"] and col.share.iloc[0] == pytest.approx((19 / 95 + 17 / 85) / 2)


def test_run_facts_read_gnu_time_and_the_recorded_kernels(tmp_path):
    (tmp_path / "benchmarks" / "unlearn").mkdir(parents=True)
    (tmp_path / "benchmarks" / "unlearn" / "a.tsv").write_text("s\n1.0\n")
    ev = tmp_path / "eval" / "muse" / "graddiff" / "adam" / "seed0"
    ev.mkdir(parents=True)
    (ev / "none.json").write_text(json.dumps({"env": {"torch_cpu_capability": "AVX2", "onednn_max_cpu_isa": "default",
                                                      "cpu_linear": "onednn", "torch_version": "2.13.0"}}))
    log = tmp_path / "time.log"
    log.write_text("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.50\n")
    facts = summaries.run_facts(tmp_path, log, "abc1234")
    assert facts == {"jobs": 1, "code": "abc1234", "wall_s": 3723.5, "cpu": summaries.cpu_model(), "shared": False,
                     "cpu_kernels": ["AVX2/default/onednn/2.13.0"]}
    (tmp_path / summaries.RUN).write_text(json.dumps(facts))
    assert "run with the code of commit abc1234" in blocks.render("run", tmp_path)
    assert "62 min 3 s wall time on " in blocks.render("run", tmp_path)
    assert "upper bound" not in blocks.render("run", tmp_path)
    (tmp_path / summaries.RUN).write_text(json.dumps({**facts, "shared": True}))
    assert "other work shared the machine during the run: an upper bound" in blocks.render("run", tmp_path)
    (tmp_path / "bad.log").write_text("no time here")
    with pytest.raises(ValueError, match="bad.log"):
        summaries.run_facts(tmp_path, tmp_path / "bad.log")


def test_the_blocks_render_the_saved_summaries(tmp_path):
    tables = {"muse": _table()}
    summaries.presence_frame(tables, 0.3, 5.0).to_csv(tmp_path / summaries.PRESENCE, index=False)
    summaries.collapse_frame(tables, 0.5).to_csv(tmp_path / summaries.COLLAPSE, index=False)
    text = blocks.render("presence", tmp_path)
    assert "**1 of 2**" in text
    assert "| muse | nf4 | knowmem_f | 85.0 | 45.0 | 40.0 | 13.0 | 0.5 | 12.5 | 31% | yes |" in text
    assert "| muse | relearn2 | knowmem_f | 85.0 | 45.0 | 40.0 | 1.5 |  | 1.5 | 4% | **no** |" in text
    assert "| muse | graddiff | adazo | knowmem_r | 0.20 |" in blocks.render("collapse", tmp_path)
    assert "No committed `run.json`" in blocks.render("run", tmp_path)


def test_jobs_sum_each_rules_benchmark_files(tmp_path):
    jobs = [("unlearn", "a", 2.0, 100.0), ("unlearn", "b", 4.0, 300.0), ("evaluate", "c", 3.0, 200.0)]
    for rule, name, s, rss in jobs:
        (tmp_path / "benchmarks" / rule).mkdir(parents=True, exist_ok=True)
        (tmp_path / "benchmarks" / rule / f"{name}.tsv").write_text(f"s\tmax_rss\n{s}\t{rss}\n")
    summaries.jobs_frame(tmp_path).to_csv(tmp_path / summaries.JOBS, index=False)
    text = blocks.render("jobs", tmp_path)
    assert "3 jobs, **9 job-seconds** in all" in text
    assert "| unlearn | 2 | 3.00 | 6 | 67% | 300 |" in text and "| evaluate | 1 | 3.00 | 3 | 33% | 200 |" in text


def test_cpu_model_names_the_vector_isa(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert summaries.cpu_model(info) == "AMD EPYC, 2 cores, AVX-512 with AVX512-BF16"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n")
    assert summaries.cpu_model(info) == "AMD EPYC, 1 cores, AVX2, no AVX-512"
