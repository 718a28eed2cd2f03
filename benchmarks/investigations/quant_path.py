"""What bitsandbytes' two CPU paths for 4-bit layers cost and change; prints one JSON line per quant.

    python benchmarks/investigations/quant_path.py [--hidden 128 --intermediate 384 --layers 4]

The project always takes the portable path (dequantize, then an fp32 matmul; ``models.portable_4bit_path``).
On CPUs with AVX512-BF16, bitsandbytes (>= 0.49) would otherwise repack the weights at the first eval
forward for a bf16 kernel. Both are timed here on one random-init Llama of the default study's shape
(widths must divide by 32 for the packed one) over a batch of ``--batch`` x ``--seq`` tokens, median of
``--reps`` forwards after one warm-up; ``max_abs_logit_diff`` compares the two paths' logits. On a CPU
without AVX512-BF16 the packed path is not available and only the portable one is timed.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from unlearning.bench import harness


def main(argv: list[str] | None = None) -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)

    import unlearning.models as models
    from unlearning.provenance import cpu_has_avx512_bf16, environment

    arch = dict(hidden_size=a.hidden, intermediate_size=a.intermediate, num_layers=a.layers,
                num_heads=a.heads, max_len=a.seq)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=torch.Generator().manual_seed(0))
    portable = models.portable_4bit_path
    with tempfile.TemporaryDirectory() as tmp:
        models.build_model(arch, a.vocab, seed=0).save_pretrained(tmp, safe_serialization=True)
        for quant in ("fp4", "nf4"):
            row: dict = {"quant": quant, **arch, "batch": a.batch, "seq": a.seq}
            logits = {}
            paths = ["portable", "packed"] if cpu_has_avx512_bf16() else ["portable"]
            for path in paths:
                models.portable_4bit_path = portable if path == "portable" else (lambda m: 0)
                model = models.load_model(tmp, quant=quant, dev=torch.device("cpu"))
                times = []
                with torch.no_grad():
                    for _ in range(a.reps + 1):
                        t0 = time.perf_counter()
                        logits[path] = model(ids).logits
                        times.append(time.perf_counter() - t0)
                row[f"{path}_forward_s"] = statistics.median(times[1:])
            models.portable_4bit_path = portable
            if "packed" in logits:
                row["packed_speedup"] = row["portable_forward_s"] / row["packed_forward_s"]
                row["max_abs_logit_diff"] = float((logits["packed"] - logits["portable"]).abs().max())
                row["max_abs_logit"] = float(logits["portable"].abs().max())
            row["env"] = environment("cpu")
            harness.emit(row)


if __name__ == "__main__":
    main()
