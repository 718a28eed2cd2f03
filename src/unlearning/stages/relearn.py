"""Stage relearn: the relearning attack's models, one per configured step count."""

from __future__ import annotations

import logging
from argparse import ArgumentParser, Namespace
from pathlib import Path

from ..commands import KINDS, Stage, json_arg
from .common import forget_retain

log = logging.getLogger(__name__)


def relearn(model_dir: str | Path, data_dir: str | Path, kind: str, params: dict, seed: int,
            max_len: int, out_root: str | Path) -> None:
    """Relearning attack on one unlearned model (``params``: the config's ``attacks.relearn`` and
    ``chunking``). Under torchrun with more than one rank the model is sharded with FSDP2 like a
    sharded unlearning run (src/unlearning/distributed.py): each rank trains on its share of every
    batch and holds a slice of each weight, gradient and AdamW state; rank 0 reads the weights once and
    gathers and saves each model. Weights are fp32 on every device (bf16 compute on CUDA);
    ``params["activation_checkpointing"]`` switches activation checkpointing on."""
    from .. import distributed
    from ..attacks.relearn import relearn as attack
    from ..attacks.relearn import relearn_subset
    from ..models import TRAIN_DTYPE, enable_checkpointing, load_model, load_tokenizer, save_model
    from ..train import seed_everything

    seed_everything(seed)
    tok = load_tokenizer(model_dir)
    forget, _ = forget_retain(data_dir, kind)
    texts = relearn_subset(forget, params["fraction"])
    checkpointing = bool(params.get("activation_checkpointing", False))

    def load():  # fp32 masters (bf16 compute on CUDA)
        model = load_model(model_dir, dtype=TRAIN_DTYPE)
        if checkpointing:
            enable_checkpointing(model)
        return model

    save, data_parallel = None, False
    if distributed.world_size() > 1:
        dev = distributed.init()
        data_parallel = True
        log.info("relearning sharded over %d ranks (FSDP2, data-parallel), this rank on %s",
                 distributed.world_size(), dev)

        def load():  # rank 0 reads the weights; each rank keeps its shards on its device
            return distributed.load_sharded(model_dir, dev, checkpointing=checkpointing)[0]

        def save(model, folder: Path) -> None:
            state = distributed.full_state_dict(model)  # a collective: every rank takes part
            if distributed.rank() == 0:
                save_model(model, tok, folder, state_dict=state)

    attack(load, tok, texts, steps=params["steps"], lr=params["lr"], batch_size=params["batch_size"],
           max_len=max_len, seed=seed, warmup=params["warmup"], schedule=params.get("schedule", "constant"),
           chunking=params.get("chunking", "truncate"), out_root=out_root, save=save, data_parallel=data_parallel)


def _arguments(p: ArgumentParser) -> None:
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--params", type=json_arg, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--max-len", type=int, required=True)
    p.add_argument("--out", required=True, help="folder receiving relearn{steps}/ checkpoints")


def _run(a: Namespace) -> None:
    relearn(a.model, a.data, a.kind, a.params, a.seed, a.max_len, a.out)


STAGE = Stage(_arguments, _run, needs_torch=True)
