"""How a rule's job starts its stage: `unlearning STAGE ...` in one process, or under torchrun with one
rank per GPU of the job (FSDP2, src/unlearning/distributed.py). Torch-free: the workflow imports it."""

from __future__ import annotations

from collections.abc import Mapping


def ranks_of(resources: Mapping) -> int:
    """Processes per unlearning or relearning job: the profile's `ranks` resource, else its GPUs per job (`gpu`)."""
    return int(resources.get("ranks", 0) or resources.get("gpu", 0) or 1)


def torchrun_launcher(n: int) -> str:
    """`unlearning` for one process; for more, torchrun starting one rank per GPU of the job. `--`: the
    stage's own options (--run ...) must not be parsed as torchrun's (--run-path)."""
    return "unlearning" if n <= 1 else f"torchrun --standalone --nproc-per-node {n} --no-python -- unlearning"
