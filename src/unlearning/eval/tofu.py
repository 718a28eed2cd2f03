"""TOFU metrics: answer probability, ROUGE-L recall, truth ratio, Forget Quality, Model Utility.

Definitions as TOFU's code and open-unlearning's (src/evals/metrics/memorization.py, configs
eval/tofu_metrics) compute them; see REFERENCE.md:
- Prompt ``"Question: {q}\\nAnswer:"``, the answer scored (or generated) after it.
- Probability: ``exp(-mean token NLL of the answer)`` (normalised by its length). On the real-authors
  and world-facts sets: ``p(correct) / (p(correct) + sum p(perturbed))`` over the same normalised
  probabilities (open-unlearning ``probability_w_options``).
- ROUGE-L recall of the greedy answer against the answer (rouge_score, no stemmer).
- Truth ratio per item: ``exp(-mean_k L_k) / exp(-L_para)`` with ``L`` mean token NLLs, the mean over
  the perturbed answers taken over their losses (a geometric mean of their normalised
  probabilities; TOFU and open-unlearning both do so). Reported on the forget set as
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


def prompt(question: str) -> str:
    """TOFU's question prompt (the answer follows after a space)."""
    from ..data.io import QA_PROMPT

    return QA_PROMPT.format(question=question)


def answer_nlls(model, tok, pairs: Sequence[tuple[str, str]], batch_size: int = 16) -> list[float]:
    """Mean token NLL of each ``answer`` after ``prompt(question)`` (only the answer's tokens)."""
    from .common import encode, pad_id, score_positions

    seqs, targets = [], []
    for question, answer in pairs:
        p = prompt(question)
        head, full = encode(tok, p), encode(tok, p + " " + answer)
        start = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), len(head))
        start = max(start, 1)
        if start >= len(full):
            raise ValueError(f"answer {answer!r} adds no token to its prompt")
        seqs.append(full)
        targets.append([(i - 1, full[i]) for i in range(start, len(full))])
    logps = score_positions(model, seqs, targets, batch_size=batch_size, pad=pad_id(tok), desc="tofu")
    return [-float(np.mean(lp)) for lp in logps]


def greedy_answers(model, tok, questions: Sequence[str], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answer to each question, cut at the end of its line."""
    from .common import greedy_generate
    from .muse import cut_at_stop

    outs = greedy_generate(model, tok, [prompt(q) for q in questions], max_new_tokens,
                           batch_size=batch_size, desc="tofu", stop_strings=["\n"])
    return [cut_at_stop(o, ("\n",)) for o in outs]


def set_scores(model, tok, records: Sequence[Mapping], max_new_tokens: int, batch_size: int = 16,
               with_options: bool = False) -> dict[str, list[float]]:
    """Per-item ``prob``, ``rouge`` (recall) and ``truth_ratio`` (raw) of one ``*_perturbed`` set;
    ``with_options`` gives the real-authors/world-facts probability (correct vs perturbed)."""
    from .muse import rouge_l

    k = [len(r["perturbed_answer"]) for r in records]
    pairs = [(r["question"], r["answer"]) for r in records]
    pairs += [(r["question"], r["paraphrased_answer"]) for r in records]
    pairs += [(r["question"], w) for r in records for w in r["perturbed_answer"]]
    nll = answer_nlls(model, tok, pairs, batch_size)
    n = len(records)
    correct, para, rest = nll[:n], nll[n:2 * n], nll[2 * n:]
    wrong, i = [], 0
    for kk in k:
        wrong.append(rest[i:i + kk])
        i += kk
    answers = greedy_answers(model, tok, [r["question"] for r in records], max_new_tokens, batch_size)
    prob = [prob_with_options(c, w) if with_options else normalised_prob(c) for c, w in zip(correct, wrong)]
    return {"prob": prob,
            "rouge": [rouge_l(r["answer"], a)[1] for r, a in zip(records, answers)],
            "truth_ratio": [truth_ratio(p, w) for p, w in zip(para, wrong)]}


def tofu_scores(model, tok, sets: Mapping[str, Sequence[Mapping]], max_new_tokens: int,
                batch_size: int = 16) -> tuple[dict[str, float], dict[str, list[float]]]:
    """TOFU's metrics of one model (x100; see the module doc) and the per-item values behind them.

    ``sets`` holds the records of ``forget``, ``retain``, ``real_authors`` and ``world_facts``
    (the ``*_perturbed`` files). Returns ``(metrics, items)``: metrics ``tofu_prob_f``,
    ``tofu_rouge_f``, ``truth_ratio_f``, ``model_utility`` and its nine numbers (``tofu_prob_r``,
    ``tofu_rouge_r``, ``truth_ratio_r``, the same with ``_ra`` and ``_wf``; Forget Quality needs the retain
    model, so it is derived at aggregation from ``items['truth_ratio_f']``, the raw forget ratios),
    and items with the per-item forget probability, ROUGE and truth ratio.
    """
    f = set_scores(model, tok, sets["forget"], max_new_tokens, batch_size)
    metrics = {"tofu_prob_f": 100.0 * float(np.mean(f["prob"])),
               "tofu_rouge_f": 100.0 * float(np.mean(f["rouge"])),
               "truth_ratio_f": 100.0 * truth_ratio_forget(f["truth_ratio"])}
    utility = []
    for name, suffix in UTILITY_SETS.items():
        s = set_scores(model, tok, sets[name], max_new_tokens, batch_size, with_options=name != "retain")
        three = [float(np.mean(s["prob"])), float(np.mean(s["rouge"])), truth_ratio_retain(s["truth_ratio"])]
        utility += three
        # the nine numbers behind model utility, each reported too (a harmonic mean hides which fell)
        metrics.update({f"{m}_{suffix}": 100.0 * v for m, v in zip(("tofu_prob", "tofu_rouge", "truth_ratio"), three)})
    metrics["model_utility"] = 100.0 * model_utility(utility)
    items = {"tofu_prob_f": [100.0 * p for p in f["prob"]], "tofu_rouge_f": [100.0 * r for r in f["rouge"]],
             FORGET_TRUTH_RATIOS: f["truth_ratio"]}
    return metrics, items
