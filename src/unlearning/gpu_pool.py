"""Give each local job its own GPUs: a pool of cards, one lock file per card.

Snakemake's local executor counts GPUs (``--resources gpu=N`` against each rule's ``gpu`` resource)
but never says which card a job gets (snakemake#281). A GPU rule's command therefore starts as

    python -m unlearning.gpu_pool --cards K --pool 0,1,2,3 --locks DIR -- unlearning ...

which takes K free cards of the pool, each by an exclusive ``flock`` on ``DIR/card-<id>.lock``, sets
``CUDA_VISIBLE_DEVICES`` to them and replaces itself (exec) with the command. The command inherits the
locks' file descriptors, so the cards are held exactly as long as it runs and the kernel releases
them when it exits, however it exits (failure, SIGKILL, a killed Snakemake). Snakemake's count keeps
one run from asking for more cards than the pool holds; the locks make the ids distinct, also between
two runs on the machine that share the lock folder (a job then waits for a card another run holds).
workflow/rules/gpus.smk builds that prefix; torch is never imported here, so CUDA is not touched
before the command runs.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import sys
import tempfile
import time
from typing import Sequence

LOCKS_ENV = "UNLEARNING_GPU_LOCKS"
VISIBLE = "CUDA_VISIBLE_DEVICES"


class PoolError(ValueError):
    """A pool that cannot serve the run (one line naming the setting)."""


def default_lock_dir() -> str:
    """The lock folder: ``UNLEARNING_GPU_LOCKS``, else one per user in the temporary folder (shared
    by this user's runs on the machine, so two studies never put jobs on one card)."""
    return os.environ.get(LOCKS_ENV) or os.path.join(tempfile.gettempdir(), f"unlearning-gpus-{os.getuid()}")


def pool_of(n: int, visible: str | None) -> list[str]:
    """The cards jobs may claim when the machine has ``n`` (``--resources gpu=n``): the ids
    ``CUDA_VISIBLE_DEVICES`` lists (``visible``) when it is set, else ``0 .. n-1``."""
    if n < 0:
        raise PoolError(f"--resources gpu={n}: the machine's GPUs, a count of 0 or more")
    if visible is None:
        return [str(i) for i in range(n)]
    cards = [c.strip() for c in visible.split(",") if c.strip()]
    if len(set(cards)) != len(cards):
        raise PoolError(f"CUDA_VISIBLE_DEVICES={visible!r} names a card twice")
    if len(cards) < n:
        raise PoolError(f"--resources gpu={n} but CUDA_VISIBLE_DEVICES={visible!r} lists {len(cards)} card(s): "
                        "give the machine's card count, or list that many cards")
    return cards


def over_ask(requests: dict[str, tuple[int, str]], available: int) -> str | None:
    """The one-line error for the first rule asking for more GPUs than the machine has, else None.

    ``requests``: rule -> (GPUs per job, where that number is set)."""
    for rule, (n, where) in sorted(requests.items()):
        if n > available:
            return (f"rule {rule} asks for {n} GPUs per job ({where}) but the machine has {available} "
                    f"(--resources gpu={available}; the workstation profile's `resources: gpu`): "
                    f"lower {where} or give more cards")
    return None


def _lock_path(lock_dir: str, card: str) -> str:
    # Card ids may be UUIDs or MIG names (GPU-..., MIG-GPU-.../1/0): keep a file name safe.
    return os.path.join(lock_dir, "card-" + re.sub(r"[^A-Za-z0-9.-]", "_", card) + ".lock")


def try_claim(k: int, pool: Sequence[str], lock_dir: str) -> tuple[list[str], list[int]] | None:
    """Lock ``k`` free cards of ``pool`` (the first free ones, in pool order), all or none.

    Returns (cards, open lock file descriptors), or None when fewer than ``k`` are free (nothing held)."""
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    cards: list[str] = []
    fds: list[int] = []
    for card in pool:
        if len(cards) == k:
            break
        fd = os.open(_lock_path(lock_dir, card), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        cards.append(card)
        fds.append(fd)
    if len(cards) < k:
        for fd in fds:  # all or none: holding some while waiting for more could deadlock two jobs
            os.close(fd)
        return None
    for fd in fds:  # who holds the card, for someone reading the lock files
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return cards, fds


def claim(k: int, pool: Sequence[str], lock_dir: str, poll: float = 0.5) -> tuple[list[str], list[int]]:
    """``try_claim`` until it succeeds. Within one Snakemake run a card is free when a job starts;
    a wait means another run (or a job's leftover process) holds it, which the job's log says."""
    if not 0 < k <= len(pool):
        raise PoolError(f"a job asks for {k} GPUs but the pool has {len(pool)} ({','.join(pool) or 'none'})")
    waited = 0.0
    while True:
        got = try_claim(k, pool, lock_dir)
        if got is not None:
            return got
        if waited == 0.0 or waited >= 600:
            print(f"gpu_pool: waiting for {k} free card(s) of {','.join(pool)} (locks in {lock_dir})",
                  file=sys.stderr, flush=True)
            waited = 0.0
        time.sleep(poll)
        waited += poll


def main(argv: Sequence[str] | None = None) -> int:
    """Claim the cards, then exec the command with ``CUDA_VISIBLE_DEVICES`` set to them."""
    p = argparse.ArgumentParser(prog="python -m unlearning.gpu_pool", description=__doc__.split("\n")[0])
    p.add_argument("--cards", type=int, required=True, help="GPUs this job needs")
    p.add_argument("--pool", required=True, help="comma-separated card ids jobs may claim")
    p.add_argument("--locks", default=None, help="lock folder (default: UNLEARNING_GPU_LOCKS or per user)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    a = p.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("no command after --")
    try:
        cards, fds = claim(a.cards, [c for c in a.pool.split(",") if c], a.locks or default_lock_dir())
    except PoolError as err:
        print(f"gpu_pool: error: {err}", file=sys.stderr)
        return 1
    for fd in fds:  # the command holds the locks: released when it (and whatever kept them) exits
        os.set_inheritable(fd, True)
    os.environ[VISIBLE] = ",".join(cards)
    # Card ids as nvidia-smi numbers them (PCI bus order), not CUDA's default fastest-first order.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    print(f"gpu_pool: {VISIBLE}={os.environ[VISIBLE]}", file=sys.stderr, flush=True)
    try:
        os.execvp(command[0], command)
    except OSError as err:
        print(f"gpu_pool: error: cannot run {command[0]}: {err}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
