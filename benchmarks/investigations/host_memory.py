"""Host memory of a sharded (torchrun) job's ranks while they load the model and the frozen NPO
reference: the way stages/unlearn.py loads them now (rank 0 reads the weights once and broadcasts
them into every rank's FSDP2 shards, distributed.load_sharded) against the way it did before issue
23 (every rank loads the whole model in fp32 and deep-copies it for the reference); prints one JSON
object.

    python benchmarks/investigations/host_memory.py [--ranks 2] [--hidden 512] [--layers 8] [--ways new,old]

A random-init Llama (vocabulary 8192; hidden 512 and 8 layers: 33.6M weights, 134 MB in fp32) is
saved once; then for each way a gloo CPU job of ``--ranks`` ranks loads it. Each rank reports its
resident memory after imports and process-group setup, and its peak after loading (ru_maxrss); the
increment is the difference. On the CPU the FSDP2 shards are host memory too (1/N of the model and
of the reference per rank; on a GPU node they are on the GPUs), so the JSON also gives
``host_copies``: the total increment minus the shards (two models' worth), in models: what a GPU
node's host memory holds, about 1 for the new way and one per rank (each rank's whole model and its
reference copy: 2 per rank) for the old.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from unlearning.bench import harness


def rank_main(model_dir: str, way: str, out: str) -> None:
    """One rank: load model and reference the ``way`` asked; rank 0 writes every rank's numbers."""
    import copy

    import torch
    import torch.distributed as dist

    from unlearning import distributed
    from unlearning.models import load_model

    torch.set_num_threads(1)
    dev = distributed.init()
    # the imports both ways pay (transformers' Llama, FSDP2, safetensors), before the baseline
    import safetensors.torch  # noqa: F401
    from torch.distributed.fsdp import fully_shard  # noqa: F401

    distributed._skeleton(model_dir)
    dist.barrier()
    before = harness.rss_bytes()
    if way == "new":
        model, ref = distributed.load_sharded(model_dir, dev, ref=True)
    else:  # before issue 23: every rank reads the whole model and copies it for the reference
        model = load_model(model_dir, dev=torch.device("cpu"))
        ref = copy.deepcopy(model).eval()
        distributed.shard(model, dev)
        distributed.shard(ref, dev, frozen=True)
    dist.barrier()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mine = {"rank": distributed.rank(), "rss_before": before, "peak_after": peak, "increment": peak - before}
    every = [None] * distributed.world_size()
    dist.all_gather_object(every, mine)
    if distributed.rank() == 0:
        Path(out).write_text(json.dumps(every))
    del model, ref
    dist.destroy_process_group()


def measure(ranks: int = 2, hidden: int = 512, layers: int = 8, ways: tuple[str, ...] = ("new", "old"),
            vocab: int = 8192) -> dict:
    """Save a model of the given size, load it in a ``ranks``-rank gloo job each way; the numbers."""

    from unlearning.models import build_model, count_parameters, save_model

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    arch = {"hidden_size": hidden, "intermediate_size": int(hidden * 2.6875) // 8 * 8, "num_layers": layers,
            "num_heads": max(1, hidden // 64), "max_len": 128}
    env = {k: v for k, v in os.environ.items() if k != "UNLEARNING_FORKSERVER"}
    env.update(OMP_NUM_THREADS="1", UNLEARNING_DEVICE="cpu")
    result: dict = {"ranks": ranks, "arch": arch}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(arch, vocab, seed=0)
        n = count_parameters(model)
        tok = _tokenizer(Path(tmp) / "tok")
        save_model(model, tok, Path(tmp) / "model")
        del model
        model_bytes = 4 * n
        result.update(parameters=n, model_bytes=model_bytes)
        for way in ways:
            out = Path(tmp) / f"{way}.json"
            proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", str(ranks), __file__, "--rank-main",
                                   str(Path(tmp) / "model"), way, str(out)], env=env, capture_output=True,
                                  text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"{way}: torchrun failed: {proc.stderr[-2000:]}")
            per_rank = json.loads(out.read_text())
            total = sum(r["increment"] for r in per_rank)
            result[way] = {
                "per_rank_increment_models": [round(r["increment"] / model_bytes, 3) for r in per_rank],
                "total_increment_models": round(total / model_bytes, 3),
                # the FSDP2 shards of model and reference (2 models over all ranks) live on the GPUs
                # of a GPU node; what is left is the host's own copies
                "host_copies": round(total / model_bytes - 2, 3),
                "per_rank": per_rank,
            }
    return result


def _tokenizer(folder: Path):
    from unlearning.models import train_tokenizer

    return train_tokenizer([f"text {i}" for i in range(50)], 300, folder)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rank-main"]:  # one rank of measure's torchrun job
        rank_main(*argv[1:4])
        return
    p = harness.parser(__doc__, full=False)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--ways", default="new,old")
    a = p.parse_args(argv)
    harness.emit(measure(a.ranks, a.hidden, a.layers, tuple(a.ways.split(","))), indent=1)


if __name__ == "__main__":
    main()
