"""Model plumbing shared by the metrics: eval mode, batched scoring and greedy generation.

Prompts and texts are encoded with the tokenizer's default special tokens (a BOS where the
tokenizer adds one, as MUSE's ``tokenizer(prompt, add_special_tokens=True)`` and lm-eval do);
nothing assumes a BOS exists. Batches are padded by hand (left for generation, right for
scoring), so the caller's tokenizer is never mutated.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm


def progress_bar(iterable, total: int | None = None, desc: str = "", progress: bool | None = None):
    """tqdm over ``iterable``; shown when ``progress`` is true, or (None) when stderr is a tty."""
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(iterable, total=total, desc=desc, disable=not show, leave=False)


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """model.eval() and torch.no_grad() for the block; the previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def model_max_length(model) -> int | None:
    """The model's context length (``max_position_embeddings``), or None when it has none."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(n) if n else None


def pad_id(tok) -> int:
    for tid in (tok.pad_token_id, tok.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=True)["input_ids"])


def truncate_left(ids: list[int], limit: int, bos_id: int | None) -> list[int]:
    """Keep the last ``limit`` tokens; a leading BOS is kept in front of them."""
    if len(ids) <= limit:
        return ids
    if bos_id is not None and ids and ids[0] == bos_id and limit > 1:
        return [ids[0]] + ids[len(ids) - limit + 1:]
    return ids[len(ids) - limit:]


def _pad(seqs: Sequence[Sequence[int]], pad: int, left: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        sl = slice(t - len(s), t) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(list(s), dtype=torch.long)
        att[i, sl] = 1
    return ids.to(device), att.to(device)


def _length_sorted_batches(n: int, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(n), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def greedy_generate(model, tok, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16,
                    progress: bool | None = None, desc: str = "generate",
                    stop_strings: Sequence[str] | None = None) -> list[str]:
    """Greedy continuations of ``prompts`` (decoded new tokens only, special tokens skipped).

    Batched with left padding. A prompt longer than the model's context minus
    ``max_new_tokens`` is truncated from the left (keeping a leading BOS). Generation stops at
    the tokenizer's EOS (the model's generation config EOS when the tokenizer has none) and, with
    ``stop_strings``, once every sequence of the batch contains one of them (callers still cut at
    the stop strings: this only saves the steps after them, greedy outputs before them are equal).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    limit = model_max_length(model)
    budget = None if limit is None else limit - max_new_tokens
    if budget is not None and budget < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the "
                         f"model's {limit}-token context")
    encoded = [encode(tok, p) for p in prompts]
    if budget is not None:
        encoded = [truncate_left(e, budget, tok.bos_token_id) for e in encoded]
    pad = pad_id(tok)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
                      temperature=None, top_p=None, top_k=None)
    if tok.eos_token_id is not None:
        gen_kwargs["eos_token_id"] = tok.eos_token_id
    if stop_strings:
        gen_kwargs.update(stop_strings=list(stop_strings), tokenizer=tok)
    out: list[str | None] = [None] * len(prompts)
    batches = _length_sorted_batches(len(encoded), [len(e) for e in encoded], batch_size)
    with eval_mode(model):
        for idx in progress_bar(batches, desc=desc, progress=progress):
            ids, att = _pad([encoded[i] for i in idx], pad, left=True, device=model.device)
            gen = model.generate(input_ids=ids, attention_mask=att, **gen_kwargs)
            # No clean-up pass: transformers skips it for BPE tokenizers anyway (it would strip spaces
            # before punctuation) and warns on every call when asked.
            texts = tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
            for i, text in zip(idx, texts):
                out[i] = text
    return out  # type: ignore[return-value]


def score_positions(model, seqs: Sequence[Sequence[int]], targets: Sequence[Sequence[tuple[int, int]]],
                    batch_size: int = 16, pad: int = 0, progress: bool | None = None,
                    desc: str = "score") -> list[list[float]]:
    """Log-probs of chosen tokens: for sequence ``i``, ``targets[i]`` lists ``(position, token)``
    and the result holds ``log p(token | seqs[i][:position + 1])`` for each, in order."""
    out: list[list[float] | None] = [None] * len(seqs)
    batches = _length_sorted_batches(len(seqs), [len(s) for s in seqs], batch_size)
    with eval_mode(model):
        for idx in progress_bar(batches, desc=desc, progress=progress):
            ids, att = _pad([seqs[i] for i in idx], pad, left=False, device=model.device)
            logits = model(input_ids=ids, attention_mask=att).logits
            for row, i in enumerate(idx):
                if not targets[i]:
                    out[i] = []
                    continue
                pos = torch.tensor([p for p, _ in targets[i]], device=logits.device)
                tokens = torch.tensor([t for _, t in targets[i]], device=logits.device)
                # log-softmax only over the rows needed, in float32 (memory: one [n, V] slice)
                logp = torch.log_softmax(logits[row, pos].float(), dim=-1)
                out[i] = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).tolist()
    return out  # type: ignore[return-value]
