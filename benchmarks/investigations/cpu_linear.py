"""fp32 linear layers on oneDNN vs torch's default (MKL) on this CPU, and which one auto chooses (JSON).

Which path ``UNLEARNING_CPU_LINEAR=auto`` chooses here and how much faster it is; prints one JSON object.

    python benchmarks/investigations/cpu_linear.py [--repeats 200] [--steps 20]

Single-threaded, as the workflow's jobs run. Two measurements:
- ``products``: GFLOPS of one product ``x W^T`` at the default study's layer shapes (the forget batch
  of 8 examples of ~85 tokens is 680 rows; hidden 128, intermediate 384, vocabulary 1024) and at a few
  row counts around ``cpu_linear.MIN_ROWS``, by ``torch.nn.functional.linear`` and by oneDNN;
- ``step``: seconds per training step (forward, backward, Adam) of the default study's model
  (config.yaml's ``model``, randomly initialised, batch 8 x 85 random tokens), with the plain layers
  and with oneDNN's, median over ``--steps`` interleaved steps after two warm-up steps.
And the choice: ``auto``, a fresh run of the measurement ``auto`` decides by (``cpu_linear.measure``,
with the path it would pick), and ``choice``, the path this process uses and why (from the cache).

The environment's ``ONEDNN_MAX_CPU_ISA`` caps oneDNN's kernels (e.g. ``AVX2``) and
``MKL_ENABLE_INSTRUCTIONS`` MKL's (e.g. ``AVX2``, ``SSE4_2``), as on another CPU; both are part of
the cache key, so each setting gets its own decision.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[2]


def _gflops(fn, flop: float, repeats: int) -> float:
    for _ in range(10):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return round(flop * repeats / (time.perf_counter() - t0) / 1e9, 1)


def products(repeats: int) -> list[dict]:
    """GFLOPS of one product per (rows, in, out) shape, by torch's default and by oneDNN."""
    import torch

    from unlearning.cpu_linear import _matmul

    out = []
    shapes = [(680, 128, 384), (680, 384, 128), (680, 128, 128), (680, 128, 1024)]
    shapes += [(rows, 128, 384) for rows in (1, 8, 16, 32, 64)]
    for rows, k, n in shapes:
        x, w = torch.randn(rows, k), torch.randn(n, k)
        flop = 2.0 * rows * k * n
        out.append({"rows": rows, "in": k, "out": n,
                    "torch_gflops": _gflops(lambda x=x, w=w: torch.nn.functional.linear(x, w), flop, repeats),
                    "onednn_gflops": _gflops(lambda x=x, w=w: _matmul(x, w), flop, repeats)})
    return out


def step_seconds(steps: int) -> dict:
    """Median seconds per training step of the default study's model, plain and with oneDNN layers,
    the two models' steps interleaved so that other work on the machine slows both alike."""
    import torch
    import yaml

    from unlearning.cpu_linear import OneDNNLinear, onednn_layers
    from unlearning.models import build_model

    arch = yaml.safe_load((ROOT / "config.yaml").read_text())["model"]
    ids = torch.randint(4, 1024, (8, 85), generator=torch.Generator().manual_seed(0))
    runs = {}
    for name in ("torch", "onednn"):
        model = build_model(arch, 1024, seed=0)  # with the layers of the path chosen here
        for module in model.modules():
            if isinstance(module, OneDNNLinear):
                module.__class__ = torch.nn.Linear
        if name == "onednn":
            onednn_layers(model)
        model.train()
        runs[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), [])
    for _ in range(steps + 2):
        for model, opt, times in runs.values():
            t0 = time.perf_counter()
            opt.zero_grad()
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    out = {name: round(statistics.median(times[2:]), 4) for name, (_, _, times) in runs.items()}
    out["speedup"] = round(out["torch"] / out["onednn"], 2)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = harness.parser(__doc__, full=False)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    import torch

    from unlearning.cpu_linear import choice, decide, measure

    torch.set_num_threads(1)
    chosen, auto = choice(), measure()
    harness.emit({"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
                  "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "default"),
                  "choice": {"backend": chosen.backend, "reason": chosen.reason},
                  "auto": {**auto, "backend": decide(auto["torch_gflops"], auto["onednn_gflops"])},
                  "products": products(args.repeats), "step": step_seconds(args.steps)}, indent=1)


if __name__ == "__main__":
    main()
