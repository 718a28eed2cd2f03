"""TOFU metrics: answer probability, ROUGE-L recall, truth ratio, Forget Quality, Model Utility.

Definitions as TOFU's code and open-unlearning's (src/evals/metrics/memorization.py, configs
eval/tofu_metrics) compute them; see REFERENCE.md and docs/reference/tofu.md:
- The benchmark's question/answer template (data.io.QA_TEMPLATE by default, "Question: {q}\\nAnswer:"
  then " {a}"; paper-tofu: Llama-2-chat's "[INST] {q} [/INST]" then "{a}", as TOFU tuned its models);
  the answer is scored (or generated) after the prompt.
- Answer NLL: the mean over the answer's tokens *and the EOS after it*, which both references score
  (TOFU's labels end with EOS; open-unlearning appends it to the chat ids).
- Probability: ``exp(-mean token NLL of the answer)`` (normalised by its length). On the real-authors
  and world-facts sets: ``p(correct) / (p(correct) + sum p(perturbed))`` over the same normalised
  probabilities (open-unlearning ``probability_w_options``).
- ROUGE-L recall of the greedy answer against the answer, with rouge_score's Porter stemmer (both
  references: ``RougeScorer(["rouge1", "rougeL"], use_stemmer=True)``). The greedy answer runs until
  EOS or the length cap, uncut (TOFU never cuts it; open-unlearning stops at EOS).
- Truth ratio per item: ``exp(-mean_k L_k) / exp(-L_para)`` with ``L`` mean token NLLs, the mean over
  the perturbed answers taken over their losses (a geometric mean of their normalised
  probabilities; TOFU and open-unlearning both do so); ``L_para`` is the paraphrased answer's on the
  forget and retain sets and the answer's on the real-authors and world-facts sets, which have no
  paraphrase (both references' ``base_answer_key``). Reported on the forget set as
  ``mean(min(r, 1/r))`` (closer to 1 is better), elsewhere as ``mean(max(0, 1 - r))``.
- Forget Quality: the p-value of the two-sample KS test (``scipy.stats.ks_2samp``) between the
  unlearned model's and the retain model's per-item forget truth ratios (raw ratios, as TOFU's
  ``get_forget_quality``).
- Model Utility: the harmonic mean of the nine retain / real-authors / world-facts numbers
  (probability, ROUGE-L recall, truth ratio of each), 0 when any is 0.
The formulas (unlearning/tofu_metrics.py, torch-free: the aggregation computes Forget Quality) are on
TOFU's 0-1 scale; ``tofu_scores`` reports x100.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..tofu_metrics import (  # noqa: F401  (the formulas, re-exported beside the model-based scores)
    FORGET_TRUTH_RATIOS,
    forget_quality,
    model_utility,
    normalised_prob,
    prob_with_options,
    truth_ratio,
    truth_ratio_forget,
    truth_ratio_retain,
)

# The utility sets and the suffix of their metrics (``tofu_prob_r``, ``truth_ratio_wf``, ...).
UTILITY_SETS = {"retain": "r", "real_authors": "ra", "world_facts": "wf"}


def prompt(question: str, template: Mapping[str, str] | None = None) -> str:
    """The question as the model is asked it (``template``'s prompt; default data.io.QA_TEMPLATE)."""
    from ..data.io import qa_document

    return qa_document(question, "", template).prompt


def answer_nlls(model, tok, pairs: Sequence[tuple[str, str]], batch_size: int = 16,
                template: Mapping[str, str] | None = None) -> list[float]:
    """Mean token NLL of each ``answer`` after its question's prompt, over the answer's tokens and the
    EOS that ends it (both references score it; none where the tokenizer has no EOS)."""
    from ..data.io import qa_document
    from .common import encode, pad_id, score_positions

    eos = tok.eos_token_id
    seqs, targets = [], []
    for question, answer in pairs:
        doc = qa_document(question, answer, template)
        head, full = encode(tok, doc.prompt), encode(tok, str(doc))
        start = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), len(head))
        start = max(start, 1)
        if start >= len(full):
            raise ValueError(f"answer {answer!r} adds no token to its prompt")
        if eos is not None and full[-1] != eos:
            full = full + [eos]
        seqs.append(full)
        targets.append([(i - 1, full[i]) for i in range(start, len(full))])
    logps = score_positions(model, seqs, targets, batch_size=batch_size, pad=pad_id(tok), desc="tofu")
    return [-float(np.mean(lp)) for lp in logps]


