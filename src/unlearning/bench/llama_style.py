"""A Llama-style tokenizer and a small Llama-2-architecture hub snapshot, built locally (no download).

The tokenizer is sentencepiece-like BPE as Llama-2's tokenizer.json has it: words carry the word
marker "▁" in front (Metaspace: a space becomes part of the next word's piece; the text's start gets
one too), pieces never span a newline, unknown characters fall back to
byte tokens ``<0x00>``..``<0xFF>``, ``<s>`` is prepended as BOS, ``</s>`` ends a document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

BYTES = [f"<0x{b:02X}>" for b in range(256)]


def llama_style_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None):
    """Train the tokenizer on ``texts``; a transformers ``LlamaTokenizerFast`` (saved to ``out_dir``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Pieces never span a newline (Llama-2 has no piece holding one); a word after one has no marker.
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"),
                                                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", *BYTES],
                                  show_progress=False)
    tk.train_from_iterator(list(texts), trainer)
    tok = LlamaTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                             add_bos_token=True, add_eos_token=False, legacy=False)
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def llama_snapshot(out_dir: str | Path, tok, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                   max_len: int = 128, seed: int = 0, shard: str = "40KB") -> Path:
    """A randomly initialised LlamaForCausalLM saved as a hub snapshot: safetensors in several shards
    with their index, config.json, and the tokenizer's files."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max_len, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=shard)
    tok.save_pretrained(out)
    return out
