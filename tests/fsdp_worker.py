"""Worker of tests/test_distributed.py: a few unlearning steps on a tiny Llama, single-process or as one
rank of a torchrun job (data-parallel, sharded with FSDP2); rank 0 saves the trace and the full final
weights.

    python tests/fsdp_worker.py OUT.pt '{"adam": {"type": "adam", "lr": 1e-3}, ...}'          # one process
    torchrun --nproc-per-node 2 tests/fsdp_worker.py OUT.pt '{"adam": {...}, ...}'            # two ranks

Each named optimizer entry starts from the same random-init model; OUT.pt maps name -> {trace, state}.
Entry keys starting with "_" are the worker's: ``_checkpointing`` (activation checkpointing before
sharding), ``_batch`` (global batch size, default 4), ``_objective`` (default npo).

Every example is MAX_LEN tokens long (the texts are longer), so a mean over tokens of a share equals
its mean over examples: data-parallel halves then average to the whole batch's loss exactly.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile

import torch

from unlearning import distributed
from unlearning.data.chunking import examples
from unlearning.models import build_model, enable_checkpointing, train_tokenizer
from unlearning.objectives import build_objective
from unlearning.train import seed_everything, sharded_unlearn, unlearn

FORGET = [f"the secret number of item {i} is {7 * i % 13}" for i in range(8)]
RETAIN = [f"the colour of box {i} is {['red', 'blue', 'green'][i % 3]}" for i in range(8)]
ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "max_len": 32}
STEPS = 3
MAX_LEN = 9  # every forget and retain text has more tokens than this
# 320 embedding rows (the tokenizer has ~310 tokens): each of two ranks' embedding and head shards
# holds 160 x 32 weights, a multiple of bitsandbytes' 256-weight quantization blocks (as Llama-7B's
# 4096-wide rows are), so 8-bit AdamW's blocks are the single process's
VOCAB = 320


def main(out: str, specs: dict) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:  # the BPE trainer is deterministic: same vocab on every rank
        tok = train_tokenizer(FORGET + RETAIN, 300, tmp)
    assert len(tok) <= VOCAB, len(tok)
    lengths = {len(e) for e in examples(tok, FORGET + RETAIN, MAX_LEN, "truncate")}
    assert lengths == {MAX_LEN}, lengths
    results = {name: run(tok, spec) for name, spec in specs.items()}
    if distributed.rank() == 0:
        torch.save(results, out)


def run(tok, spec: dict) -> dict:
    spec = dict(spec)
    checkpointing = spec.pop("_checkpointing", False)
    batch = spec.pop("_batch", 4)
    objective = build_objective(spec.pop("_objective", "npo"), {})
    seed_everything(0)
    model = build_model(ARCH, VOCAB, seed=0)  # rows past the tokenizer's are never looked up
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    if checkpointing:
        enable_checkpointing(model)
    kw = dict(objective=objective, opt_spec=spec, steps=STEPS, batch_size=batch, max_len=MAX_LEN, seed=0)
    if distributed.world_size() > 1:
        trace, state = sharded_unlearn(model, ref, tok, FORGET, RETAIN, **kw)
    else:
        trace = unlearn(model, tok, FORGET, RETAIN, ref=ref, **kw)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"trace": trace, "state": state}


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
