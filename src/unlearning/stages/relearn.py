"""Stage relearn: the relearning attack's models, one per configured step count."""

from __future__ import annotations

from pathlib import Path

from .common import forget_retain


def relearn(model_dir: str | Path, data_dir: str | Path, kind: str, params: dict, seed: int,
            max_len: int, out_root: str | Path) -> None:
    """Relearning attack on one unlearned model (``params``: the config's ``attacks.relearn`` and
    ``chunking``)."""
    from ..attacks.relearn import relearn as attack
    from ..attacks.relearn import relearn_subset
    from ..models import load_model, load_tokenizer
    from ..train import seed_everything

    seed_everything(seed)
    tok = load_tokenizer(model_dir)
    forget, _ = forget_retain(data_dir, kind)
    texts = relearn_subset(forget, params["fraction"])
    attack(lambda: load_model(model_dir), tok, texts, steps=params["steps"], lr=params["lr"],
           batch_size=params["batch_size"], max_len=max_len, seed=seed, warmup=params["warmup"],
           schedule=params.get("schedule", "constant"), chunking=params.get("chunking", "truncate"),
           out_root=out_root)
