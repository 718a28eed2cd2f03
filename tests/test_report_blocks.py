"""Every number in README.md and docs/**/*.md between generated-block markers is what
scripts/update_readme_results.py writes from the files committed under results/README/ (issue 25)."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from unlearning.report import blocks

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
