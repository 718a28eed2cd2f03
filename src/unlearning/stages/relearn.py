"""Stage relearn: the relearning attack's checkpoints."""

from __future__ import annotations

from pathlib import Path

from .common import forget_retain


def relearn(model_dir: str | Path, data_dir: str | Path, kind: str, params: dict, seed: int,
            max_len: int, out_root: str | Path) -> None:
    """Relearning attack on one unlearned model: a checkpoint per configured step count."""
    from ..attacks.relearn import relearn as attack
    from ..attacks.relearn import relearn_subset
    from ..models import load_model, load_tokenizer
    from ..train import seed_everything

    seed_everything(seed)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir)
    forget, _ = forget_retain(data_dir, kind)
    texts = relearn_subset(forget, params["fraction"])
    attack(model, tok, texts, steps=params["steps"], lr=params["lr"], batch_size=params["batch_size"],
           max_len=max_len, seed=seed, warmup=params["warmup"], out_root=out_root)
