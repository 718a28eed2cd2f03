"""Training examples from a text corpus: per-document truncation or the lab's concatenated chunks.

- ``truncate``: one example per document, EOS appended, cut at ``max_len`` tokens (a long document
  contributes only its first ``max_len`` tokens).
- ``concat`` (the lab's MUSE recipe): every document tokenised, joined with EOS into one stream, and
  cut into consecutive ``max_len``-token chunks, so every token of the corpus is trained on. Where the
  tokenizer adds a BOS, each chunk starts with it (``max_len - 1`` stream tokens follow), as a
  document does under ``truncate``. The last chunk keeps the remainder (shorter than ``max_len``).
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


def examples(tok: Any, texts: Sequence[str], max_len: int, chunking: str = "truncate") -> list[list[int]]:
    """Token ids of the training examples of ``texts`` under ``chunking`` (see the module doc)."""
    if chunking not in CHUNKINGS:
        raise ValueError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
    if not texts:
        raise ValueError("cannot build training examples from an empty corpus")
    eos = tok.eos_token or ""
    if chunking == "truncate":
        enc = tok([t + eos for t in texts], truncation=True, max_length=max_len)
        return [list(ids) for ids in enc["input_ids"]]
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
