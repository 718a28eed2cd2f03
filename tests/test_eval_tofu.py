"""TOFU's metrics against hand-computed values, the answer scoring against direct scoring on a tiny
Llama, Forget Quality at aggregation, and the paper's TOFU table."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from test_eval import make_tok, tiny_llama

from unlearning import tofu_metrics as tm
from unlearning.report import tofu_table
from unlearning.report.tidy import tidy


# ----------------------------------------------------------------------------- formulas
def test_probability_normalised_by_length_and_with_options():
    assert tm.normalised_prob(math.log(2)) == pytest.approx(0.5)
    # p = 0.5 against two wrong answers of 0.25 each: 0.5 / (0.5 + 0.25 + 0.25)
    assert tm.prob_with_options(math.log(2), [math.log(4), math.log(4)]) == pytest.approx(0.5)
    # p = 0.5 against one wrong of 0.125: 0.5 / 0.625
    assert tm.prob_with_options(math.log(2), [math.log(8)]) == pytest.approx(0.8)


def test_truth_ratio_averages_losses_of_the_perturbed_answers():
    # exp(-(2 + 3)/2) / exp(-1) = exp(-1.5): the geometric, not arithmetic, mean of the probabilities
    assert tm.truth_ratio(1.0, [2.0, 3.0]) == pytest.approx(math.exp(-1.5))
    assert tm.truth_ratio(1.0, [2.0, 3.0]) != pytest.approx((math.exp(-2) + math.exp(-3)) / 2 / math.exp(-1))
    assert tm.truth_ratio(0.7, [0.7]) == pytest.approx(1.0)


def test_truth_ratio_aggregation_forget_and_retain():
    # forget: mean(min(r, 1/r)) = (0.5 + 0.5 + 1) / 3
    assert tm.truth_ratio_forget([0.5, 2.0, 1.0]) == pytest.approx(2 / 3)
    # retain side: mean(max(0, 1 - r)) = (0.75 + 0) / 2
    assert tm.truth_ratio_retain([0.25, 1.5]) == pytest.approx(0.375)


def test_forget_quality_is_the_exact_ks_p_value():
    # disjoint samples of 3 and 3: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1
    assert tm.forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    # 4 and 4: 2 / C(8, 4) = 2 / 70
    assert tm.forget_quality([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert tm.forget_quality([0.3, 0.9, 1.2], [0.3, 0.9, 1.2]) == 1.0
    with pytest.raises(ValueError):
        tm.forget_quality([], [1.0])


def test_model_utility_is_the_harmonic_mean_of_nine():
    assert tm.model_utility([0.5] * 9) == pytest.approx(0.5)
    # 9 / (8 * 1/1 + 1/0.25) = 9 / 12
    assert tm.model_utility([1.0] * 8 + [0.25]) == pytest.approx(0.75)
    assert tm.model_utility([1.0] * 8 + [0.0]) == 0.0
    with pytest.raises(ValueError, match="9 numbers"):
        tm.model_utility([0.5] * 8)


# ----------------------------------------------------------------------------- with a model
@pytest.fixture(scope="module")
def tok():
    return make_tok()


CHAT = {"prompt": "[INST] {question} [/INST]", "answer": "{answer}"}  # TOFU's Llama-2-chat template


@pytest.mark.parametrize("template", [None, CHAT], ids=["default", "llama2-chat"])
def test_answer_nll_is_the_mean_over_the_answer_and_its_eos_by_hand(tok, template):
    from unlearning.data.io import qa_document
    from unlearning.eval.tofu import answer_nlls

    model = tiny_llama(tok, max_pos=128)
    pairs = [("the cat sat?", "the cat sat on the mat"), ("Answer: A", "the dog"), ("x", "rug")]
    got = answer_nlls(model, tok, pairs, batch_size=2, template=template)
    for (q, a), nll in zip(pairs, got):
        doc = qa_document(q, a, template)
        head, full = tok(doc.prompt).input_ids, tok(str(doc)).input_ids
        assert full[:len(head)] == head and full[-1] != tok.eos_token_id
        full = full + [tok.eos_token_id]  # both references score the EOS after the answer
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([full])).logits[0], -1)
        manual = [-lp[i - 1, full[i]].item() for i in range(len(head), len(full))]
        assert nll == pytest.approx(sum(manual) / len(manual), abs=1e-5)
        # without the EOS term the mean differs: the test can tell the two apart
        assert nll != pytest.approx(sum(manual[:-1]) / len(manual[:-1]), abs=1e-4)


def test_rouge_l_stems_for_tofu_and_not_for_muse():
    from unlearning.eval.muse import rouge_l

    # reference he / was / running / races; prediction he / runs / race. Porter stems: he wa run race
    # and he run race, LCS 3 of 4; unstemmed only "he" matches, 1 of 4.
    assert rouge_l("He was running races", "he runs race", stemmer=True) == (pytest.approx(6 / 7), 0.75)
    assert rouge_l("He was running races", "he runs race") == (pytest.approx(2 / 7), 0.25)  # MUSE's


def test_a_generated_answer_with_a_newline_is_scored_whole(tok, monkeypatch):
    from unlearning.eval import common
    from unlearning.eval.tofu import greedy_answers, set_scores

    seen = {}

    def fake_generate(model, tok, prompts, max_new_tokens, **kw):
        seen.update(kw, prompts=prompts)
        return ["the cat sat\non the mat"] * len(prompts)

    monkeypatch.setattr(common, "greedy_generate", fake_generate)
    assert greedy_answers(None, tok, ["q?"], 8) == ["the cat sat\non the mat"]
    assert not seen.get("stop_strings") and seen["prompts"] == ["Question: q?\nAnswer:"]
    rec = {"question": "where?", "answer": "the cat sat on the mat", "paraphrased_answer": "the mat",
           "perturbed_answer": ["the rug"]}
    scores = set_scores(tiny_llama(tok, max_pos=128), tok, [rec], max_new_tokens=8, batch_size=2)
    assert scores["rouge"] == [1.0]  # cut at the newline it would be 3 / 6


def test_utility_sets_without_paraphrase_score_the_answer(tok):
    from unlearning.eval.tofu import answer_nlls, set_scores

    model = tiny_llama(tok, max_pos=128)
    recs = [{"question": "who sat?", "answer": "the cat", "perturbed_answer": ["the dog", "the rug"]},
            {"question": "where?", "answer": "on the mat", "perturbed_answer": ["on the rug"]}]
    got = set_scores(model, tok, recs, max_new_tokens=4, batch_size=2, with_options=True)
    for rec, ratio, prob in zip(recs, got["truth_ratio"], got["prob"]):
        answers = [rec["answer"], *rec["perturbed_answer"]]
        correct, *wrong = answer_nlls(model, tok, [(rec["question"], a) for a in answers])
        assert ratio == pytest.approx(tm.truth_ratio(correct, wrong), rel=1e-6)
        assert prob == pytest.approx(tm.prob_with_options(correct, wrong), rel=1e-6)
    with pytest.raises(KeyError, match="paraphrased_answer"):  # forget and retain sets need the paraphrase
        set_scores(model, tok, recs, max_new_tokens=4, batch_size=2)


def test_tofu_scores_on_a_tiny_llama(tok):
    from unlearning.eval.tofu import tofu_scores

    model = tiny_llama(tok, max_pos=128)
    rec = {"question": "the cat sat?", "answer": "on the mat", "paraphrased_answer": "the mat",
           "perturbed_answer": ["the rug", "the dog"]}
    names = ("forget", "retain", "real_authors", "world_facts")
    sets = {name: [rec, dict(rec, answer="the dog lay")] for name in names}
    metrics, items = tofu_scores(model, tok, sets, max_new_tokens=4, batch_size=2)
    nine = {f"{m}_{s}" for m in ("tofu_prob", "tofu_rouge", "truth_ratio") for s in ("r", "ra", "wf")}
    assert set(metrics) == {"tofu_prob_f", "tofu_rouge_f", "truth_ratio_f", "model_utility"} | nine
    assert metrics["model_utility"] == pytest.approx(100 * tm.model_utility([metrics[m] / 100 for m in sorted(nine)]))
    assert all(0 <= v <= 100 for v in metrics.values())
    assert len(items["truth_ratio_f"]) == 2 and all(r > 0 for r in items["truth_ratio_f"])
    # the forget truth ratio is the aggregation of the recorded per-item ratios
    assert metrics["truth_ratio_f"] == pytest.approx(100 * tm.truth_ratio_forget(items["truth_ratio_f"]))
    assert metrics["tofu_prob_f"] == pytest.approx(sum(items["tofu_prob_f"]) / 2)


# ----------------------------------------------------------------------------- aggregation, table
def _eval(path, optimizer, seed, ratios, prob, method="none", attack="none"):
    grade = {"target": "reference", "retrain": "reference", "adam": "first", "zo": "zeroth"}[optimizer]
    rec = {"benchmark": "tofu", "method": method, "optimizer": optimizer, "grade": grade, "seed": seed,
           "attack": attack, "metrics": {"tofu_prob_f": prob, "tofu_rouge_f": prob / 2, "truth_ratio_f": 50.0,
                                         "model_utility": 40.0 + seed},
           "items": {"truth_ratio_f": ratios}}
    path.write_text(json.dumps(rec))
    return path


def test_forget_quality_derived_against_the_retrain_model(tmp_path):
    files = [_eval(tmp_path / "r.json", "retrain", 0, [1.0, 2.0, 3.0], 10.0),
             _eval(tmp_path / "t.json", "target", 0, [4.0, 5.0, 6.0], 90.0),
             _eval(tmp_path / "a.json", "adam", 0, [1.5, 2.5, 3.5], 5.0, method="npo")]
    df = tidy(files)
    fq = df[df.metric == "forget_quality"].set_index("optimizer").value
    assert fq["retrain"] == 1.0
    assert fq["target"] == pytest.approx(0.1)
    assert fq["adam"] == pytest.approx(tm.forget_quality([1.5, 2.5, 3.5], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="retrain"):
        tidy(files[1:])


def test_tofu_table_rows_columns_and_interval(tmp_path):
    files = [_eval(tmp_path / "r.json", "retrain", 0, [1.0, 2.0, 3.0], 10.0),
             _eval(tmp_path / "t.json", "target", 0, [4.0, 5.0, 6.0], 90.0)]
    files += [_eval(tmp_path / f"a{s}.json", "adam", s, [1.0, 2.0, 3.0], 4.0 + 2 * s, method="npo") for s in range(3)]
    files += [_eval(tmp_path / "z0.json", "zo", 0, [1.0, 2.0, 3.0], 30.0, method="npo")]
    csv = tmp_path / "tofu.csv"
    tidy(files).to_csv(csv, index=False)
    table = tofu_table.write(csv, tmp_path / "out.csv", tmp_path / "out.md")
    assert list(table.row) == ["Original (target)", "Retrain", "npo / adam", "npo / zo"]
    adam = table.set_index("row").loc["npo / adam"]
    assert adam["tofu_prob_f_mean"] == pytest.approx(6.0) and adam["n"] == 3
    # t(0.975, 2) * sd / sqrt(3) with sd = 2
    assert adam["tofu_prob_f_ci95"] == pytest.approx(4.302652729911275 * 2 / math.sqrt(3))
    assert adam["forget_quality_mean"] == 1.0
    md = (tmp_path / "out.md").read_text()
    assert "| Original (target) | 90.0 | 45.0 | 40.0 | 0.1 | 1 |" in md
    assert pd.read_csv(tmp_path / "out.csv").shape[0] == 4
    with pytest.raises(ValueError, match="not a TOFU table"):
        tofu_table.tofu_table(pd.DataFrame({"metric": ["knowmem_f"], "attack": ["none"]}))
