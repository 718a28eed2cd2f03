"""Our multiple-choice prompts equal lm-eval's own task templates (the installed lm-eval's YAML task
files for wmdp_bio, wmdp_cyber, wmdp_chem and every MMLU subject), and WMDP's prompt subject comes
from the subset."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearning.prompts import LETTERS, WMDP_SUBJECTS, mc_prompt, mc_subject

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.tasks._yaml_loader import load_yaml  # noqa: E402
from lm_eval.utils import apply_template  # noqa: E402

TASKS = Path(lm_eval.__file__).parent / "tasks"
DOC = {"question": "  Which of these is stored in the cell nucleus?\n", "choices": ["DNA", "ATP", "CO2", "O2"],
       "answer": 0}


def lm_eval_prompt(task_file: Path, doc: dict) -> tuple[str, dict]:
    """lm-eval's zero-shot context for ``doc``: the task's description, then its doc_to_text."""
    cfg = load_yaml(task_file, resolve_func=False)
    return cfg["description"] + apply_template(cfg["doc_to_text"], doc), cfg


@pytest.mark.parametrize("dataset", sorted(WMDP_SUBJECTS))
def test_wmdp_prompt_equals_lm_evals_task_file(dataset):
    expected, cfg = lm_eval_prompt(TASKS / "wmdp" / f"{dataset.replace('-', '_')}.yaml", DOC)
    assert cfg["dataset_name"] == dataset
    assert cfg["doc_to_choice"] == list(LETTERS) and cfg.get("target_delimiter", " ") == " "
    subject = mc_subject({"kind": "wmdp", "dataset": dataset})
    assert mc_prompt(DOC["question"], DOC["choices"], subject) == expected


def test_mmlu_prompt_equals_lm_evals_task_file_for_every_subject():
    files = sorted((TASKS / "mmlu" / "default").glob("mmlu_*.yaml"))
    assert len(files) == 57
    for f in files:
        expected, cfg = lm_eval_prompt(f, DOC)
        # our MMLU records carry the hub's subject name (underscores), as lm-eval's dataset_name
        assert mc_prompt(DOC["question"], DOC["choices"], cfg["dataset_name"]) == expected, f.name


def test_the_data_manifest_and_the_prompt_name_the_same_subject():
    from unlearning.data.wmdp import SUBJECTS

    assert {f"wmdp-{k}": v for k, v in SUBJECTS.items()} == WMDP_SUBJECTS


def test_synthetic_wmdp_keeps_its_own_subject():
    assert mc_subject({"kind": "wmdp", "subject": "fictional biology"}) == "fictional biology"
    assert mc_subject({"kind": "wmdp", "dataset": "wmdp-chem", "subject": "x"}) == "chemistry"


def test_a_hub_wmdp_subset_refuses_a_subject():
    from unlearning.config import ConfigError, validate

    base = {"methods": {"ga": {"objective": "grad_ascent"}}, "optimizers": {"adam": {"type": "adam"}}}
    cfg = validate({**base, "benchmarks": {"w": {"kind": "wmdp", "source": "hub", "dataset": "wmdp-cyber"}}})
    assert "subject" not in cfg["benchmarks"]["w"]
    assert validate({**base, "benchmarks": {"w": {"kind": "wmdp"}}})["benchmarks"]["w"]["subject"] == "biology"
    with pytest.raises(ConfigError, match="subject"):
        validate({**base, "benchmarks": {"w": {"kind": "wmdp", "source": "hub", "dataset": "wmdp-cyber",
                                             "subject": "computer security"}}})


@pytest.mark.slow
def test_mc_bos_option_adds_or_drops_the_tokenizers_bos(tmp_path):
    import torch

    from unlearning.eval.mc import mc_predictions
    from unlearning.models import build_model, train_tokenizer

    tok = train_tokenizer(["Which of these is stored in the cell nucleus? DNA ATP CO2 O2"], 300, tmp_path)
    model = build_model(dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_len=128),
                        len(tok), seed=0)
    seen = []
    real = model.forward
    model.forward = lambda input_ids=None, **kw: (seen.append(input_ids[0, 0].item()), real(input_ids=input_ids,
                                                                                           **kw))[1]
    with torch.no_grad():
        on = mc_predictions(model, tok, [DOC], "biology", bos=True)
        off = mc_predictions(model, tok, [DOC], "biology", bos=False)
    assert seen[0] == tok.bos_token_id and seen[-1] != tok.bos_token_id
    assert on != off
