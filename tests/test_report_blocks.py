"""Every number in README.md and docs/**/*.md between generated-block markers is what
scripts/update_readme_results.py writes from the files committed under results/README/ (issue 25)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pandas as pd
import pytest

from unlearning.report import blocks, measurements, paper_tables, versions

from conftest import ROOT


def test_committed_blocks_are_what_the_script_writes_now():
    stale = blocks.stale(ROOT, ROOT / "results" / "README")
    assert not stale, f"stale generated blocks {stale}: run .venv/bin/python scripts/update_readme_results.py"


def test_readme_has_the_verdicts_and_the_results_page_every_block_and_no_hand_table():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "verdicts" in blocks.blocks(text)
    assert "<!-- results:start -->" not in text
    page = (ROOT / "docs" / "measurements" / "results.md").read_text(encoding="utf-8")
    assert set(blocks.RENDERERS) <= set(blocks.blocks(page))
    assert "generated:calibration" in (ROOT / "docs" / "reference" / "calibration.md").read_text(encoding="utf-8")


def test_check_fails_on_a_stale_block_and_update_fixes_it(tmp_path):
    (tmp_path / "docs").mkdir()
    readme_dir = tmp_path / "results" / "README"
    readme_dir.mkdir(parents=True)
    pd.DataFrame([{"id": "Q1", "claim": "c", "primary": "knowmem_f, recovery under NF4", "verdict": "reproduces",
                   "legacy_verdict": "inconclusive at this scale", "outcomes": "2 for, 0 against, 0 neither",
                   "seeds": 3, "mde_holm": 12.34}]).to_csv(readme_dir / "verdicts.csv", index=False)
    (readme_dir / "runs.json").write_text(json.dumps({"default": {"results": "results", "commit": "abc1234"}}))
    doc = tmp_path / "README.md"
    other = "<!-- BEGIN generated:paper-scale -->\nanother script's 42\n<!-- END generated:paper-scale -->\n"
    doc.write_text("a\n<!-- BEGIN generated:verdicts -->\nhand-typed 99\n<!-- END generated:verdicts -->\nb\n" + other)
    assert blocks.stale(tmp_path, readme_dir) == ["README.md: verdicts"]
    assert blocks.update(tmp_path, readme_dir) == [doc]
    text = doc.read_text()
    assert blocks.stale(tmp_path, readme_dir) == [] and text.startswith("a\n") and text.endswith("-->\nb\n" + other)
    row = "| Q1 | c | knowmem_f, recovery under NF4 | 2 for, 0 against, 0 neither | 12.3 | **reproduces** |"
    assert row + " inconclusive at this scale |" in text
    assert "copied at commit abc1234" in text  # the block names its run
    assert blocks.update(tmp_path, readme_dir) == []  # idempotent


@pytest.mark.slow
def test_calibration_and_tofu_blocks_from_copied_study_files(tmp_path):
    root, study = tmp_path / "repo", tmp_path / "study"
    readme_dir = root / "results" / "README"
    readme_dir.mkdir(parents=True)
    (study / "tables").mkdir(parents=True)
    cal = [{"benchmark": "muse", "method": "npo", "optimizer": o, "grade": "first", "seed": s, "scale": sc,
            "forget": 1.0, "utility": 50.0, "status": st, "gap": gap, "at_grid_edge": edge, "chosen": ch}
           for o, s, sc, st, gap, edge in [("adam", 0, 3, "reached", -1.0, True), ("adam", 1, 3, "reached", -2.0, True),
                                           ("zo", 0, 1, "reached", -1.0, False),
                                           ("zo", 1, 10, "not reached", 1.25, True)]
           for ch in (True, False)]
    pd.DataFrame(cal).to_csv(study / "tables" / "calibration.csv", index=False)
    assert blocks.copy_default(study, readme_dir, root) == ["calibration_choices.csv"]
    text = blocks.render("calibration", readme_dir)
    assert "**3 of 4** choices (2 entries × 2 seeds) reached" in text
    assert "1 of the 2 entries chose one multiplier on every seed; 3 choices lie at a grid edge" in text
    assert "Not reached: muse npo zo seed 1 (1.2 points above)" in text
    tofu = [{"benchmark": "tofu", "method": m, "optimizer": o, "grade": "first", "seed": s, "attack": a,
             "metric": k, "value": v + s * (0.01 if k == "forget_quality" else 1.0)}
            for m, o in [("none", "target"), ("none", "retrain"), ("npo", "adam")] for s in range(3)
            for a in ("none", "nf4") for k, v in [("tofu_prob_f", 50.0), ("tofu_rouge_f", 40.0),
                                                 ("model_utility", 60.0), ("forget_quality", 0.3)]]
    (study / "tables" / "tofu.csv").write_text(pd.DataFrame(tofu).to_csv(index=False))
    assert blocks.copy_tofu(study, readme_dir, root) == ["tofu.csv"]
    assert set(pd.read_csv(readme_dir / "tofu.csv").attack) == {"none"}
    table = blocks.render("tofu", readme_dir)
    assert "| npo / adam | 51.0 [" in table and "| 0.0 / 0.0 / 53.2 |" in table  # the paper's 7B row beside
    assert "Forget Quality" in table and "| 0.31 [0." in table  # FQ 0.30-0.32: two significant digits
    assert json.loads((readme_dir / "runs.json").read_text())["tofu"]["results"].endswith("study")


def test_script_check_mode():
    script = ROOT / "scripts" / "update_readme_results.py"
    spec = importlib.util.spec_from_file_location("update_readme_results", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0  # the repository's blocks are current


# ------------------------------------------------------------------ the docs' measurement and cost-model blocks


def test_benchmark_output_parses_as_one_object_or_json_lines():
    assert measurements.parse_output('{\n "a": 1\n}\n') == [{"a": 1}]
    assert measurements.parse_output('{"a": 1}\nsome warning\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]
    assert measurements.parse_output("no json at all") == []


def _measurement(root, name, output, shared=True):
    path = root / measurements.DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "command": f"python benchmarks/investigations/{name}.py",
                                "commit": "abc1234", "cpu": "AMD EPYC, 2 cores, AVX2, no AVX-512", "shared": shared,
                                "date": "2026-12-03", "note": "", "output": output}))


def test_a_measurement_block_quotes_its_file_command_commit_and_cpu_and_says_when_missing(tmp_path):
    missing = blocks.render("chunking", tmp_path / "results" / "README", tmp_path)
    assert "Not recorded yet" in missing and "docs/measurements/data/chunking.json" in missing
    _measurement(tmp_path, "chunking", [
        {"model": "target", "forget_nll": 0.071, "knowmem_f": 96.54, "knowmem_r": 100.0},
        {"chunking": "truncate", "forget_examples": 36, "forget_tokens": 2687, "retain_examples": 57,
         "retain_tokens": 3838, "steps_per_epoch": 5, "forget_tokens_per_step": 597.1, "forget_nll": 18.44,
         "knowmem_f": 9.44, "knowmem_r": 66.5, "seconds": 3.5}])
    text = blocks.render("chunking", tmp_path / "results" / "README", tmp_path)
    assert text.endswith("| truncate | 36 (2687) | 57 (3838) | 5 | 597 | 18.4 | 9.4 / 66.5 |")  # shared: no seconds
    assert "| target (before) | | | | | 0.07 | 96.5 / 100.0 |\n" in text
    assert "commit abc1234" in text and "AVX2, no AVX-512" in text and "wall times are left out" in text
    m = json.loads((tmp_path / measurements.DATA / "chunking.json").read_text())
    (tmp_path / measurements.DATA / "chunking.json").write_text(json.dumps({**m, "shared": False}))
    text = blocks.render("chunking", tmp_path / "results" / "README", tmp_path)
    assert "| 9.4 / 66.5 | 3.5 |" in text and "nothing else running" in text


def test_optimizer_step_block_from_the_benchmark_lines(tmp_path):
    rows = [{"name": n, "grade": g, "size": "tiny", "step_s": t, "peak_mem_bytes": mb * 2**20}
            for n, g, t, mb in [("forward", "inference", 0.1294, 29), ("adam", "first", 0.19449, 102)]]
    summary = {"summary": True, "size": "tiny", "zo_mem_ratio": 1.0012, "zo_time_ratio": 1.19,
               "zo_time_ratio_by_direction": {"gaussian": 1.19, "rademacher": 1.1}, "hybrid_time_ratio": 0.92}
    _measurement(tmp_path, "optimizers", [*rows, summary])
    text = measurements.optimizers_block(tmp_path)
    assert "| adam | first | 0.194 | 102 |" in text and "| forward | inference | 0.129 | 29 |" in text
    assert "| optimizer | grade | tiny: s/step | MB |" in text  # no params recorded: the size alone
    assert "| tiny | 1.001 | 1.19 | gaussian 1.19, rademacher 1.10 | 0.92 |" in text


def test_paper_storage_sizes_each_config_by_its_models_shape():
    text = paper_tables.storage_block(ROOT)
    # Llama-2-7B and zephyr-7b-beta (Mistral-7B's shape): their published parameter counts
    assert "| paper-muse-news | 6,738,415,616 |" in text and "| paper-wmdp | 7,241,732,096 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| paper-tofu "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    models = sum(int(x) for x in cells[2].split("+"))
    assert int(cells[3]) == round(models * 6_738_415_616 * 2 / 1e9)  # bf16 bytes, GB = 1e9


def test_the_docs_tables_of_measurements_are_generated_blocks():
    for page, names in [("reference/testbed.md", {"chunking", "knowmem-space"}),
                        ("reference/optimizers.md", {"sophia-clipping"}),
                        ("guides/clusters.md", {"paper-jobs", "paper-storage"}),
                        ("measurements/speed-and-memory.md", {"optimizer-steps", "paper-scale"}),
                        ("guides/reproducibility.md", {"locked-versions"})]:
        assert names <= set(blocks.blocks((ROOT / "docs" / page).read_text(encoding="utf-8"))), page


@pytest.mark.slow
def test_record_writes_the_commands_json_with_its_facts(tmp_path):
    code = "import json; print(json.dumps({'x': 1})); print(json.dumps({'y': 2}))"
    path = measurements.record(tmp_path, "probe", [sys.executable, "-c", code], shared=True, note="n")
    m = json.loads(path.read_text())
    assert path == tmp_path / "docs/measurements/data/probe.json"
    assert m["output"] == [{"x": 1}, {"y": 2}] and m["shared"] is True and m["note"] == "n"
    assert m["command"].startswith("python -c") and m["cpu"] and m["date"]
    with pytest.raises(RuntimeError, match="printed no JSON"):
        measurements.record(tmp_path, "none", [sys.executable, "-c", "print('hello')"])
    with pytest.raises(RuntimeError, match="exited 3"):
        measurements.record(tmp_path, "fails", [sys.executable, "-c", "raise SystemExit(3)"])


def test_versions_block_follows_the_lock_file_and_names_a_missing_pin(tmp_path):
    lock = tmp_path / versions.LOCK
    lock.parent.mkdir()
    pins = {p: f"1.{i}.0" for i, p in enumerate(versions.PACKAGES)}
    lock.write_text("# Generated by scripts/lock.sh on 2026-01-02 with Python 3.11.7; do not edit.\n"
                    + "".join(f"{p}=={v}\n" for p, v in pins.items()))
    text = versions.versions_block(tmp_path)
    assert "| torch (CPU wheel) | 1.0.0 | |" in text and "| scikit-learn | 1.11.0 |" in text
    assert "(generated by scripts/lock.sh on 2026-01-02 with Python 3.11.7)" in text
    lock.write_text("torch==2.0\n")
    with pytest.raises(ValueError, match="requirements/test.lock: no pin for transformers"):
        versions.versions_block(tmp_path)


def test_seed_cost_and_interval_example_come_from_the_committed_run(tmp_path):
    readme_dir = tmp_path / "results" / "README"
    readme_dir.mkdir(parents=True)
    pd.DataFrame([{"rule": "unlearn", "jobs": 10, "mean_s": 3.0, "job_s": 30.0, "share": 0.5, "peak_rss_mb": 1},
                  {"rule": "evaluate", "jobs": 10, "mean_s": 3.0, "job_s": 30.0, "share": 0.5, "peak_rss_mb": 1}]
                 ).to_csv(readme_dir / "jobs.csv", index=False)
    (readme_dir / "run.json").write_text(json.dumps({"jobs": 20, "cpu": "AMD EPYC, 2 cores, AVX2", "shared": True}))
    text = blocks.render("seed-cost", readme_dir, tmp_path)
    assert "took 60 job-seconds at 3 seeds; at 5 seeds about 60 × 5 / 3 = 100 job-seconds" in text
    assert "shared with other work: upper bounds" in text
    pd.DataFrame([{"benchmark": "muse", "role": "target", "seed": s, "metric": "knowmem_f", "value": v}
                  for s, v in enumerate([95.0, 40.0, 92.0])]).to_csv(readme_dir / "references.csv", index=False)
    text = blocks.render("interval-example", readme_dir, tmp_path)
    assert "(`results/README/references.csv`, 95.0, 40.0, 92.0): 75.7 ± 76.8 on the original scale" in text
    lo, hi = (float(x) for x in text.split("[")[1].split("]")[0].split(", "))
    assert 0.0 <= lo < 40.0 and hi == 100.0  # the logit interval stays inside the range, the plain one does not


def test_provenance_cuts_a_long_command_at_a_whole_argument_and_small_shares_keep_two_digits():
    long = "python benchmarks/investigations/grade_behaviour.py --entries sophia --spec " + "'x=" + "9" * 300 + "'"
    text = measurements.provenance({"name": "g", "command": long, "commit": "abc", "date": "d", "cpu": "c"})
    assert "`python benchmarks/investigations/grade_behaviour.py --entries sophia --spec ...`" in text
    assert measurements._pct(0.0013903) == "0.14%" and measurements._pct(0.27093) == "27.1%"
