"""Time of the streamed grade distance (unlearning.weight_distance.group_distances) at small CPU sizes,
split into a per-model and a per-pair cost per weight, for the SLURM profile's resources of
report_grade_distance at 7B (extrapolated: linear in weights, models and pairs).

    python benchmarks/investigations/grade_distance.py [--weights 4e6,16e6] [--models 2,4] [--threads 1]

Each size: a bf16 target and m models (a third of the weights moved), saved as safetensors in a
temporary folder (page cache warm: disk reads are not in the time); all pairs of the m models timed.
Prints one JSON line per size and a fit: seconds = weights * (per_model * m + per_pair * pairs).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from unlearning.bench import harness


def _save(d: Path, w: dict) -> Path:
    from safetensors.torch import save_file

    d.mkdir()
    save_file(w, str(d / "model.safetensors"))
    return d


def measure(weights: int, m: int, root: Path) -> dict:
    """Seconds for all pairs of ``m`` models of ``weights`` bf16 weights (tensors of 4M weights)."""
    import torch

    from unlearning.weight_distance import group_distances

    g = torch.Generator().manual_seed(0)
    shapes = [(2048, min(2048, weights // 2048 - k * 2048)) for k in range(max(1, weights // (2048 * 2048)))]
    target = {f"t{k}": torch.randn(s, generator=g).bfloat16() for k, s in enumerate(shapes)}
    tdir = _save(root / f"t{weights}_{m}", target)
    paths = []
    for i in range(m):
        w = {k: torch.where(torch.rand(t.shape, generator=g) < 0.33, t + 1e-2, t) for k, t in target.items()}
        paths.append(_save(root / f"m{weights}_{m}_{i}", w))
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    group_distances(paths, tdir, pairs[:1])  # warm the page cache
    t0 = time.perf_counter()
    group_distances(paths, tdir, pairs)
    return {"weights": sum(a * b for a, b in shapes), "models": m, "pairs": len(pairs),
            "seconds": round(time.perf_counter() - t0, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--weights", default="4e6,16e6")
    ap.add_argument("--models", default="2,4")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in (int(float(x)) for x in a.weights.split(",")):
            for m in (int(x) for x in a.models.split(",")):
                rows.append(measure(w, m, Path(tmp)))
                harness.emit(rows[-1])
    # least squares for seconds / weights = per_model * m + per_pair * pairs
    import numpy as np

    x = np.array([[r["models"], r["pairs"]] for r in rows], float)
    y = np.array([r["seconds"] / r["weights"] for r in rows])
    (pm, pp), *_ = np.linalg.lstsq(x, y, rcond=None)
    harness.emit({"threads": a.threads, "s_per_model_per_weight": float(pm), "s_per_pair_per_weight": float(pp)})


if __name__ == "__main__":
    main()
