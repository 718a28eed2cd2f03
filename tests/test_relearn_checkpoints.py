"""`attacks.relearn.keep_checkpoints`: the relearned checkpoints are kept (the default, the tiny
studies) or temporary (the paper-scale studies, where each is a full 7B model), and switching it
changes nothing that the relearning stage computes."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import make_study, snakemake

# Every test here starts a process (docs/extending/tests.md).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("ckpt") / "study")


def temporary_outputs(output: str) -> set[str]:
    return set(re.findall(r"^Would remove temporary output (\S+)$", output, re.M))


def relearn_outputs(output: str) -> set[str]:
    """Checkpoint folders the planned relearn jobs write: `--out ROOT` and the config's step counts."""
    roots = re.findall(r"unlearning --threads \d+ relearn .*?--out (\S+)", output)
    steps = re.search(r'relearn .*?--params \'(\{.*?\})\'', output)
    counts = yaml.safe_load(steps.group(1))["steps"] if steps else []
    return {f"{r}/relearn{s}" for r in roots for s in counts}


def plan(study, configfile):
    res = snakemake(study, "-n", "-p", "--cores", "1", configfile=configfile, timeout=300)
    return res.stdout + res.stderr


def test_the_tiny_study_keeps_its_checkpoints(study):
    out = plan(study, "configs/smoke.yaml")
    assert relearn_outputs(out) and not temporary_outputs(out)
    assert "keep_checkpoints" not in out  # not a parameter of any job


def test_switching_it_off_makes_every_checkpoint_temporary(study):
    path = study / "configs" / "smoke-temp.yaml"
    cfg = yaml.safe_load((study / "configs" / "smoke.yaml").read_text())
    cfg["attacks"]["relearn"]["keep_checkpoints"] = False
    path.write_text(yaml.safe_dump(cfg))
    out = plan(study, "configs/smoke-temp.yaml")
    assert temporary_outputs(out) == relearn_outputs(out) != set()
    # The relearning stage gets the same parameters either way, so switching reruns no job.
    params = re.findall(r"relearn .*?--params ('\{.*?\}')", out)
    assert params and set(params) == set(re.findall(r"relearn .*?--params ('\{.*?\}')",
                                                    plan(study, "configs/smoke.yaml")))


@pytest.mark.parametrize("name", ["paper-muse-news", "paper-muse-books", "paper-wmdp"])
def test_the_paper_studies_mark_their_checkpoints_temporary(study, name):
    out = plan(study, f"configs/{name}.yaml")
    relearned = relearn_outputs(out)
    assert relearned and temporary_outputs(out) == relearned
