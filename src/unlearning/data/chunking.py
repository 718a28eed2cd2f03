"""Training examples from a text corpus: per-document truncation or the lab's concatenated chunks.

- ``truncate``: one example per document, EOS appended, cut at ``max_len`` tokens (a long document
  contributes only its first ``max_len`` tokens).
- ``concat`` (the lab's MUSE recipe): every document tokenised, joined with EOS into one stream, and
  cut into consecutive ``max_len``-token chunks, so every token of the corpus is trained on. Where the
  tokenizer adds a BOS, each chunk starts with it (``max_len - 1`` stream tokens follow), as a
  document does under ``truncate``. The last chunk keeps the remainder (shorter than ``max_len``).

A question/answer document (unlearning.data.io.QADocument, TOFU's) becomes an ``Example`` whose
``n_prompt`` leading ids, its prompt's tokens with the tokenizer's special tokens, carry no loss (TOFU's
``num_question_tokens`` and open-unlearning's prompt length): every objective trains on the answer and
its EOS only. Such documents are not joined, so they take ``truncate`` only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

CHUNKINGS = ("truncate", "concat")


def _bos(tok: Any) -> list[int]:
    """The tokenizer's own leading special tokens (BOS for Llama's; none for byte-level BPE)."""
    probe = tok("a", add_special_tokens=True)["input_ids"]
    bare = tok("a", add_special_tokens=False)["input_ids"]
    return list(probe[: len(probe) - len(bare)]) if probe[len(probe) - len(bare):] == bare else []


class Example(list):
    """Token ids of one training example; its first ``n_prompt`` ids carry no loss (train.collate)."""

    def __init__(self, ids: Sequence[int], n_prompt: int = 0) -> None:
        super().__init__(ids)
        self.n_prompt = n_prompt


def examples(tok: Any, texts: Sequence[str], max_len: int, chunking: str = "truncate") -> list[list[int]]:
    """Token ids of the training examples of ``texts`` under ``chunking`` (see the module doc)."""
    if chunking not in CHUNKINGS:
        raise ValueError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
    if not texts:
        raise ValueError("cannot build training examples from an empty corpus")
    eos = tok.eos_token or ""
    prompts = [getattr(t, "prompt", None) for t in texts]
    if chunking == "truncate":
        enc = tok([t + eos for t in texts], truncation=True, max_length=max_len)
        if all(p is None for p in prompts):
            return [list(ids) for ids in enc["input_ids"]]
        heads = {p: len(tok(p, add_special_tokens=True)["input_ids"]) for p in set(prompts) if p is not None}
        return [Example(ids, heads[p] if p is not None else 0) for ids, p in zip(enc["input_ids"], prompts)]
    if any(p is not None for p in prompts):
        raise ValueError("question/answer documents (TOFU) take chunking 'truncate', not 'concat'")
    bos = _bos(tok)
    width = max_len - len(bos)
    if width < 1:
        raise ValueError(f"max_len {max_len} leaves no room after the BOS")
    stream: list[int] = []
    for ids in tok([t + eos for t in texts], add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
    return [bos + stream[i:i + width] for i in range(0, len(stream), width)]


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimizer steps that see every example once at ``batch_size`` (rounded up: the training
    loop's batches run on into the next epoch)."""
    return max(1, math.ceil(n_examples / batch_size))
