"""MUSE metrics: VerbMem, KnowMem (ROUGE-L F1 x100), Min-K% membership scores, AUC, PrivLeak.

Faithful to MUSE's own code (swj0419/muse_bench, metrics/{verbmem,knowmem,privleak}.py):
- ROUGE-L from ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)``,
  ``score(target=reference, prediction=output)``; F1 is reported, recall kept per item.
- VerbMem: greedy ``max_new_tokens`` continuation of ``prompt``; reference = the first
  ``max_new_tokens`` token ids of ``tok(gt)`` (default special tokens, so a BOS counts among
  them as in MUSE), decoded with special tokens skipped.
- KnowMem: prompt ``"Question: {q}\\nAnswer: {a}\\n\\n"`` per ICL example, then
  ``"Question: {q}\\nAnswer: "`` (MUSE ends the prompt with a space); the output is cut at the
  first of ``"\\n\\n"``, ``"\\nQuestion"``, ``"Question:"`` and stripped.
- PrivLeak: see ``auc`` for the sign convention.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from .common import encode, greedy_generate, model_max_length, pad_id, score_positions

KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")
_SCORERS: dict[bool, object] = {}


def _scorer(stemmer: bool):
    if stemmer not in _SCORERS:
        from rouge_score import rouge_scorer

        _SCORERS[stemmer] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)
    return _SCORERS[stemmer]


def rouge_l(reference: str, prediction: str, stemmer: bool = False) -> tuple[float, float]:
    """ROUGE-L ``(F1, recall)`` of ``prediction`` against ``reference``; without the Porter stemmer
    as MUSE scores (``stemmer=True``: TOFU's and open-unlearning's setting)."""
    s = _scorer(stemmer).score(reference, prediction)["rougeL"]
    return float(s.fmeasure), float(s.recall)


# ----------------------------------------------------------------------------- VerbMem
def verbmem_details(model, tok, records: Sequence[Mapping[str, str]], max_new_tokens: int = 128,
                    batch_size: int = 16, progress: bool | None = None) -> list[dict]:
    """Per item: ``{"prompt", "gt", "output", "rougeL", "rougeL_recall"}`` (``gt`` truncated;
    ROUGE values 0-1 as rouge_score gives them)."""
    outputs = greedy_generate(model, tok, [r["prompt"] for r in records], max_new_tokens,
                              batch_size=batch_size, progress=progress, desc="verbmem")
    items = []
    for rec, out in zip(records, outputs):
        gt_short = tok.decode(encode(tok, rec["gt"])[:max_new_tokens], skip_special_tokens=True,
                              clean_up_tokenization_spaces=False)
        f1, recall = rouge_l(gt_short, out)
        items.append({"prompt": rec["prompt"], "gt": gt_short, "output": out, "rougeL": f1, "rougeL_recall": recall})
    return items


def verbmem(model, tok, records: Sequence[Mapping[str, str]], max_new_tokens: int = 128,
            batch_size: int = 16, progress: bool | None = None) -> float:
    """VerbMem: mean ROUGE-L F1 x100 of greedy continuations against the ground truth."""
    return float(np.mean(verbmem_scores(model, tok, records, max_new_tokens, batch_size, progress)))


def verbmem_scores(model, tok, records: Sequence[Mapping[str, str]], max_new_tokens: int = 128,
                   batch_size: int = 16, progress: bool | None = None) -> list[float]:
    """Per-item ROUGE-L F1 x100 (``verbmem`` is their mean)."""
    items = verbmem_details(model, tok, records, max_new_tokens, batch_size, progress)
    return [100.0 * it["rougeL"] for it in items]


# ----------------------------------------------------------------------------- KnowMem
def knowmem_prompt(question: str, icl: Iterable[Mapping[str, str]] = (), answer_space: bool = True) -> str:
    """MUSE's few-shot KnowMem prompt. MUSE ends it with "Answer: " (a trailing space), as its
    published numbers do. Both tokenizer kinds fold a word's leading space into the word's token:
    byte-level BPE ("Ġword") and Llama's sentencepiece ("▁word"). So the trailing space is split off
    as a lone space (byte-level) or lone word-marker token (sentencepiece), and the model is asked
    for the answer's first word without its space, a form rare in training. ``answer_space=False``
    drops the space ("token healing"); docs/reference/testbed.md gives what it moves on either kind."""
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
    return shots + f"Question: {question}\nAnswer:" + (" " if answer_space else "")


def cut_at_stop(text: str, stops: Sequence[str] = KNOWMEM_STOP) -> str:
    """The text before the first occurrence of any stop string (MUSE's
    ``get_prefix_before_words_occur``), stripped."""
    for stop in stops:
        text = text.split(stop)[0]
    return text.strip()


def knowmem_details(model, tok, qa: Sequence[Mapping[str, str]], icl: Sequence[Mapping[str, str]],
                    max_new_tokens: int = 32, batch_size: int = 16, progress: bool | None = None,
                    answer_space: bool = True) -> list[dict]:
    """Per item: ``{"question", "answer", "output", "rougeL", "rougeL_recall"}`` (0-1)."""
    prompts = [knowmem_prompt(r["question"], icl, answer_space) for r in qa]
    outputs = greedy_generate(model, tok, prompts, max_new_tokens, batch_size=batch_size,
                              progress=progress, desc="knowmem", stop_strings=KNOWMEM_STOP)
    items = []
    for rec, raw in zip(qa, outputs):
        out = cut_at_stop(raw)
        f1, recall = rouge_l(rec["answer"], out)
        items.append({"question": rec["question"], "answer": rec["answer"], "output": out,
                      "rougeL": f1, "rougeL_recall": recall})
    return items


def knowmem(model, tok, qa: Sequence[Mapping[str, str]], icl: Sequence[Mapping[str, str]],
            max_new_tokens: int = 32, batch_size: int = 16, progress: bool | None = None,
            answer_space: bool = True) -> float:
    """KnowMem: mean ROUGE-L F1 x100 of few-shot greedy answers (recall: ``knowmem_details``)."""
    return float(np.mean(knowmem_scores(model, tok, qa, icl, max_new_tokens, batch_size, progress,
                                        answer_space)))


def knowmem_scores(model, tok, qa: Sequence[Mapping[str, str]], icl: Sequence[Mapping[str, str]],
                   max_new_tokens: int = 32, batch_size: int = 16, progress: bool | None = None,
                   answer_space: bool = True) -> list[float]:
    """Per-item ROUGE-L F1 x100 (``knowmem`` is their mean)."""
    items = knowmem_details(model, tok, qa, icl, max_new_tokens, batch_size, progress, answer_space)
    return [100.0 * it["rougeL"] for it in items]


# ----------------------------------------------------------------------------- PrivLeak
def mink_from_logprobs(logprobs: Sequence[float], k: float = 0.4) -> float:
    """Min-K% score: ``-mean`` of the lowest ``max(1, int(k * n))`` token log-probs.

    Higher score = less likely text. MUSE uses ``int(k * n)`` without the floor of 1 (NaN for
    texts of under 3 tokens at k = 0.4); otherwise identical.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.size == 0:
        raise ValueError("Min-K% needs at least one scored token")
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    n = max(1, int(lp.size * k))
    return float(-np.sort(lp)[:n].mean())


