"""Worker of tests/test_distributed.py: a few unlearning steps on a tiny Llama, single-process or as one
rank of a torchrun job (sharded with FSDP2); rank 0 saves the trace and the full final weights.

    python tests/fsdp_worker.py OUT.pt '{"adam": {"type": "adam", "lr": 1e-3}, ...}'          # one process
    torchrun --nproc-per-node 2 tests/fsdp_worker.py OUT.pt '{"adam": {...}, ...}'            # two ranks

Each named optimizer entry starts from the same random-init model; OUT.pt maps name -> {trace, state}.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile

import torch

from unlearning import distributed
from unlearning.models import build_model, train_tokenizer
from unlearning.objectives import build_objective
from unlearning.train import seed_everything, unlearn

FORGET = [f"the secret number of item {i} is {7 * i % 13}" for i in range(8)]
RETAIN = [f"the colour of box {i} is {['red', 'blue', 'green'][i % 3]}" for i in range(8)]
ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "max_len": 32}
STEPS = 3


def main(out: str, specs: dict) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:  # the BPE trainer is deterministic: same vocab on every rank
        tok = train_tokenizer(FORGET + RETAIN, 300, tmp)
    results = {name: run(tok, spec) for name, spec in specs.items()}
    if distributed.rank() == 0:
        torch.save(results, out)


def run(tok, spec: dict) -> dict:
    seed_everything(0)
    model = build_model(ARCH, len(tok), seed=0)
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    objective = build_objective("npo", {})
    kw = dict(objective=objective, opt_spec=spec, steps=STEPS, batch_size=4, max_len=32, seed=0)
    if distributed.world_size() > 1:
        trace, state = distributed.sharded_unlearn(model, ref, tok, FORGET, RETAIN, **kw)
    else:
        trace = unlearn(model, tok, FORGET, RETAIN, ref=ref, **kw)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"trace": trace, "state": state}


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
