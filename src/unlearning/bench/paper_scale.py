"""The cost model of a paper-scale study, and the measurements that check it.

    unlearning paper-scale --fit-table [--arch llama2-7b]  # modelled memory per GPU
    unlearning paper-scale --gpu-hours configs/paper-X.yaml [--gpus 8]
    unlearning paper-scale --check      # the model against CPU runs at 3 sizes
    unlearning paper-scale --readme     # rewrite the generated paper-scale block of the docs
    unlearning paper-scale --arch llama2-7b   # measure on a GPU (see scripts/gpu-check.sh)

Jobs (``dag_jobs``): what the workflow runs for a config, counted from it (calibration grid, the
other seeds' runs, ablation hybrids, relearn / evaluate / reference / LMC / grade-distance jobs);
tests/test_paper_scale.py holds the counts against Snakemake's dry run.

Memory (``model_bytes``), per GPU, as the code trains: fp32 weights, gradients and optimizer states
(``STATE_BYTES`` per weight), bf16 compute (autocast without its cast cache on one GPU: the bf16
casts of the layers computing; FSDP2's bf16 gather when sharded), the NPO reference in bf16 (a fp32
copy on the CPU) only while it scores the forget batches before the first step
(train.cache_reference), the peak being the larger of that pass and a step. Sharded over N (FSDP2,
data parallel): weights, gradients, states and reference / N, two gathered bf16 layers, activations
for this rank's share of the batch (``rank_batch``). Activations in the compute dtype (a: 2 on GPU,
4 on the CPU): with checkpointing the layer inputs (L b T H a) + one layer's recompute
(ACT_PER_LAYER b T H a), twice (forget and retain graphs live together), + the logits (two batches'
logits and fp32 log-softmax, one fp32 gradient); a forward-only (ZO) step one layer and the logits
with their copies.

Time: FLOPs per step (``step_flop_units``) at a sustained rate, plus random draws (``draws``);
GPU-hours (``gpu_hours``) of every job, evaluation from decode steps and scored tokens, grade distance
from benchmarks/investigations/grade_distance.py's CPU measurements.

Measurement (``worker``, one fresh process per optimizer): a random-init LlamaForCausalLM of a named
shape (no download), fp32 weights with bf16 autocast and a bf16 reference on CUDA (fp32 and a fp32
copy on the CPU), random forget and retain batches, NPO (beta 0.1, retain weight 1) steps. Peak
memory: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the peak RSS (VmHWM, reset before the
model is built, with a fixed glibc mmap threshold so freed blocks leave it) minus the RSS at that point;
both include the weights. Step time: median after the
first step; on the CPU the process's CPU time (one thread), which a shared machine's load leaves alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..commands import Stage
from . import harness
from .harness import rss_kb

REPO = Path(__file__).resolve().parents[3]  # configs/, the docs and the stored check live there

ARCHS = {
    # LlamaConfig kwargs. llama2-7b: meta-llama/Llama-2-7b-hf's config.json (the paper's MUSE/TOFU model).
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32),
    "llama-1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5504, num_hidden_layers=16,
                     num_attention_heads=16, num_key_value_heads=16),  # ours: 7B's shape at 1/4 width/depth
    "llama-300m": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2752, num_hidden_layers=16,
                       num_attention_heads=16, num_key_value_heads=16),
    # ours: the CPU checks of the model (8M, 33M, 110M parameters; vocabularies kept small so the
    # decoder layers, not the embeddings, dominate as at 7B)
    "llama-110m": dict(vocab_size=16000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                       num_attention_heads=12, num_key_value_heads=12),
    "small": dict(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=8),  # 33M
    "llama-8m": dict(vocab_size=8000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=4),
    "tiny": dict(vocab_size=1024, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=4),
}
CHECK_ARCHS = ("llama-8m", "small", "llama-110m")  # the three CPU sizes the model is checked at
LAB_BATCH, LAB_SEQ = 4, 2048  # lab (Unlearn-Smooth MUSE run_muse_unlearn.sh)
OPTIMIZERS = {  # the measured / fit-table entries (the paper configs' types)
    "adam": {"type": "adam"}, "signadam": {"type": "signadam"}, "sophia": {"type": "sophia", "k": 10},
    "sam": {"type": "sam", "smooth_terms": "forget", "restore": "subtract"},
    "rs": {"type": "rs", "n_samples": 3, "smooth_terms": "forget", "restore": "subtract"},
    "adamw8bit": {"type": "adamw8bit"}, "zo_sgd": {"type": "zo_sgd"}, "adazo": {"type": "adazo"},
    "hybrid": {"type": "hybrid", "n_fo": 1, "n_zo": 1, "offload_idle": True}, "relearn": {"type": "adam"},
}


# Bytes per trainable weight each optimizer keeps beyond weights and gradients; every run trains fp32
# weights now (models.TRAIN_DTYPE, FSDP2's fp32 shards), so the states are fp32 everywhere. From the
# code (optim/*.py): Adam m, v; signAdam m; Sophia m, h; SAM Adam's m, v + with ``restore: copy`` the
# weights' copy before the ascent (alive during the second backward; ``subtract``, the paper configs:
# e waits in the gradient's place, nothing more); RS Adam's + with ``restore: copy`` the weights' copy
# (its samples' gradients add up in .grad: the loop's closure accumulates); AdamW8bit two 8-bit states
# + block scales (~0.03); N-bit Adam at 8 bits the same; ZO-SGD nothing; AdaZO m, v; the hybrid both of
# its parts', or with ``offload_idle`` (the paper configs) the larger one (the idle one in host memory).
STATE_BYTES = {"adam": 8, "adamw": 8, "signadam": 4, "signsgd": 0, "sophia": 8, "sam": 8, "rs": 8,
               "adamw8bit": 2.03, "nbit_adam": 2.03, "zo_sgd": 0, "adazo": 8}
RESTORE_COPY = {"sam", "rs"}  # + 4 bytes per weight with restore: copy (the schema default)
ZEROTH = {"zo_sgd", "adazo"}


def state_bytes(spec: dict) -> float:
    """fp32 state bytes per weight on the device of an optimizer entry (``STATE_BYTES``; SAM / RS + 4
    with ``restore: copy``; a hybrid both parts, or the larger with ``offload_idle``)."""
    t = spec["type"]
    if t == "hybrid":
        parts = (state_bytes(spec.get("fo", {"type": "adam"})), state_bytes(spec.get("zo", {"type": "adazo"})))
        return max(parts) if spec.get("offload_idle") else sum(parts)
    if t not in STATE_BYTES:
        raise ValueError(f"optimizer type {t!r}: no state bytes in paper_scale.STATE_BYTES")
    return STATE_BYTES[t] + (4 if t in RESTORE_COPY and spec.get("restore", "copy") == "copy" else 0)


def _spec(opt: str | dict) -> dict:
    return dict(OPTIMIZERS[opt]) if isinstance(opt, str) else opt


def draws(spec: dict) -> float:
    """Random numbers drawn per weight and step (optim/zeroth.py, smoothing.py): a sphere direction is
    drawn for its norm, the two perturbations and the update (which also restores), 4 per direction;
    Gaussian and Rademacher 3; RS one noise draw per sample; a hybrid its phases' mean."""
    t = spec["type"]
    if t in ZEROTH:
        return (4.0 if spec.get("direction", "sphere") == "sphere" else 3.0) * spec.get("q", 1)
    if t == "rs":
        return float(spec.get("n_samples", 3))
    if t == "hybrid":
        fo, zo = spec.get("fo", {"type": "adam"}), spec.get("zo", {"type": "adazo"})
        n_fo, n_zo = spec.get("n_fo", 20), spec.get("n_zo", 20)
        return (n_fo * draws(fo) + n_zo * draws(zo)) / (n_fo + n_zo)
    return 0.0