def text_logprobs(model, tok, texts: Sequence[str], batch_size: int = 16,
                  progress: bool | None = None) -> list[list[float]]:
    """Per text, the log-prob of every token after the first given its prefix (texts longer
    than the model's context keep their first ``max_position_embeddings`` tokens)."""
    limit = model_max_length(model)
    seqs = [encode(tok, t) for t in texts]
    if limit is not None:
        seqs = [s[:limit] for s in seqs]
    for i, s in enumerate(seqs):
        if len(s) < 2:
            raise ValueError(f"text {i} has {len(s)} token(s); Min-K% needs at least 2: {texts[i][:60]!r}")
    targets = [[(p - 1, s[p]) for p in range(1, len(s))] for s in seqs]
    return score_positions(model, seqs, targets, batch_size=batch_size, pad=pad_id(tok),
                           progress=progress, desc="min-k")


def mink_scores(model, tok, texts: Sequence[str], k: float = 0.4, batch_size: int = 16,
                progress: bool | None = None) -> list[float]:
    """Min-K% (k = 40%) membership score per text: -mean of its lowest-k token log-probs.
    Member (memorised) texts have high log-probs, hence *low* scores."""
    return [mink_from_logprobs(lp, k) for lp in text_logprobs(model, tok, texts, batch_size, progress)]


def auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """MUSE's ``forget_holdout_Min-40%`` AUC from Min-K% scores.

    MUSE (metrics/privleak.py) labels forget 0 ("nonmember") and holdout 1 ("member") and runs
    ``roc_curve(y, -score)``; that equals ``roc_auc_score`` with forget as the positive class and
    the Min-K% score itself, i.e. P(score_forget > score_holdout). So a model that memorised the
    forget set (low forget scores) gets an AUC near 0, a retrained model about 0.5 (MUSE's
    AUC_retrain: News 0.4772, Books 0.5393), an over-unlearned one above 0.5. Hence PrivLeak is
    about -100 for the target model (MUSE's table: News -99.8), 0 for retrain, > 0 when
    over-unlearned.
    """
    from sklearn.metrics import roc_auc_score

    f, h = list(map(float, forget_scores)), list(map(float, holdout_scores))
    if not f or not h:
        raise ValueError("auc needs non-empty forget and holdout score lists")
    y = np.array([1] * len(f) + [0] * len(h))
    return float(roc_auc_score(y, np.array(f + h)))


def privleak(auc_value: float, auc_retrain: float) -> float:
    """PrivLeak = (AUC - AUC_retrain) / AUC_retrain * 100."""
    if auc_retrain == 0:
        raise ValueError("privleak: auc_retrain is 0")
    return (auc_value - auc_retrain) / auc_retrain * 100.0
