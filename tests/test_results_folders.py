"""Each study its own results folder (schema key `results`), and studies side by side in one checkout.

The study plans are checked in-process (tests/test_plan.py: every file under the study's folder); the
side-by-side runs use a tiny Snakefile that, like the workflow (src/unlearning/plan.py), puts every file
under `config["results"]`, so that they show what Snakemake's lock (.snakemake/locks: the input and output
files of a run, not the folder) allows.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from unlearning.config import ConfigError, validate

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted(REPO.glob("configs/paper-*.yaml")) + [REPO / "configs" / "tofu.yaml"]


def _config(path: Path) -> dict:
    return validate(yaml.safe_load(path.read_text()))


def test_default_studies_write_results_and_the_others_their_own_folder():
    assert _config(REPO / "config.yaml")["results"] == "results"
    assert _config(REPO / "configs" / "smoke.yaml")["results"] == "results"
    folders = {p.stem: _config(p)["results"] for p in STUDIES}
    assert folders == {p.stem: f"results/{p.stem}" for p in STUDIES}


@pytest.mark.parametrize("bad", ["/scratch/results", "../elsewhere", "results/../results", "", "a b"])
def test_results_folder_must_be_a_plain_relative_path(bad):
    cfg = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    with pytest.raises(ConfigError, match="results"):
        validate({**cfg, "results": bad})


# Where each study plans its files and which rule makes each model: tests/test_plan.py, in-process.


STUB = """
R = config["results"]
rule all:
    input: f"{R}/done.txt"
rule work:
    input: "shared-input.txt"
    output: f"{R}/done.txt"
    shell: "while [ ! -e {R}.go ]; do sleep 0.1; done; echo {R} > {output}"
"""


@pytest.mark.slow
def test_two_studies_run_side_by_side_but_not_the_same_study_twice(tmp_path):
    """Snakemake locks the files a run reads and writes, not the directory: the same study started
    twice is refused, a study with another results folder runs beside it. Snakemake 9's file backend
    then deletes every lock of the directory when that second run ends (persistence/file.py
    _delete_locks: rmtree of .snakemake/locks), which docs/guides/clusters.md warns about."""
    (tmp_path / "Snakefile").write_text(STUB)
    (tmp_path / "shared-input.txt").write_text("read by both studies\n")
    locks = tmp_path / ".snakemake" / "locks"

    def snakemake(results: str):
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--config", f"results={results}"]
        return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    first = snakemake("results/a")  # waits for results/a.go inside its job, holding its lock
    try:
        deadline = time.time() + 120
        while not list(locks.glob("*.output.lock")) and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, first.stdout.read()
        again, _ = snakemake("results/a").communicate(timeout=120)
        assert "cannot be locked" in again.lower(), again
        (tmp_path / "results").mkdir(exist_ok=True)
        (tmp_path / "results" / "b.go").touch()
        out, _ = snakemake("results/b").communicate(timeout=120)
        assert (tmp_path / "results" / "b" / "done.txt").read_text() == "results/b\n", out
        assert first.poll() is None  # the first study still runs, untouched
        assert not locks.exists(), "Snakemake now keeps other runs' locks: update docs/guides/clusters.md"
        (tmp_path / "results" / "a.go").touch()
        out, _ = first.communicate(timeout=120)
        assert first.returncode == 0, out
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (tmp_path / "results" / "a" / "done.txt").read_text() == "results/a\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a", "a.go", "b", "b.go"]


def test_readme_results_come_from_the_default_study_only(tmp_path):
    """scripts/update_readme_results.py reads config.yaml's folder, not another study's."""
    script = REPO / "scripts" / "update_readme_results.py"
    spec = importlib.util.spec_from_file_location("update_readme_results", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "workflow" / "schemas").mkdir(parents=True)
    (tmp_path / "workflow" / "schemas" / "config.schema.yaml").write_text(
        (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    head = ("id,claim,primary,verdict,legacy_verdict,outcomes,seeds,mde_holm\n")
    for folder, verdict in [("results", "default verdict"), ("results/paper-muse-news", "paper verdict")]:
        (tmp_path / folder / "README").mkdir(parents=True)
        (tmp_path / folder / "README" / "verdicts.csv").write_text(f"{head}Q1,claim,knowmem_f,{verdict},old,-,3,1\n")
    start, end = "<!-- BEGIN generated:verdicts -->", "<!-- END generated:verdicts -->"
    (tmp_path / "README.md").write_text(f"intro\n{start}\nold\n{end}\ntail\n")
    default = (REPO / "config.yaml").read_text()
    assert "\nresults:" not in default  # the default study takes the schema's default folder
    (tmp_path / "config.yaml").write_text(default)
    mod.ROOT = tmp_path
    assert mod.main(["--render-only"]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith(f"intro\n{start}\n") and text.endswith(f"\n{end}\ntail\n")
    assert "default verdict" in text and "paper verdict" not in text
    (tmp_path / "config.yaml").write_text(default + "\nresults: results/paper-muse-news\n")
    assert mod.main(["--render-only"]) == 0
    assert "paper verdict" in (tmp_path / "README.md").read_text()
