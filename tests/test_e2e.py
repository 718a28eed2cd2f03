"""End to end: configs/smoke.yaml through Snakemake, then the tables' contents."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from unlearning.config import methods_for, optimizers_for, validate

from conftest import ROOT, make_study, snakemake

pytestmark = pytest.mark.e2e

COLUMNS = ["benchmark", "method", "optimizer", "grade", "seed", "attack", "metric", "value"]


def smoke_config() -> dict:
    return validate(yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text()))


def test_tables_have_every_attack_metric_and_optimizer(smoke_run: Path):
    cfg = smoke_config()
    expected_attacks = {"none", "int8", "fp4", "nf4"} | {f"relearn{s}" for s in cfg["attacks"]["relearn"]["steps"]}
    metrics = {"muse": {"verbmem_f", "knowmem_f", "knowmem_r", "privleak", "qcode_change"},
               "wmdp": {"wmdp_acc", "mmlu_acc", "qcode_change"},
               "tofu": {"tofu_prob_f", "tofu_rouge_f", "truth_ratio_f", "forget_quality", "model_utility",
                        "qcode_change"}}
    for bench in cfg["benchmarks"]:
        df = pd.read_csv(smoke_run / "results" / "tables" / f"{bench}.csv")
        assert list(df.columns) == COLUMNS
        assert df.value.notna().all()
        unl = df[df.method != "none"]
        assert set(unl.attack) == expected_attacks
        assert set(unl.optimizer) == set(optimizers_for(cfg, bench))
        assert set(unl.method) == set(methods_for(cfg, bench))
        # the references and the attacks' controls (the retrain model, the thin-unlearning positive one)
        assert set(df[df.method == "none"].optimizer) == {"target", "retrain", "control"}
        assert metrics[bench] <= set(df.metric)
        pct = df[df.metric.isin(["verbmem_f", "knowmem_f", "knowmem_r", "wmdp_acc", "mmlu_acc", "qcode_change",
                                 "tofu_prob_f", "tofu_rouge_f", "truth_ratio_f", "model_utility"])]
        assert pct.value.between(0, 100).all()
        assert df[df.metric == "forget_quality"].value.between(0, 1).all()
        assert set(df.grade) <= {"reference", "second", "first", "compressed", "zeroth", "hybrid"}
        # qcode_change only under quantization, and 0 for the target against itself
        q = df[df.metric == "qcode_change"]
        assert set(q.attack) == {"int8", "fp4", "nf4"}
        assert (q[q.optimizer == "target"].value == 0).all()
        figs = list((smoke_run / "results" / "figures" / bench).glob("*.png"))
        assert figs, f"no figures for {bench}"
    assert (smoke_run / "results" / "summary.md").read_text().startswith("# Study summary")
    # TOFU: Forget Quality is derived against the retrain model, which matches itself exactly
    tofu = pd.read_csv(smoke_run / "results" / "tables" / "tofu.csv")
    fq = tofu[(tofu.metric == "forget_quality") & (tofu.attack == "none")].set_index("optimizer").value
    assert fq["retrain"] == 1.0
    table = pd.read_csv(smoke_run / "results" / "tables" / "tofu" / "tofu.csv")
    assert list(table.row[:2]) == ["Original (target)", "Retrain"] and len(table) == 2 + 2
    assert "| Retrain |" in (smoke_run / "results" / "tables" / "tofu" / "tofu.md").read_text()


def test_models_are_safetensors_only(smoke_run: Path):
    models = list((smoke_run / "results").rglob("config.json"))
    assert models
    for cfg in models:
        folder = cfg.parent
        if (folder / "model.safetensors").exists() or list(folder.glob("*.safetensors")):
            assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))


def test_every_rule_logs_and_benchmarks(smoke_run: Path):
    logs = list((smoke_run / "results" / "logs").rglob("*.log"))
    bench = list((smoke_run / "results" / "benchmarks").rglob("*.tsv"))
    assert len(logs) >= 20 and len(bench) >= 15


def test_local_jobs_ran_in_the_fork_server_and_it_stopped(smoke_run: Path):
    logs = smoke_run / "results" / "logs"
    assert "ready" in (logs / "forkserver.log").read_text()
    unlearn_logs = list((logs / "unlearn").rglob("*.log"))
    assert unlearn_logs and all("forkserver: worker" in p.read_text() for p in unlearn_logs)
    # onsuccess stopped it: no server of this study folder is left running
    import psutil

    left = [p for p in psutil.process_iter(["cmdline", "cwd"])
            if "unlearning.forkserver" in " ".join(p.info["cmdline"] or []) and p.info["cwd"] == str(smoke_run)]
    assert not left


def test_complete_study_plans_nothing(smoke_run: Path):
    res = snakemake(smoke_run, "-n", "--cores", "1")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_default_study_dry_run_lists_every_stage(tmp_path):
    res = snakemake(make_study(tmp_path / "study"), "-n", "--cores", "2", configfile=None)
    out = res.stdout + res.stderr
    # no calibration_point: the default study stops its runs early, and their last checks hold the criterion
    for rule in ["prepare_data", "train_tokenizer", "train_model", "unlearn", "calibrate",
                 "relearn", "evaluate", "evaluate_reference", "aggregate", "figures", "summary"]:
        assert f"rule {rule}:" in out or f"\n{rule} " in out, rule
