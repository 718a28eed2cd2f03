"""The report rules on a finished smoke study: LMC, main tables, findings, the hybrid ablation (added
to a copy of the smoke config) and `snakemake --report` with every figure and table captioned."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from conftest import snakemake

pytestmark = pytest.mark.e2e


def test_report_outputs_of_the_smoke_study(smoke_run):
    res = smoke_run / "results"
    for bench in ("muse", "wmdp", "tofu"):
        wide = pd.read_csv(res / "tables" / "main" / f"{bench}.csv")
        assert list(wide.row[:2]) == ["Original (target)", "Retrain"]
        for name in ("quantization", "relearning", "tradeoff", "lmc"):
            assert (res / "figures" / bench / f"{name}.png").exists()
            assert (res / "figures" / bench / f"{name}.svg").exists()
            assert (res / "README" / f"{bench}_{name}.png").exists()
        bar = pd.read_csv(res / "lmc" / bench / "barriers.csv")
        assert set(bar.reference) == {"adam"} and "adam" not in set(bar.optimizer)
    lmc = pd.read_csv(res / "lmc" / "wmdp" / "npo" / "seed0.csv")
    assert set(lmc.optimizer) == {"zo", "hybrid"}
    start = lmc[lmc.alpha == 0].groupby("split").loss
    assert (start.max() - start.min()).max() < 1e-6  # every path starts at the same Adam model
    # the paper's TOFU table, for the TOFU benchmark only
    assert (res / "tables" / "tofu" / "tofu.md").exists() and not (res / "tables" / "tofu" / "muse.csv").exists()
    md = (res / "README" / "findings.md").read_text()
    assert "| Q1 |" in md and "not tested (optimizer not configured)" in md


def test_calibration_outputs_of_the_smoke_study(smoke_run):
    """configs/smoke.yaml calibrates every entry on the ladder 0.5, 1 with early stopping (seed 0): every
    entry's run reaches the retrain model's level at the first rung, so x0.5 is its one grid point."""
    res = smoke_run / "results"
    cal = pd.read_csv(res / "tables" / "calibration.csv")
    entries = cal[["benchmark", "method", "optimizer"]].drop_duplicates()
    assert len(entries) == 4 + 3 + 2 and len(cal) == len(entries)
    assert set(cal.scale) == {0.5} and cal.groupby(["benchmark", "method", "optimizer"]).chosen.sum().eq(1).all()
    assert set(cal.status) == {"reached"}
    assert set(cal.forget_metric) == {"knowmem_f", "wmdp_acc", "tofu_rouge_f"}
    for bench in ("muse", "wmdp", "tofu"):
        assert (res / "figures" / bench / "calibration.png").exists()
        assert (res / "README" / f"{bench}_calibration.png").exists()
    for r in cal[cal.chosen].itertuples():
        choice = json.loads((res / "calibration" / r.benchmark / r.method / r.optimizer / "choice.json").read_text())
        assert choice["scale"] == r.scale
        # the study's run of the calibration seed is the grid point at the choice
        rec = json.loads((res / "eval" / r.benchmark / r.method / r.optimizer / "seed0" / "none.json").read_text())
        assert rec["lr_multiplier"] == r.scale
        info = json.loads((res / "unlearned" / r.benchmark / r.method / r.optimizer / f"x{r.scale:g}" / "seed0"
                           / "unlearning.json").read_text())
        assert info["lr_multiplier"] == r.scale
        # the run's last check holds the criterion's metrics (no calibration_point job): what the study's
        # evaluation of the same model measures
        stop = info["early_stop"]
        assert stop["reached"] and stop["stop_step"] == stop["checks"][-1]["step"] == r.stop_step
        assert stop["metrics"][r.forget_metric] == rec["metrics"][r.forget_metric]
        assert stop["metrics"][r.utility_metric] == rec["metrics"][r.utility_metric]
        # only what the criterion reads is computed
        assert set(stop["metrics"]) == {r.forget_metric, r.utility_metric} | set(stop["ceilings"])
    wide = pd.read_csv(res / "tables" / "main" / "muse.csv")
    assert {"lr_multiplier", "calibration"} <= set(wide.columns)
    assert "## Learning rates (calibration)" in (res / "README" / "findings.md").read_text()


def test_ablation_and_html_report(smoke_copy):
    cfg_path = smoke_copy / "configs" / "smoke.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["ablation"] = {"benchmark": "wmdp", "method": "npo", "optimizers": {
        "hybrid_2to1": {"type": "hybrid", "n_fo": 2, "n_zo": 1, "fo": {"type": "adam", "lr": 0.001},
                        "zo": {"type": "adazo", "lr": 0.001}}}}
    cfg_path.write_text(yaml.safe_dump(cfg))
    snakemake(smoke_copy, "--cores", "2")
    res = smoke_copy / "results"
    abl = pd.read_csv(res / "ablation" / "table.csv")
    assert set(abl.optimizer) == {"hybrid", "hybrid_2to1"}
    assert abl[abl.optimizer == "hybrid_2to1"][["n_fo", "n_zo"]].drop_duplicates().values.tolist() == [[2, 1]]
    # the ablation entry stays out of the study's own table
    assert "hybrid_2to1" not in set(pd.read_csv(res / "tables" / "wmdp.csv").optimizer)
    assert (res / "README" / "ablation.png").exists()
    snakemake(smoke_copy, "--report", "results/report.html")
    html = (res / "report.html").read_text(errors="ignore")
    for caption in ("Main table of benchmark muse", "Linear mode connectivity on wmdp", "Hybrid ablation",
                    "Relearning attack on wmdp", "Utility against forgetting on muse",
                    "findings that this study can test", "The paper's TOFU table for benchmark tofu"):
        assert caption in html, caption
    # a bad ablation benchmark is a one-line config error: tests/test_config.py, in-process
