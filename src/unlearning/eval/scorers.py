"""Each benchmark kind's scorer: every metric of one loaded model on that kind's data folder.

The registry (``registry.BENCHMARK_KINDS``) names a kind's scorer; ``stages.evaluate.score`` calls it
with the same arguments for every kind: ``(model, tok, data_dir, kind, params, subject, split, wanted,
items)``. ``params`` is the config's `evaluation` entry; ``split(name, items, key, scores)`` also
reports a forget metric on the items the relearning attack trains on and on the rest; ``wanted(name)``
says whether a metric is asked for (the calibration reads two); ``items`` receives per-item values a
metric derived at aggregation needs. Values on a 0-100 scale (``mink_auc`` 0-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..data.io import load_split

Split = Callable[[str, list, str, list], None]


def cap(records: list, n: int) -> list:
    """The first ``n`` records (all when ``n`` is 0 or None)."""
    return records[:n] if n else records


def score_muse(model: Any, tok: Any, data_dir: str | Path, kind: str, params: dict, subject: str,
               split: Split, wanted: Callable[[str], bool], items: dict | None) -> dict[str, float]:
    """MUSE: VerbMem on the forget set, KnowMem on forget and retain QA, Min-K% AUC (PrivLeak)."""
    from .. import eval as E
    from ..stages.common import texts

    bs, n = params["batch_size"], params["max_questions"]
    out: dict[str, float] = {}
    if wanted("verbmem_f"):
        vm = cap(load_split(data_dir, kind, "verbmem/forget.jsonl"), n)
        vm_scores = E.verbmem_scores(model, tok, vm, max_new_tokens=params["verbmem_max_new_tokens"], batch_size=bs)
        out["verbmem_f"] = sum(vm_scores) / len(vm_scores)
        split("verbmem_f", vm, "prompt", vm_scores)
    for which in ("forget", "retain"):
        if not wanted(f"knowmem_{which[0]}"):
            continue
        qa = cap(load_split(data_dir, kind, f"knowmem/{which}_qa.jsonl"), n)
        icl = load_split(data_dir, kind, f"knowmem/{which}_qa_icl.jsonl")
        km = E.knowmem_scores(model, tok, qa, icl, max_new_tokens=params["knowmem_max_new_tokens"],
                              batch_size=bs, answer_space=params["knowmem_answer_space"])
        out[f"knowmem_{which[0]}"] = sum(km) / len(km)
        if which == "forget":
            split("knowmem_f", qa, "question", km)
    if wanted("mink_auc"):
        forget = texts(data_dir, kind, "privleak/forget.jsonl")
        holdout = texts(data_dir, kind, "privleak/holdout.jsonl")
        f_scores = E.mink_scores(model, tok, forget, k=params["mink_k"], batch_size=bs)
        h_scores = E.mink_scores(model, tok, holdout, k=params["mink_k"], batch_size=bs)
        out["mink_auc"] = E.auc(f_scores, h_scores)
    return out


def score_wmdp(model: Any, tok: Any, data_dir: str | Path, kind: str, params: dict, subject: str,
               split: Split, wanted: Callable[[str], bool], items: dict | None) -> dict[str, float]:
    """WMDP: multiple-choice accuracy on the forget-domain questions and on MMLU (by subject)."""
    from .. import eval as E

    bs, n = params["batch_size"], params["max_questions"]
    bos = params.get("mc_bos", True)
    out: dict[str, float] = {}
    if wanted("wmdp_acc"):
        qs = cap(load_split(data_dir, kind, "questions/forget.jsonl"), n)
        correct = [int(c) for c in E.mc_correct(model, tok, qs, subject, batch_size=bs, bos=bos)]
        out["wmdp_acc"] = 100.0 * sum(correct) / len(correct)
        split("wmdp_acc", qs, "question", [100.0 * c for c in correct])
    if wanted("mmlu_acc"):
        util = cap(load_split(data_dir, kind, "questions/utility.jsonl"), n)
        by_subject: dict[str, list[dict]] = {}
        for q in util:
            by_subject.setdefault(q["subject"], []).append(q)
        hits = []
        for subj, group in sorted(by_subject.items()):
            hits += [int(c) for c in E.mc_correct(model, tok, group, subj, batch_size=bs, bos=bos)]
        out["mmlu_acc"] = 100.0 * sum(hits) / len(hits)
    return out


def score_tofu(model: Any, tok: Any, data_dir: str | Path, kind: str, params: dict, subject: str,
               split: Split, wanted: Callable[[str], bool], items: dict | None) -> dict[str, float]:
    """TOFU: every metric at once (``wanted`` is applied by the caller); per-item forget truth ratios
    go to ``items`` (Forget Quality is computed against the retain model's at aggregation)."""
    from ..data.io import read_template
    from .tofu import FORGET_TRUTH_RATIOS, tofu_scores

    n = params["max_questions"]
    # the first tofu_max_items of each set (TOFU's ds_size: 300), within max_questions
    sets = {name: cap(cap(load_split(data_dir, kind, f"{file}_perturbed.jsonl"), n), params["tofu_max_items"])
            for name, file in (("forget", "forget10"), ("retain", "retain"),
                               ("real_authors", "real_authors"), ("world_facts", "world_facts"))}
    metrics, per_item = tofu_scores(model, tok, sets, max_new_tokens=params["tofu_max_new_tokens"],
                                    batch_size=params["batch_size"], template=read_template(data_dir))
    for name in ("tofu_prob_f", "tofu_rouge_f"):
        split(name, sets["forget"], "question", per_item[name])
    if items is not None:
        items[FORGET_TRUTH_RATIOS] = per_item[FORGET_TRUTH_RATIOS]
    return dict(metrics)