GPU_DRAWS_S = 2e11  # random numbers per second on a GPU (ours, unmeasured; gpu-check.sh measures a ZO step)


def first_order(spec: dict) -> bool:
    """Whether the entry keeps gradients (every grade but zeroth order; a hybrid has an FO phase)."""
    return spec["type"] not in ZEROTH


ACT_PER_LAYER = 34  # bytes/(B T H 2) of one Llama layer's saved activations (attention via SDPA), ours
GIB = 1 << 30


def n_params(arch: dict) -> int:
    """Parameters of a LlamaForCausalLM with untied embeddings (the 7B's 6,738,415,616)."""
    h, i, v, n = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"], arch["num_hidden_layers"]
    kv = h * arch.get("num_key_value_heads", arch["num_attention_heads"]) // arch["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return n * per_layer + 2 * v * h + h


def rank_batch(batch: int, shards: int) -> int:
    """Examples one rank computes per batch (distributed.DataShare: blocks differing by at most one; a
    rank with none runs one example at weight 0)."""
    return max(1, -(-batch // shards))


def model_bytes(arch: dict, opt: str | dict, *, batch: int = LAB_BATCH, seq: int = LAB_SEQ, shards: int = 1,
                device: str = "cuda", checkpointing: bool = True, npo_ref: bool = True) -> dict:
    """Modelled peak bytes per device of one NPO step (module docstring), split by part.

    ``device`` "cuda": fp32 weights, gradients and states (models.TRAIN_DTYPE), bf16 compute under
    autocast (its bf16 weight copies: all of them without checkpointing, saved for the backward; a
    layer's with it), the NPO reference in bf16. "cpu": everything fp32, the reference a fp32 copy
    (stages/unlearn.py) - the path the CPU measurement checks. ``shards`` > 1 (FSDP2, data parallel):
    weights, gradients, states and the bf16 reference split N ways, two gathered bf16 layers (the one
    computing and the one prefetched), activations for this rank's share of the batch.

    The NPO reference scores every forget batch before the first step and is freed
    (train.cache_reference), so a step holds none: the peak is the larger of the step and that scoring
    pass (weights, reference, a forward's activations), ``scoring`` in the parts."""
    spec = _spec(opt)
    p = n_params(arch)
    h, v, n_layers = arch["hidden_size"], arch["vocab_size"], arch["num_hidden_layers"]
    fo = first_order(spec)
    gpu = device != "cpu"
    layer = p / n_layers
    ref_bytes = 2 if gpu else 4
    if shards > 1:
        parts = {"weights": 4 * p / shards + 2 * 2 * layer, "reference": ref_bytes * p / shards if npo_ref else 0,
                 "gradients": 4 * p / shards if fo else 0, "states": state_bytes(spec) * p / shards, "casts": 0}
    else:
        casts = 0 if not gpu else (2 * p if (fo and not checkpointing) else 2 * 2 * layer + 2 * 2 * v * h)
        parts = {"weights": 4 * p, "reference": ref_bytes * p if npo_ref else 0, "gradients": 4 * p if fo else 0,
                 "states": state_bytes(spec) * p, "casts": casts}
    a = 2 if gpu else 4  # compute dtype
    b = rank_batch(batch, shards)
    bth = b * seq * h * a
    logits = b * seq * v
    if fo:
        # the forget and retain graphs are both alive until backward: two sets of layer activations,
        # two logits (compute dtype) with their fp32 log-softmax, and one fp32 logits gradient
        layers = (n_layers * bth + ACT_PER_LAYER * bth) if checkpointing else n_layers * ACT_PER_LAYER * bth
        parts["activations"] = 2 * layers + logits * (2 * (a + 4) + 4)
    else:  # a forward without grad: one layer's activations; the logits, their fp32 log-softmax and
        # the loss's copies of both (twice: measured in the CPU check, ~3 fp32 logits beyond the first)
        parts["activations"] = ACT_PER_LAYER * bth + 2 * logits * (a + 4)
    forward = ACT_PER_LAYER * bth + 2 * logits * (a + 4)  # a forward without grad, as a ZO step's
    # the reference, freed before the first step, is not part of a step (train.cache_reference)
    reference, parts["reference"] = parts["reference"], 0
    step = sum(parts.values())
    parts["scoring"] = parts["weights"] + reference + forward if reference else 0
    parts["total"] = max(step, parts["scoring"])
    return {k: int(x) for k, x in parts.items()}


def relearn_bytes(arch: dict, **kw) -> dict:
    """Relearning (AdamW fine-tuning on the forget texts, one batch per step): Adam without the NPO
    reference; the model_bytes of a first-order step with one batch's activations counted twice is an
    upper bound, used as is."""
    return model_bytes(arch, "adam", npo_ref=False, **kw)


# A card "fits" when the modelled peak is within FIT_SHARE of its memory: the CPU check found the
# model within CHECK_TOLERANCE of measured peaks, and CUDA keeps ~1 GB for its context and allocator.
CHECK_TOLERANCE = 0.20
FIT_SHARE = 0.95
CARDS_GB = (40, 80, 141)  # A100 40 GB, A100/H100 80 GB, H200 141 GB


def fit_table(arch: dict, cards=CARDS_GB, shards=(1, 8), checkpointing: bool = True) -> list[dict]:
    """Per optimizer and shard count: modelled GiB per GPU at the lab's batch and whether it fits each
    card (within FIT_SHARE of its memory)."""
    rows = []
    for opt in OPTIMIZERS:
        for n in shards:
            kw = dict(shards=n, checkpointing=checkpointing)
            need = (relearn_bytes(arch, **kw) if opt == "relearn" else model_bytes(arch, opt, **kw))["total"]
            rows.append({"optimizer": opt, "gpus": n, "gib_per_gpu": round(need / GIB, 1),
                         **{f"fits_{c}gb": need <= FIT_SHARE * c * 1e9 for c in cards}})
    return rows


# ------------------------------------------------------------------------------------------ GPU-hours
# Per optimizer step of NPO/GradDiff, in units of P * b * T FLOPs (b x T tokens per batch and rank; a
# forward is 2 P per token, a backward 4 P, checkpointing recomputes the forward): first order:
# forward, (recompute,) backward on the forget and retain batches (2 x 8 with checkpointing, 2 x 6
# without) + the reference's forward on the forget batch (2; NPO only) = 18. Zeroth order: two
# evaluations of the objective (2 x (2 x 2) + the reference's 2) = 10 per direction. SAM: two
# first-order passes. RS: n_samples. Sophia: + a GNB pass on the forget batch every k steps. Hybrid:
# the mean of its phases. Relearning: forward, (recompute,) backward on one batch.
def step_flop_units(spec: dict, checkpointing: bool = True, ref: bool = True) -> float:
    """FLOPs of one unlearning step of ``spec`` in units of P x tokens per batch (comment above)."""
    t = spec["type"]
    fb = 8.0 if checkpointing else 6.0
    r = 2.0 if ref else 0.0
    if t in ZEROTH:
        return (2 * 4.0 + r) * spec.get("q", 1)
    if t == "hybrid":
        fo, zo = spec.get("fo", {"type": "adam"}), spec.get("zo", {"type": "adazo"})
        n_fo, n_zo = spec.get("n_fo", 20), spec.get("n_zo", 20)
        return (n_fo * step_flop_units(fo, checkpointing, ref) + n_zo * step_flop_units(zo, checkpointing, ref)) / (
            n_fo + n_zo)
    one = 2 * fb + r
    if t == "sam":
        return 2 * one
    if t == "rs":
        return one * spec.get("n_samples", 3)
    if t == "sophia":
        return one + fb / spec.get("k", 10)
    return one


def unlearning_steps(config: dict, steps_per_epoch: int | None) -> int:
    """Steps of one unlearning run: `unlearning.steps`, or `epochs` x the forget set's steps per epoch
    (data dependent: given by the caller; the lab's MUSE-News about 102 at batch 4, Books about 139)."""
    u = config["unlearning"]
    if u.get("epochs") is not None:
        if steps_per_epoch is None:
            raise ValueError("unlearning.epochs is set: give --steps-per-epoch (the forget set's steps per epoch)")
        return max(1, round(float(u["epochs"]) * steps_per_epoch))
    return int(u.get("steps", 60))  # 60: the schema's default


# Forget-set steps per epoch at batch 4 of the paper configs' hub data (MUSE: the lab's counts,
# OPTML-Group/Unlearn-Smooth MUSE/README.md; checkpoint-1020 after 10 epochs of News).
STEPS_PER_EPOCH = {"muse_news": 102, "muse_books": 139}


def relearn_steps_per_job(config: dict) -> int:
    """Steps one relearn job trains: the longest count when the counts are checkpoints of one run
    (constant schedule, no warmup), else every count from scratch, one after another (the schema)."""
    r = config["attacks"]["relearn"]
    steps = sorted(r["steps"])
    one_run = r.get("schedule", "constant") == "constant" and not r.get("warmup", 0)
    return max(steps) if one_run else sum(steps)


def load_config(path: str) -> dict:
    """A study config as the workflow sees it: validated, schema defaults filled in."""
    import yaml

    from unlearning.config import validate

    with open(path) as f:
        return validate(yaml.safe_load(f))


def dag_jobs(config: dict) -> dict:
    """Jobs per rule the workflow runs for ``config`` (validated), counted from the config.

    ``planned``: what a dry run lists before the calibration checkpoint ran (the grid's unlearning
    runs; the other seeds' runs are planned after it); ``jobs``: everything, with those runs.
    Also ``unlearn_runs``: (benchmark, method, optimizer spec, seed) of every unlearn job. The attacks'
    controls (``StudyPlan.control_runs``: the retrain model and the positive control, whose thin
    unlearning is an unlearn job of method ``none``) are relearned and evaluated like runs."""
    from unlearning import calibration as CAL
    from unlearning.config import ablation_optimizers, methods_for, optimizers_for
    from unlearning.plan import CONTROL, StudyPlan

    seeds = [int(s) for s in config["seeds"]]
    entries = [(b, m, o, seeds) for b in config["benchmarks"] for m in methods_for(config, b)
               for o in optimizers_for(config, b)]
    abl = config.get("ablation") or {}
    if abl:
        a_seeds = [int(s) for s in abl.get("seeds") or seeds]
        entries += [(abl["benchmark"], abl["method"], o, a_seeds) for o in ablation_optimizers(config)]
    grid_runs, other_runs = [], []
    for b, m, o, ss in entries:
        spec = config["optimizers"][o]
        cal = CAL.seeds(config, ss)
        grid_runs += [(b, m, spec, s) for s in cal for _ in CAL.grid(config, o)]
        other_runs += [(b, m, spec, s) for s in ss if s not in cal]
    plan = StudyPlan(config)
    controls = [r for b in config["benchmarks"] for r in plan.control_runs(b)]
    positives = [(b, m, plan.optimizer_spec(o), s) for b, m, o, s in controls if o == CONTROL]
    runs = len([1 for _, _, _, ss in entries for _ in ss]) + len(controls)
    refs = len(config["benchmarks"]) * len(CAL.model_seeds(config, "target", seeds))  # the targets
    lmc = sum(len(methods_for(config, b)) * len(seeds) for b in config["benchmarks"]
              if (config.get("report") or {}).get("reference_optimizer", "adam") in optimizers_for(config, b)
              and len(optimizers_for(config, b)) > 1)
    planned = {"unlearn": (len(grid_runs) if CAL.enabled(config) else len(other_runs)) + len(positives),
               "calibration_point": len(grid_runs), "calibrate": len(entries) if CAL.enabled(config) else 0,
               "relearn": runs, "evaluate": runs, "evaluate_reference": refs, "lmc": lmc,
               "report_grade_distance": 1}
    jobs = {**planned, "unlearn": len(grid_runs) + len(other_runs) + len(positives)}
    return {"planned": {k: v for k, v in planned.items() if v},
            "jobs": {k: v for k, v in jobs.items() if v}, "unlearn_runs": grid_runs + other_runs + positives}


# Evaluation workload per scoring pass (one model under one attack), per benchmark kind: generated
# tokens (decode steps are bound by reading the weights) and scored tokens (prefill, 2 P FLOPs each).
# Set sizes: MUSE (muse-bench: verbmem 100, knowmem 100 + 100, privleak 100 + 100 texts), WMDP
# (cais/wmdp: bio 1273, cyber 1987 questions; MMLU 14042), TOFU (forget10 400, retain 400, real
# authors 100, world facts 117; perturbed answers 5 each). Prompt lengths ours (approximate).
EVAL_WORK = {
    "muse": {"generate": [(100, 128), (100, 32), (100, 32)], "score_tokens": 200 * 2048 + 200 * 600},
    "wmdp": {"generate": [], "score_tokens": (1500 + 14042) * 250},  # one forward per question
    "tofu": {"generate": [(400, 200), (400, 200), (100, 200), (117, 200)], "score_tokens": 1017 * 7 * 150},
}
HBM_BYTES_S = 2.0e12  # sustained weight-read rate of a decode step (ours: ~60% of an H100's 3.35 TB/s)
QUANT_SLOWDOWN = 2.0  # bitsandbytes' int8/4-bit kernels vs bf16 (ours, unmeasured)
# Grade distance on the CPU, seconds per weight with one thread (benchmarks/investigations/grade_distance.py at
# 4M-13M weights on this project's shared 2-core machine: per model 7.1e-8; per pair 0.5-3e-8, the
# upper end taken); linear in weights, models and pairs; one group per thread (stages/distance.py).
GD_S_PER_MODEL, GD_S_PER_PAIR = 7.1e-8, 3.0e-8


def _pass_seconds(kind: str, p: int, bs: int, tflops: float, quant: bool) -> float:
    work = EVAL_WORK[kind]
    decode = sum(-(-n // bs) * new for n, new in work["generate"]) * 2 * p / HBM_BYTES_S
    prefill = work["score_tokens"] * 2 * p / (tflops * 1e12)
    return (decode + prefill) * (QUANT_SLOWDOWN if quant else 1.0)


def _pairs_of(grades: list[str]) -> int:
    n = len(grades)
    return n * (n - 1) // 2 - sum(grades.count(x) * (grades.count(x) - 1) // 2 for x in set(grades))


def gpu_hours(config: dict, arch: dict, tflops: float = 400.0, gpus: int = 1, checkpointing: bool = True,
              steps_per_epoch: int | None = None, distance_threads: int = 9) -> dict:
    """Modelled GPU-hours of every job of a study (``dag_jobs``) at ``tflops`` sustained per GPU, with
    unlearning and relearning sharded over ``gpus`` (data parallel: each rank computes ``rank_batch``
    examples, so GPU-hours grow when gpus exceed the batch); evaluation, calibration points and LMC on
    one GPU; grade distance in CPU-hours (and wall hours of its job with ``distance_threads``)."""
    from unlearning.config import methods_for, optimizers_for
    from unlearning.registry import grade

    p = n_params(arch)
    seq, batch = config["model"]["max_len"], config["unlearning"]["batch_size"]
    flops_s = tflops * 1e12
    dag = dag_jobs(config)
    methods = {**config["methods"], "none": config["controls"]["positive"]["method"]}  # none: the positive control
    needs_ref = {m: s["objective"] in ("npo", "simnpo") for m, s in methods.items()}
    unlearn = 0.0
    for bench, method, spec, _ in dag["unlearn_runs"]:
        spe = steps_per_epoch or STEPS_PER_EPOCH.get(bench)
        steps = spec.get("steps", unlearning_steps(config, spe))
        per_rank = step_flop_units(spec, checkpointing, needs_ref[method]) * p * rank_batch(batch, gpus) * seq
        # + the directions' random draws, each rank its 1/N of the weights
        unlearn += steps * (per_rank / flops_s + draws(spec) * p / gpus / GPU_DRAWS_S) * gpus
    r = config["attacks"]["relearn"]
    relearn_job = (relearn_steps_per_job(config) * (8.0 if checkpointing else 6.0) * p
                   * rank_batch(r.get("batch_size", batch), gpus) * seq / flops_s * gpus)
    relearn = dag["jobs"].get("relearn", 0) * relearn_job
    ev = config["evaluation"]
    kind = next(iter(config["benchmarks"].values())).get("kind", "muse")
    plain = _pass_seconds(kind, p, ev["batch_size"], tflops, False)
    quant = _pass_seconds(kind, p, ev["batch_size"], tflops, True)
    nq = len(config["attacks"]["quantization"])
    evaluation = (dag["jobs"].get("evaluate", 0) * ((1 + len(r["steps"])) * plain + nq * quant)
                  + dag["jobs"].get("evaluate_reference", 0) * (plain + nq * quant)
                  + dag["jobs"].get("calibration_point", 0) * plain / 2)  # the criterion's two metrics
    rep = config.get("report") or {}
    lmc = 0.0
    for b in config["benchmarks"]:
        n_opt = len(optimizers_for(config, b))
        jobs = len(methods_for(config, b)) * len(config["seeds"]) if n_opt > 1 else 0
        tokens = 2 * rep.get("lmc_max_texts", 64) * seq  # forget and retain texts per point
        lmc += jobs * (n_opt - 1) * rep.get("lmc_points", 11) * tokens * 2 * p / flops_s
    group_s = []
    for b in config["benchmarks"]:
        gr = [grade(config["optimizers"][o]["type"]) for o in optimizers_for(config, b)]
        per_group = p * (GD_S_PER_MODEL * len(gr) + GD_S_PER_PAIR * _pairs_of(gr))
        group_s += [per_group] * (len(methods_for(config, b)) * len(config["seeds"]))
    rounds = -(-len(group_s) // distance_threads)
    hours = {"unlearn": unlearn / 3600, "relearn": relearn / 3600, "evaluate": evaluation / 3600, "lmc": lmc / 3600}
    kept = len(r["steps"]) if r.get("keep_checkpoints") else 0
    return {"jobs": dag["jobs"], "gpus": gpus, "tflops": tflops, "checkpointing": checkpointing,
            **{k: round(v, 1) for k, v in hours.items()}, "total": round(sum(hours.values()), 1),
            "grade_distance_cpu_hours": round(sum(group_s) / 3600, 1),
            "grade_distance_wall_hours": round(rounds * max(group_s or [0]) / 3600, 1),
            "disk_gb": round((dag["jobs"]["unlearn"] + dag["jobs"]["relearn"] * kept + 2) * 2 * p / 1e9)}


# ------------------------------------------------------------------------------------------ measurement
def worker(arch_name: str, opt: str, steps: int, batch: int, seq: int, device: str, checkpointing: bool) -> dict:
    """One measurement (module docstring): NPO steps of ``opt`` on a random-init Llama, as the
    workflow trains (fp32 weights; bf16 autocast and a bf16 reference on CUDA; a fp32 copy on the CPU;
    the reference scores the forget batch up front and is freed before the first step)."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearning.models import autocast, enable_checkpointing
    from unlearning.objectives import build_objective
    from unlearning.optim import build_optimizer
    from unlearning.train import loss_closure

    dev = torch.device(device)
    base = 0
    if dev.type == "cpu":
        torch.set_num_threads(1)
        with open("/proc/self/clear_refs", "w") as f:  # peak RSS from here on (weights included)
            f.write("5")
        base = rss_kb("VmRSS") * 1024  # the interpreter and libraries: not part of the model
    arch = ARCHS[arch_name]
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(LlamaConfig(max_position_embeddings=seq, tie_word_embeddings=False, **arch))
    model.float()
    ref = copy.deepcopy(model) if dev.type == "cpu" else copy.deepcopy(model).to(torch.bfloat16)
    ref.eval().requires_grad_(False)
    if checkpointing:
        enable_checkpointing(model)
    model.train()
    g = torch.Generator().manual_seed(1)

    def batch_of():
        ids = torch.randint(4, arch["vocab_size"], (batch, seq), generator=g).to(dev)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    fb, rb = batch_of(), batch_of()
    objective = build_objective("npo", {"beta": 0.1, "retain_weight": 1.0})
    params = [p for p in model.parameters()]
    spec = dict(OPTIMIZERS[opt])
    opt_ = build_optimizer(params, dict(spec), total_steps=steps)

    # as the stage does (train.cache_reference): the reference scores the forget batch, then is freed
    with autocast(dev):
        objective.reference_nll(ref, fb)
    objective.release_reference()
    del ref
    closure = loss_closure(model, opt_, objective, fb, rb)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        with autocast(dev):
            opt_.step(closure)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else rss_kb("VmHWM") * 1024
    modelled = model_bytes(arch, spec, batch=batch, seq=seq, device=dev.type, checkpointing=checkpointing)
    # on the CPU the process's CPU time (one thread): a shared machine's load does not enter it
    step_s = statistics.median((cpu_times if dev.type == "cpu" else times)[1:] or times)
    flops = step_flop_units(spec, checkpointing) * n_params(arch) * batch * seq
    return {"arch": arch_name, "optimizer": opt, "params": sum(p.numel() for p in params), "device": str(dev),
            "card": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "batch": [batch, seq], "checkpointing": checkpointing, "steps": steps, "step_s": round(step_s, 4),
            "wall_s": round(statistics.median(times[1:] or times), 4), "draws": draws(spec) * n_params(arch),
            "modelled_flops": int(flops), "tflops": round(flops / step_s / 1e12, 4),
            "peak_bytes": int(peak - base), "runtime_bytes": int(base), "modelled_bytes": modelled["total"],
            "modelled": modelled}


def run_workers(arch: str, names: list[str], steps: int, batch: int, seq: int, device: str, ckpt: bool,
                timeout: float | None = None) -> list[dict]:
    """``worker`` for each optimizer in a fresh single-threaded process; a failure is recorded, not raised."""
    # A fixed mmap threshold returns every large freed block to the OS at once, so the CPU's peak RSS
    # counts live memory as CUDA's max_memory_allocated does; with glibc's adaptive threshold the NPO
    # reference, freed after its scoring pass, stayed resident (small shape: 1.19x the model, 0.98x so).
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072")
    results = []
    for n in names:
        cmd = [sys.executable, "-m", "unlearning.bench.paper_scale", "--worker", n, "--arch", arch,
               "--steps", str(steps), "--batch", str(batch), "--seq", str(seq), "--device", device, "--checkpointing",
               "on" if ckpt else "off"]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rec = {"arch": arch, "optimizer": n, "error": f"timed out after {timeout} s"}
        else:
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rec = {"arch": arch, "optimizer": n, "error": tail, "oom": "out of memory" in proc.stderr.lower()}
            else:
                rec = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    return results


CHECK_FILE = str(REPO / "benchmarks" / "paper_scale_check.json")


def cpu_check(archs=CHECK_ARCHS, optimizers=("adam", "zo_sgd"), steps: int = 3, batch: int = 2,
              seq: int = 128) -> dict:
    """The model against CPU measurements at ``archs`` (one thread, checkpointing on): per run the
    measured peak over the modelled one, and the measured step (CPU seconds) over the modelled one,
    FLOPs at one sustained rate plus random draws at another, both rates fitted to all runs together
    (2 numbers for 6 runs). ``ok`` when every ratio is within CHECK_TOLERANCE of 1."""
    rows = [r for a in archs for r in run_workers(a, list(optimizers), steps, batch, seq, "cpu", True)]
    good = [r for r in rows if "error" not in r]
    import numpy as np

    # step CPU seconds = FLOPs / R + draws / G: the two rates fitted to every run (least squares on
    # relative error), then each run's measured time over the modelled one
    x = np.array([[r["modelled_flops"], r["draws"]] for r in good], float)
    y = np.array([r["step_s"] for r in good], float)
    inv, *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(good)), rcond=None) if good else ([0, 0],)
    inv = np.maximum(inv, 1e-30)
    out = []
    for r in rows:
        if "error" in r:
            out.append({"arch": r["arch"], "optimizer": r["optimizer"], "error": r["error"]})
            continue
        modelled_s = r["modelled_flops"] * inv[0] + r["draws"] * inv[1]
        out.append({"arch": r["arch"], "optimizer": r["optimizer"], "params": r["params"], "step_s": r["step_s"],
                    "modelled_s": round(float(modelled_s), 4), "peak_mib": round(r["peak_bytes"] / 2**20, 1),
                    "modelled_mib": round(r["modelled_bytes"] / 2**20, 1),
                    "memory_ratio": round(r["peak_bytes"] / r["modelled_bytes"], 3),
                    "time_ratio": round(r["step_s"] / float(modelled_s), 3)})
    ok = len(good) == len(rows) and all(abs(r[k] - 1) <= CHECK_TOLERANCE for r in out
                                        for k in ("memory_ratio", "time_ratio"))
    mean_rate, draw_rate = 1 / inv[0] / 1e12, 1 / inv[1]
    return {"device": "cpu", "threads": 1, "batch": [batch, seq], "steps": steps, "checkpointing": True,
            "sustained_gflops": round(float(mean_rate) * 1e3, 2), "draws_per_s": float(f"{draw_rate:.3g}"),
            "tolerance": CHECK_TOLERANCE, "ok": ok, "rows": out}


PAPER_CONFIGS = ("paper-muse-news", "paper-muse-books", "paper-tofu", "paper-wmdp", "paper-wmdp-cyber")
BEGIN, END = "<!-- BEGIN generated:paper-scale -->", "<!-- END generated:paper-scale -->"
FIT_ROWS = ("adam", "sophia", "signadam", "sam", "rs", "adamw8bit", "zo_sgd", "adazo", "hybrid", "relearn")


def readme_block(check: dict | None = None, tflops: float = 400.0) -> str:
    """The generated paper-scale block: the modelled fit table of Llama-2-7B at the lab's batch (one
    GPU and 8-way sharded, checkpointing on), the modelled GPU-hours of each paper config, and the CPU
    check the model passed (``check``: the stored ``cpu_check`` result, CHECK_FILE)."""
    arch = ARCHS["llama2-7b"]
    rows = {(r["optimizer"], r["gpus"]): r for r in fit_table(arch, shards=(1, 2, 8))}
    yes = {True: "yes", False: "no"}
    out = [BEGIN, "<!-- written by `unlearning paper-scale --readme`; do not edit by hand -->",
           f"**Modelled, not measured on a GPU** (`unlearning paper-scale`): Llama-2-7B "
           f"({n_params(arch) / 1e9:.2f}B), NPO at the lab's batch {LAB_BATCH} x {LAB_SEQ} tokens, activation "
           f"checkpointing on, fp32 weights and states, bf16 compute; the bf16 NPO reference scores the "
           f"forget batches up front and is freed; SAM and RS restore by subtraction, the hybrid keeps its "
           f"idle phase's state in host memory (the paper configs). A card fits when the modelled peak is "
           f"within {FIT_SHARE:.0%} of its memory.", "",
           "| optimizer | 1 GPU (GiB) | fits 141 GB | fits 80 GB | 2 GPUs (GiB each) | fits 2 x 141 GB "
           "| 8 GPUs (GiB each) | fits 8 x 80 GB |",
           "|---|---:|:---:|:---:|---:|:---:|---:|:---:|"]
    for o in FIT_ROWS:
        one, two, eight = rows[(o, 1)], rows[(o, 2)], rows[(o, 8)]
        out.append(f"| {o} | {one['gib_per_gpu']} | {yes[one['fits_141gb']]} | {yes[one['fits_80gb']]} | "
                   f"{two['gib_per_gpu']} | {yes[two['fits_141gb']]} | {eight['gib_per_gpu']} | "
                   f"{yes[eight['fits_80gb']]} |")
    out += ["", f"Modelled GPU-hours at {tflops:.0f} TFLOP/s sustained per GPU (every job of the DAG: "
            "calibration grid, unlearning, relearning with every step count, evaluation, LMC; grade "
            "distance in CPU-hours). Unlearning and relearning on 1 GPU, or sharded over 8 (data parallel: "
            f"at batch {LAB_BATCH} each of 8 ranks computes one example, so 8 GPUs cost about twice the GPU-hours "
            "of 4).", "",
            "| config | unlearn jobs | relearn jobs | eval jobs | GPU-h (1 GPU) | GPU-h (8 GPUs) | "
            "of which evaluation | grade distance CPU-h (wall h) | disk (GB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in PAPER_CONFIGS:
        cfg = load_config(str(REPO / "configs" / f"{name}.yaml"))
        one, eight = gpu_hours(cfg, arch, tflops, gpus=1), gpu_hours(cfg, arch, tflops, gpus=8)
        j = one["jobs"]
        evals = j["evaluate"] + j.get("evaluate_reference", 0) + j.get("calibration_point", 0)
        out.append(f"| {name} | {j['unlearn']} | {j['relearn']} | {evals} "
                   f"| {one['total']} | {eight['total']} | {one['evaluate']} | {one['grade_distance_cpu_hours']} "
                   f"({one['grade_distance_wall_hours']}) | {one['disk_gb']} |")
    if check:
        worst_m = max(abs(r["memory_ratio"] - 1) for r in check["rows"] if "memory_ratio" in r)
        worst_t = max(abs(r["time_ratio"] - 1) for r in check["rows"] if "time_ratio" in r)
        sizes = ", ".join(sorted({f"{r['params'] / 1e6:.0f}M" for r in check["rows"] if "params" in r},
                                 key=lambda x: float(x[:-1])))
        out += ["", f"Checked on the CPU (`unlearning paper-scale --check`, {check['threads']} thread, "
                f"batch {check['batch'][0]} x {check['batch'][1]}, checkpointing on) at {sizes} parameters, "
                f"{', '.join(sorted({r['optimizer'] for r in check['rows']}))}: measured peak memory within "
                f"{worst_m:.0%} of the model, CPU step times within {worst_t:.0%} (FLOPs at one rate, "
                f"{check['sustained_gflops']} GFLOP/s, plus ZO's random draws at another, both fitted to "
                f"the {len(check['rows'])} runs); tolerance {check['tolerance']:.0%}: "
                f"{'passed' if check['ok'] else 'FAILED'} (benchmarks/paper_scale_check.json)."]
    out.append(END)
    return "\n".join(out)


def block_page() -> Path:
    """The page that holds the generated block (between BEGIN and END): README.md or a page of docs/."""
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        if page.exists() and BEGIN in page.read_text(encoding="utf-8").splitlines():
            return page
    raise ValueError(f"no page of README.md or docs/ holds {BEGIN} ... {END}: place the markers by hand")


def write_readme(path: str | Path | None = None, block: str | None = None) -> bool:
    """Replace the generated block in ``path`` (between BEGIN and END) with ``readme_block``; True when
    the file changed. The markers must already be there (placed by hand in the paper-scale section)."""
    path = path or block_page()
    text = open(path, encoding="utf-8").read()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN} ... {END} block to fill")
    block = block if block is not None else readme_block(stored_check())
    head, rest = text.split(BEGIN, 1)
    new = head + block + rest.split(END, 1)[1]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


def stored_check() -> dict | None:
    """The last ``cpu_check`` result written by ``--check`` (CHECK_FILE), if any."""
    if not os.path.exists(CHECK_FILE):
        return None
    with open(CHECK_FILE) as f:
        return json.load(f)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``unlearning paper-scale``."""
    ap.add_argument("--arch", default="tiny", help=f"one of {list(ARCHS)}")
    ap.add_argument("--optimizers", default=",".join(o for o in OPTIMIZERS if o != "relearn"))
    ap.add_argument("--steps", type=int, default=3, help="steps per optimizer, the first a warm-up")
    ap.add_argument("--batch", type=int, default=LAB_BATCH)
    ap.add_argument("--seq", type=int, default=None, help=f"tokens per sequence (default {LAB_SEQ}; tiny, small 128)")
    harness.add_device(ap)
    ap.add_argument("--checkpointing", choices=["on", "off", "auto"], default="auto", help="auto: on for CUDA")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--fit-table", action="store_true", help="print the modelled fit table and exit")
    ap.add_argument("--gpu-hours", metavar="CONFIG", nargs="+",
                    help="print modelled GPU-hours of these study configs (at --tflops) and exit")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs per unlearning/relearning job for --gpu-hours")
    ap.add_argument("--tflops", type=float, default=400.0,
                    help="sustained bf16 TFLOP/s for --gpu-hours (default 400: ~40%% of an H100's dense peak)")
    ap.add_argument("--steps-per-epoch", type=int, default=None,
                    help="for --gpu-hours of a config with unlearning.epochs: the forget set's steps per epoch")
    ap.add_argument("--check", action="store_true",
                    help=f"check the model against CPU measurements at {', '.join(CHECK_ARCHS)} and store the "
                         f"result ({os.path.relpath(CHECK_FILE, REPO)}); exit 1 when outside the tolerance")
    ap.add_argument("--readme", action="store_true",
                    help="rewrite the generated paper-scale block (in README.md or the docs page that holds it)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)


def report(a: argparse.Namespace) -> None:
    """Run what the options ask (one of --readme, --check, --gpu-hours, --fit-table, or the
    measurement at --arch) and print its JSON."""
    if a.arch not in ARCHS:
        sys.exit(f"--arch: unknown architecture {a.arch!r}; known: {list(ARCHS)}")
    if a.readme:
        page = block_page()
        changed = write_readme(page)
        print(f"paper_scale: {page.relative_to(REPO)} {'updated' if changed else 'unchanged'}")
        return
    if a.check:
        res = cpu_check(steps=a.steps)
        with open(CHECK_FILE, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        harness.emit(res, indent=1)
        if not res["ok"]:
            sys.exit(1)
        return
    if a.gpu_hours:
        for path in a.gpu_hours:
            harness.emit({"config": path, "arch": a.arch, "modelled": True,
                          **gpu_hours(load_config(path), ARCHS[a.arch], a.tflops, a.gpus,
                                      steps_per_epoch=a.steps_per_epoch)})
        return
    if a.fit_table:
        harness.emit({"arch": a.arch, "params": n_params(ARCHS[a.arch]), "modelled": True,
                      "rows": fit_table(ARCHS[a.arch])}, indent=1)
        return
    device = a.device or harness.device().type
    seq = a.seq or (128 if a.arch in ("tiny", "small") else LAB_SEQ)
    ckpt = {"on": True, "off": False, "auto": device.startswith("cuda")}[a.checkpointing]
    if a.worker:
        harness.emit(worker(a.arch, a.worker, a.steps, a.batch, seq, device, ckpt))
        return
    names = [n for n in a.optimizers.split(",") if n]
    for n in names:
        if n not in OPTIMIZERS or n == "relearn":
            sys.exit(f"--optimizers: unknown optimizer {n!r}; known: {[o for o in OPTIMIZERS if o != 'relearn']}")
    results = run_workers(a.arch, names, a.steps, a.batch, seq, device, ckpt)
    for rec in results:
        harness.emit(rec)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"arch": a.arch, "device": device, "results": results}, f, indent=1)


STAGE = Stage(add_arguments, report, needs_torch=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m unlearning.bench.paper_scale`` (how ``run_workers`` starts a worker): the same as
    ``unlearning paper-scale``."""
    p = harness.parser(__doc__)
    add_arguments(p)
    report(p.parse_args(argv))


if __name__ == "__main__":
    main()