def greedy_answers(model, tok, questions: Sequence[str], max_new_tokens: int, batch_size: int = 16,
                   template: Mapping[str, str] | None = None) -> list[str]:
    """Greedy answer to each question: up to EOS or ``max_new_tokens``, whole (newlines kept)."""
    from .common import greedy_generate

    return greedy_generate(model, tok, [prompt(q, template) for q in questions], max_new_tokens,
                           batch_size=batch_size, desc="tofu")


def set_scores(model, tok, records: Sequence[Mapping], max_new_tokens: int, batch_size: int = 16,
               with_options: bool = False, template: Mapping[str, str] | None = None) -> dict[str, list[float]]:
    """Per-item ``prob``, ``rouge`` (stemmed recall) and ``truth_ratio`` (raw) of one ``*_perturbed``
    set. ``with_options`` marks a real-authors/world-facts set: the probability is correct against
    perturbed, and the truth ratio's correct side is ``answer`` (these sets have no paraphrase)."""
    from .muse import rouge_l

    k = [len(r["perturbed_answer"]) for r in records]
    pairs = [(r["question"], r["answer"]) for r in records]
    if not with_options:
        pairs += [(r["question"], r["paraphrased_answer"]) for r in records]
    pairs += [(r["question"], w) for r in records for w in r["perturbed_answer"]]
    nll = answer_nlls(model, tok, pairs, batch_size, template)
    n = len(records)
    correct = nll[:n]
    para, rest = (correct, nll[n:]) if with_options else (nll[n:2 * n], nll[2 * n:])
    wrong, i = [], 0
    for kk in k:
        wrong.append(rest[i:i + kk])
        i += kk
    answers = greedy_answers(model, tok, [r["question"] for r in records], max_new_tokens, batch_size, template)
    prob = [prob_with_options(c, w) if with_options else normalised_prob(c) for c, w in zip(correct, wrong)]
    return {"prob": prob,
            "rouge": [rouge_l(r["answer"], a, stemmer=True)[1] for r, a in zip(records, answers)],
            "truth_ratio": [truth_ratio(p, w) for p, w in zip(para, wrong)]}


def tofu_scores(model, tok, sets: Mapping[str, Sequence[Mapping]], max_new_tokens: int,
                batch_size: int = 16, template: Mapping[str, str] | None = None,
                ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """TOFU's metrics of one model (x100; see the module doc) and the per-item values behind them.

    ``sets`` holds the records of ``forget``, ``retain``, ``real_authors`` and ``world_facts``
    (the ``*_perturbed`` files); ``template`` the benchmark's question/answer template. Returns
    ``(metrics, items)``: metrics ``tofu_prob_f``, ``tofu_rouge_f``, ``truth_ratio_f``,
    ``model_utility`` and its nine numbers (``tofu_prob_r``, ``tofu_rouge_r``, ``truth_ratio_r``, the
    same with ``_ra`` and ``_wf``; Forget Quality needs the retain model, so it is derived at
    aggregation from ``items['truth_ratio_f']``, the raw forget ratios),
    and items with the per-item forget probability, ROUGE and truth ratio.
    """
    f = set_scores(model, tok, sets["forget"], max_new_tokens, batch_size, template=template)
    metrics = {"tofu_prob_f": 100.0 * float(np.mean(f["prob"])),
               "tofu_rouge_f": 100.0 * float(np.mean(f["rouge"])),
               "truth_ratio_f": 100.0 * truth_ratio_forget(f["truth_ratio"])}
    utility = []
    for name, suffix in UTILITY_SETS.items():
        s = set_scores(model, tok, sets[name], max_new_tokens, batch_size, with_options=name != "retain",
                       template=template)
        three = [float(np.mean(s["prob"])), float(np.mean(s["rouge"])), truth_ratio_retain(s["truth_ratio"])]
        utility += three
        # the nine numbers behind model utility, each reported too (a harmonic mean hides which fell)
        metrics.update({f"{m}_{suffix}": 100.0 * v for m, v in zip(("tofu_prob", "tofu_rouge", "truth_ratio"), three)})
    metrics["model_utility"] = 100.0 * model_utility(utility)
    items = {"tofu_prob_f": [100.0 * p for p in f["prob"]], "tofu_rouge_f": [100.0 * r for r in f["rouge"]],
             FORGET_TRUTH_RATIOS: f["truth_ratio"]}
    return metrics, items
