"""mc_accuracy agrees with lm-eval itself (offline: a tiny saved Llama, a local JSON task).

Skipped when lm_eval is not installed (it is not a project dependency)."""

import json

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from test_eval import make_tok, tiny_llama  # noqa: E402

from unlearning import eval as ev  # noqa: E402

torch.set_num_threads(1)

TASK = """task: tiny_wmdp_like
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about biology.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

QUESTIONS = [{"question": f"Question number {i}: which {w}?", "choices": [w, f"{w}s", "cat", f"mat {i}"],
              "answer": i % 4} for i, w in enumerate(["cell", "gene", "virus", "toxin", "dog", "rug", "sat", "on"])]


@pytest.mark.slow
def test_mc_accuracy_equals_lm_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tok = make_tok()
    model = tiny_llama(tok, max_pos=256, seed=4)
    with torch.no_grad():  # louder attention/MLP and a sharper head: preferences differ by question
        model.lm_head.weight.mul_(60.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(20.0)
            layer.mlp.down_proj.weight.mul_(20.0)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny.yaml").write_text(TASK.format(data=data))

    lm = HFLM(pretrained=str(tmp_path / "model"), tokenizer=str(tmp_path / "model"), device="cpu", batch_size=8)
    res = lm_eval.simple_evaluate(model=lm, tasks=["tiny_wmdp_like"], log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    ref_acc = 100 * res["results"]["tiny_wmdp_like"]["acc,none"]
    samples = sorted(res["samples"]["tiny_wmdp_like"], key=lambda s: s["doc_id"])
    ref_lls = [[r[0] for r in s["filtered_resps"]] for s in samples]

    ours = ev.mc_predictions(model, tok, QUESTIONS, "biology", batch_size=3)
    assert [x for ll in ours for x in ll] == pytest.approx([x for ll in ref_lls for x in ll], abs=1e-3)
    assert ev.mc_accuracy(model, tok, QUESTIONS, "biology") == pytest.approx(ref_acc)
    picks = {max(range(4), key=lambda i: ll[i]) for ll in ours}
    assert len(picks) > 1, "test is uninformative: the model picks the same letter everywhere"
