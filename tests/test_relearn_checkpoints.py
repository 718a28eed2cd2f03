"""`attacks.relearn.keep_checkpoints`: the relearned checkpoints are kept (the default, the tiny
studies) or temporary (the paper-scale studies, where each is a full 7B model), and switching it
changes nothing that the relearning stage computes."""

from __future__ import annotations

import re

import pytest
import yaml

from unlearning.config import validate
from unlearning.plan import StudyPlan

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


# Which studies keep their checkpoints, and that switching changes no parameter of the relearning stage:
# tests/test_plan.py (test_relearned_checkpoints_kept_or_temporary_changes_no_parameter), in-process.
# Here the integration: the rule marks exactly the relearned folders temporary when switched off.


def test_switching_it_off_makes_every_checkpoint_temporary(study):
    path = study / "configs" / "smoke-temp.yaml"
    cfg = yaml.safe_load((study / "configs" / "smoke.yaml").read_text())
    cfg["attacks"]["relearn"]["keep_checkpoints"] = False
    path.write_text(yaml.safe_dump(cfg))
    out = plan(study, "configs/smoke-temp.yaml")
    assert temporary_outputs(out) == relearn_outputs(out) != set()
    # The relearning stage gets the plan's parameters, which do not name the switch.
    params = set(re.findall(r"relearn .*?--params '(\{.*?\})'", out))
    validated = validate(yaml.safe_load((study / "configs" / "smoke.yaml").read_text()))
    assert params == {StudyPlan(validated).relearn_params()} and "keep_checkpoints" not in out
