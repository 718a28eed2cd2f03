"""What activation checkpointing (models.enable_checkpointing, the configs' `activation_checkpointing`)
saves and costs on the CPU: peak resident memory above the model and step time of an Adam step,
with and without it, each in a fresh process; prints one JSON object.

    python benchmarks/investigations/checkpointing.py [--hidden 256] [--layers 8] [--batch 4] [--tokens 256]

A random-init Llama (vocabulary 2048), one thread, batch x tokens random ids, 3 steps after a warm-up
step; the memory is the process's peak RSS (ru_maxrss) minus its RSS once the model and Adam's
states exist, i.e. the activations and gradients of a step. Also checks that both give the same
weights (checkpointing recomputes, it does not change results).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from unlearning.bench import harness


def one(hidden: int, layers: int, batch: int, tokens: int, checkpointing: bool) -> dict:
    """One configuration in this process."""
    import torch

    from unlearning.models import build_model, enable_checkpointing

    torch.set_num_threads(1)
    arch = {"hidden_size": hidden, "intermediate_size": hidden * 3, "num_layers": layers,
            "num_heads": max(1, hidden // 64), "max_len": tokens}
    model = build_model(arch, 2048, seed=0)
    if checkpointing:
        enable_checkpointing(model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 2048, (batch, tokens), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=False)  # gradients stay allocated: the baseline holds them
        loss.backward()
        opt.step()

    step()
    base = harness.rss_bytes()
    t0 = time.process_time()
    for _ in range(3):
        step()
    seconds = (time.process_time() - t0) / 3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    digest = float(sum(p.detach().double().sum() for p in model.parameters()))
    return {"checkpointing": checkpointing, "step_cpu_seconds": round(seconds, 3),
            "activation_bytes": max(0, peak - base), "weights_digest": digest,
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__, full=False)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        harness.emit(one(a.hidden, a.layers, a.batch, a.tokens, a.one == "on"))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = {}
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, "--one", mode, "--hidden", str(a.hidden), "--layers",
                              str(a.layers), "--batch", str(a.batch), "--tokens", str(a.tokens)],
                             env=env, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    off, on = runs["off"], runs["on"]
    harness.emit({
        "shape": {k: v for k, v in vars(a).items() if k != "one"},
        "parameters": off["parameters"],
        "activation_MiB": {k: round(runs[k]["activation_bytes"] / 2**20, 1) for k in ("off", "on")},
        "step_cpu_seconds": {"off": off["step_cpu_seconds"], "on": on["step_cpu_seconds"]},
        "time_ratio": round(on["step_cpu_seconds"] / off["step_cpu_seconds"], 3),
        "same_weights": off["weights_digest"] == on["weights_digest"],
    }, indent=1)


if __name__ == "__main__":
    main()
