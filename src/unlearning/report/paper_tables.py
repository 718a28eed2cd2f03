"""docs/guides/clusters.md's paper-config tables, computed from configs/paper-*.yaml by the cost model
(unlearning.bench.paper_scale's ``dag_jobs``): the jobs each study runs and the disk its models take.
Counted from the configs, not measured; scripts/update_readme_results.py rewrites the blocks and its
``--check`` fails when a config changed and the page did not.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

# Parameter counts of the paper configs' models from their architectures' shapes (config.json):
# Llama-2-7B (MUSE-News, MUSE-Books' ICLM-7B, TOFU's Llama-2-7b-chat) is paper_scale's llama2-7b;
# zephyr-7b-beta has Mistral-7B's shape (MLP 14336, 8 key/value heads).
ZEPHYR_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8)
MODEL_ARCHS = {"HuggingFaceH4/zephyr-7b-beta": ZEPHYR_7B}
BYTES_PER_PARAM = 2  # bf16, as the models are saved on CUDA


def _configs(root: Path) -> list[tuple[str, dict, dict]]:
    """(name, validated config, ``dag_jobs``' counts) of every paper config under ``root``."""
    from ..bench.paper_scale import PAPER_CONFIGS

    out = []
    for name in PAPER_CONFIGS:
        path = root / "configs" / f"{name}.yaml"
        out.append((name, *_load(str(path), path.stat().st_mtime_ns)))
    return out


@functools.lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> tuple[dict, dict]:
    """A config and its job counts, once per file version (both blocks read every config)."""
    from ..bench.paper_scale import dag_jobs, load_config

    cfg = load_config(path)
    return cfg, dag_jobs(cfg)["jobs"]


def _params(config: dict) -> int:
    from ..bench.paper_scale import ARCHS, n_params

    targets = {b.get("target") for b in config["benchmarks"].values()}
    archs = {n_params(MODEL_ARCHS.get(t, ARCHS["llama2-7b"])) for t in targets}
    if len(archs) != 1:
        raise ValueError(f"benchmarks of one paper config with models of different sizes: {sorted(targets)}")
    return archs.pop()


def _reference_models(config: dict) -> int:
    from .. import calibration as CAL
    from ..plan import StudyPlan

    seeds, plan = [int(s) for s in config["seeds"]], StudyPlan(config)
    return sum(len(CAL.model_seeds(config, role, seeds)) for b in config["benchmarks"]
               for role in plan.reference_roles(b))


def jobs_block(root: Path) -> str:
    """Per paper config: the benchmark, its grid, calibration grid points, unlearning runs in all,
    relearn and evaluate jobs, and the other jobs (calibrate, reference evaluations, LMC)."""
    from ..config import ablation_optimizers, methods_for, optimizers_for

    lines = ["Counted from `configs/paper-*.yaml` by `unlearning.bench.paper_scale.dag_jobs` (the counts "
             "tests/test_paper_scale.py holds against Snakemake's dry run).", "",
             "| study | benchmark (target) | methods × optimizers × seeds | grid points (`unlearn` + "
             "`calibration_point`) | `unlearn` in all | relearn / evaluate | `calibrate` | reference evaluations "
             "| LMC |", "|---|---|---|---:|---:|---|---:|---:|---:|"]
    for name, cfg, d in _configs(root):
        seeds = len(cfg["seeds"])
        grids = []
        for b in cfg["benchmarks"]:
            grids.append(f"{len(methods_for(cfg, b))} × {len(optimizers_for(cfg, b))} × {seeds}")
        abl = cfg.get("ablation") or {}
        if abl:
            a_seeds = len(abl.get("seeds") or cfg["seeds"])
            grids.append(f"+ {len(ablation_optimizers(cfg))} ablation entries × {a_seeds}")
        benches = "; ".join(f"{b} ({spec.get('target')})" for b, spec in cfg["benchmarks"].items())
        lines.append(f"| `{name}.yaml` | {benches} | {', '.join(grids)} | {d.get('calibration_point', 0)} | "
                     f"{d['unlearn']} | {d.get('relearn', 0)} / {d.get('evaluate', 0)} | {d.get('calibrate', 0)} | "
                     f"{d.get('evaluate_reference', 0)} | {d.get('lmc', 0)} |")
    return "\n".join(lines)


def storage_block(root: Path) -> str:
    """Per paper config: models copied and unlearned, their disk in bf16, the relearned checkpoints
    and the disk with ``keep_checkpoints: true``."""
    lines = [f"Arithmetic from `configs/paper-*.yaml` (`unlearning.bench.paper_scale.dag_jobs`' job counts × "
             f"the model's parameters from its architecture's shape × {BYTES_PER_PARAM} bytes, bf16), not a "
             "measurement; GB = 10^9 bytes.", "",
             "| config | parameters | models copied + unlearned | disk (GB) | relearned checkpoints | "
             "+ kept checkpoints (GB) | total with `keep_checkpoints: true` (GB) |",
             "|---|---:|---|---:|---|---:|---:|"]
    for name, cfg, d in _configs(root):
        gb = _params(cfg) * BYTES_PER_PARAM / 1e9
        refs, runs = _reference_models(cfg), d["unlearn"]
        counts = len(cfg["attacks"]["relearn"]["steps"])
        ckpts = d.get("relearn", 0) * counts
        lines.append(f"| {name} | {_params(cfg):,} | {refs} + {runs} | {(refs + runs) * gb:.0f} | {ckpts} "
                     f"({counts} counts per run) | {ckpts * gb:.0f} | {(refs + runs + ckpts) * gb:.0f} |")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Path], str]] = {"paper-jobs": jobs_block, "paper-storage": storage_block}
