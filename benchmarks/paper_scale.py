"""Peak memory and step time of NPO unlearning per optimizer at a named architecture; and the memory
model behind the fit table of docs/speed-and-memory.md.

    PYTHONPATH=src python benchmarks/paper_scale.py --arch tiny [--optimizers adam,adazo] [--out r.json]
    PYTHONPATH=src python benchmarks/paper_scale.py --arch llama2-7b          # on a GPU
    PYTHONPATH=src python benchmarks/paper_scale.py --fit-table               # memory model only

Measurement: for each optimizer a fresh subprocess builds a randomly initialised LlamaForCausalLM of
the architecture (no download) on the device, in bf16 on CUDA (as the workflow's unsharded GPU path
loads models) and fp32 on the CPU, plus the frozen NPO reference (a copy), one forget and one retain
batch of random tokens at the lab's batch (4 x 2048 tokens; lab (Unlearn-Smooth MUSE
run_muse_unlearn.sh, per_device_batch_size 4, max_len 2048)), gradient checkpointing on when
``--checkpointing`` (default: on for CUDA), and runs ``--steps`` steps of NPO (beta 0.1,
retain_weight 1, the paper configs'). Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on
the CPU the peak RSS (VmHWM, reset before the model is built) minus the RSS at that point (the
interpreter and libraries, reported as ``runtime_bytes``); both include the weights.
Step time: median of the steps after the first.

Memory model (``model_bytes``): bytes = P * (weights + reference + gradients + states + master) +
activations, per optimizer, from what the code keeps (optim/*.py), with the per-weight byte counts of
``STATE_BYTES``. Unsharded (one GPU, bf16 weights): weights 2, NPO reference 2, gradients 2 for
first/second-order grades, states in the weights' dtype (torch's Adam keeps bf16 moments there),
fp32 ZO master copy 4 (zeroth.py). Sharded over N GPUs (distributed.py: fp32 weights and states,
bf16 compute, bf16 reference): (4 + 2 ref + 4 grads + fp32 states) / N plus two gathered bf16
layers (the one computing and the one prefetched). Activations:
in the compute dtype (a bytes: 2 on GPU, 4 on the CPU), with checkpointing the layer inputs
(L B T H a) + one layer's recompute (~ACT_PER_LAYER B T H a), twice (forget and retain graphs live
together), + the logits (B T V: two batches of logits and fp32 log-softmax, one fp32 gradient); a
forward-only (ZO) step keeps one layer and one batch's logits. The model is checked against the CPU measurement
at the tiny shape by tests/test_paper_scale.py (same formula with fp32 weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from optimizers import rss_kb  # benchmarks/optimizers.py: the same /proc reader

ARCHS = {
    # LlamaConfig kwargs. llama2-7b: meta-llama/Llama-2-7b-hf's config.json (the paper's MUSE/TOFU model).
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32),
    "llama-1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5504, num_hidden_layers=16,
                     num_attention_heads=16, num_key_value_heads=16),  # ours: 7B's shape at 1/4 width/depth
    "llama-300m": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2752, num_hidden_layers=16,
                       num_attention_heads=16, num_key_value_heads=16),
    "small": dict(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=8),  # ours: 33M, the CPU check of the model
    "tiny": dict(vocab_size=1024, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=4),
}
LAB_BATCH, LAB_SEQ = 4, 2048  # lab (Unlearn-Smooth MUSE run_muse_unlearn.sh)
OPTIMIZERS = {
    "adam": {"type": "adam"}, "signadam": {"type": "signadam"}, "sophia": {"type": "sophia", "k": 10},
    "adamw8bit": {"type": "adamw8bit"}, "zo_sgd": {"type": "zo_sgd"}, "adazo": {"type": "adazo"},
    "hybrid": {"type": "hybrid", "n_fo": 1, "n_zo": 1},
}
# Bytes per trainable weight kept by each optimizer, beyond weights and gradients: (unsharded with
# weights of w bytes, sharded fp32). From the code: Adam m, v; signAdam m; Sophia m, h; AdamW8bit two
# 8-bit states (+ block scales, ~0.03); ZO-SGD nothing, plus the fp32 master (4) when w < 4; AdaZO m, v
# in fp32 plus that master; hybrid: Adam's and AdaZO's.
def state_bytes(opt: str, w: int) -> float:
    master = 4 if w < 4 else 0
    return {"adam": 2 * w, "signadam": w, "sophia": 2 * w, "adamw8bit": 2.03, "zo_sgd": master,
            "adazo": 8 + master, "hybrid": 2 * w + 8 + master}[opt]


FIRST_ORDER = {"adam", "signadam", "sophia", "adamw8bit", "hybrid"}  # keep gradients
ACT_PER_LAYER = 34  # bytes/(B T H 2) of one Llama layer's saved activations (attention via SDPA), ours
GIB = 1 << 30


def n_params(arch: dict) -> int:
    """Parameters of a LlamaForCausalLM with untied embeddings (the 7B's 6,738,415,616)."""
    h, i, v, n = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"], arch["num_hidden_layers"]
    kv = h * arch.get("num_key_value_heads", arch["num_attention_heads"]) // arch["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return n * per_layer + 2 * v * h + h


def model_bytes(arch: dict, opt: str, *, batch: int = LAB_BATCH, seq: int = LAB_SEQ, shards: int = 1,
                weight_bytes: int = 2, checkpointing: bool = True, npo_ref: bool = True) -> dict:
    """Modelled peak bytes per device of one NPO step (module docstring), split by part."""
    p = n_params(arch)
    h, v, n_layers = arch["hidden_size"], arch["vocab_size"], arch["num_hidden_layers"]
    fo = opt in FIRST_ORDER
    if shards > 1:  # distributed.py: fp32 weights, states and gradients, sharded; bf16 compute
        layer = p / n_layers * 2  # one gathered bf16 layer (FSDP2 prefetches the next: x2)
        parts = {"weights": 4 * p / shards + 2 * layer, "reference": (2 * p / shards) if npo_ref else 0,
                 "gradients": 4 * p / shards if fo else 0, "states": state_bytes(opt, 4) * p / shards}
    else:
        w = weight_bytes
        parts = {"weights": w * p, "reference": w * p if npo_ref else 0, "gradients": w * p if fo else 0,
                 "states": state_bytes(opt, w) * p}
    a = 2 if shards > 1 else weight_bytes  # compute dtype: bf16 on GPU, fp32 on the CPU
    bth = batch * seq * h * a
    logits = batch * seq * v
    if fo:
        # the forget and retain graphs are both alive until backward: two sets of layer activations,
        # two logits (compute dtype) with their fp32 log-softmax, and one fp32 logits gradient
        layers = (n_layers * bth + ACT_PER_LAYER * bth) if checkpointing else n_layers * ACT_PER_LAYER * bth
        parts["activations"] = 2 * layers + logits * (2 * (a + 4) + 4)
    else:
        parts["activations"] = ACT_PER_LAYER * bth + logits * (a + 4)
    parts["total"] = sum(parts.values())
    return {k: int(x) for k, x in parts.items()}


# measured / modelled peak on the CPU at the small shape was at most this (docs/speed-and-memory.md):
# the fit table asks the model's total times this factor to fit (allocator slack, temporaries).
CHECK_FACTOR = 1.25


def fit_table(arch: dict, cards=(40, 80, 141), shards=(1, 2, 4, 8)) -> list[dict]:
    """Per optimizer and shard count: modelled GiB per GPU and whether it fits each card (the modelled
    total times CHECK_FACTOR within the card's memory)."""
    rows = []
    for opt in OPTIMIZERS:
        for n in shards:
            if n > 1 and opt == "adamw8bit":
                continue  # cannot shard (distributed.UNSHARDABLE)
            need = model_bytes(arch, opt, shards=n)["total"] / GIB
            rows.append({"optimizer": opt, "gpus": n, "gib_per_gpu": round(need, 1),
                         **{f"fits_{c}gb": need * CHECK_FACTOR <= c * 1e9 / GIB for c in cards}})
    return rows


# ------------------------------------------------------------------------------------------ GPU-hours
# Per optimizer step of NPO/GradDiff with checkpointing, in units of P * B * T FLOPs (B x T tokens per
# batch; a forward is 2 P per token, a backward 4 P, checkpointing recomputes the forward): first
# order: forward, recompute and backward on the forget and retain batches (2 x 8) + the reference's
# forward on the forget batch (2) = 18. Zeroth order: two evaluations of the objective (2 x (2 x 2 +
# 2)) = 12 per direction. SAM: two first-order passes (34). RS: n_samples first-order passes. Sophia:
# + a GNB forward/recompute/backward on the forget batch every k steps (8 / k). Hybrid: the mean of
# its phases. Relearning: forward, recompute, backward on one batch (8) per step.
def step_flop_units(spec: dict) -> float:
    t = spec["type"]
    if t in ("zo_sgd", "adazo"):
        return 12.0 * spec.get("q", 1)
    if t == "hybrid":
        fo, zo = spec.get("fo", {"type": "adam"}), spec.get("zo", {"type": "adazo"})
        n_fo, n_zo = spec.get("n_fo", 20), spec.get("n_zo", 20)
        return (n_fo * step_flop_units(fo) + n_zo * step_flop_units(zo)) / (n_fo + n_zo)
    if t == "sam":
        return 34.0
    if t == "rs":
        return 18.0 * spec.get("n_samples", 3)
    if t == "sophia":
        return 18.0 + 8.0 / spec.get("k", 10)
    return 18.0


def unlearning_steps(config: dict, steps_per_epoch: int | None) -> int:
    """Steps of one unlearning run: `unlearning.steps`, or `epochs` x the forget set's steps per epoch
    (data dependent: given by the caller; the lab's MUSE-News about 102 at batch 4, Books about 139)."""
    u = config["unlearning"]
    if u.get("epochs") is not None:
        if steps_per_epoch is None:
            raise ValueError("unlearning.epochs is set: give --steps-per-epoch (the forget set's steps per epoch)")
        return max(1, round(float(u["epochs"]) * steps_per_epoch))
    return int(u.get("steps", 60))  # 60: the schema's default


def gpu_hours(config: dict, arch: dict, tflops: float, steps_per_epoch: int | None = None) -> dict:
    """Modelled GPU-hours of a study's unlearning and relearning runs at ``tflops`` sustained FLOP/s
    (evaluation and quantization attacks excluded); with `calibration`, every grid point is an
    unlearning run as well (less the calibration seeds' runs the study reuses)."""
    p = n_params(arch)
    batch, seq = config["unlearning"]["batch_size"], config["model"]["max_len"]
    seeds, methods = len(config["seeds"]), len(config["methods"])
    cal = config.get("calibration") or {}
    # calibration grid points: unlearning runs too, less the ones the study reuses (config `calibration`)
    cal_seeds = [] if not cal else (config["seeds"] if cal.get("seeds") == "each" else cal.get("seeds", [0]))
    reused = len(set(cal_seeds) & set(config["seeds"]))
    unlearn, unlearn_jobs = 0.0, 0
    for name, spec in config["optimizers"].items():
        steps = spec.get("steps", unlearning_steps(config, steps_per_epoch))
        grid = cal.get("grids", {}).get(name, cal.get("grid", [0.3, 1, 3])) if cal else []
        jobs = seeds + len(grid) * len(cal_seeds) - (reused if cal else 0)
        unlearn_jobs += methods * jobs
        unlearn += methods * jobs * steps * step_flop_units(spec) * p * batch * seq
    relearn_cfg = config.get("attacks", {}).get("relearn") or {}
    runs = methods * seeds * len(config["optimizers"])
    relearn_steps = max(relearn_cfg.get("steps", [0]) or [0])
    relearn = runs * relearn_steps * 8 * p * relearn_cfg.get("batch_size", batch) * seq
    hours = {"unlearn": unlearn / (tflops * 1e12) / 3600, "relearn": relearn / (tflops * 1e12) / 3600}
    # disk: every unlearned model and the target/retrain copies, in bf16; relearned checkpoints too
    # when kept (one per relearning step count); data, logs and tables are small beside them
    kept = len(relearn_cfg.get("steps", [])) if relearn_cfg.get("keep_checkpoints") else 0
    disk_gb = (unlearn_jobs + runs * kept + 2) * 2 * p / 1e9
    return {"runs": runs, "unlearn_jobs": unlearn_jobs, **{k: round(v, 1) for k, v in hours.items()},
            "total": round(sum(hours.values()), 1), "disk_gb": round(disk_gb), "disk_gb_with_relearn_checkpoints":
            round((unlearn_jobs + runs * len(relearn_cfg.get("steps", [])) + 2) * 2 * p / 1e9)}


# ------------------------------------------------------------------------------------------ measurement
def worker(arch_name: str, opt: str, steps: int, batch: int, seq: int, device: str, checkpointing: bool) -> dict:
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearning.objectives import build_objective
    from unlearning.optim import build_optimizer
    from unlearning.train import loss_closure

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
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
    model.to(dtype)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    g = torch.Generator().manual_seed(1)

    def batch_of():
        ids = torch.randint(4, arch["vocab_size"], (batch, seq), generator=g).to(dev)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    fb, rb = batch_of(), batch_of()
    objective = build_objective("npo", {"beta": 0.1, "retain_weight": 1.0})
    params = [p for p in model.parameters()]
    opt_ = build_optimizer(params, dict(OPTIMIZERS[opt]), total_steps=steps)

    closure = loss_closure(model, opt_, objective, fb, rb, ref)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt_.step(closure)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else rss_kb("VmHWM") * 1024
    modelled = model_bytes(arch, opt, batch=batch, seq=seq, weight_bytes=2 if dtype == torch.bfloat16 else 4,
                           checkpointing=checkpointing)
    return {"arch": arch_name, "optimizer": opt, "params": sum(p.numel() for p in params), "device": str(dev),
            "card": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "dtype": str(dtype).replace("torch.", ""), "batch": [batch, seq], "checkpointing": checkpointing,
            "steps": steps, "step_s": round(statistics.median(times[1:] or times), 4),
            "peak_bytes": int(peak - base), "runtime_bytes": int(base), "modelled_bytes": modelled["total"],
            "modelled": modelled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="tiny", help=f"one of {list(ARCHS)}")
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    ap.add_argument("--steps", type=int, default=3, help="steps per optimizer, the first a warm-up")
    ap.add_argument("--batch", type=int, default=LAB_BATCH)
    ap.add_argument("--seq", type=int, default=None, help=f"tokens per sequence (default {LAB_SEQ}; tiny, small 128)")
    ap.add_argument("--device", default=None, help="cuda when available, else cpu")
    ap.add_argument("--checkpointing", choices=["on", "off", "auto"], default="auto", help="auto: on for CUDA")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--fit-table", action="store_true", help="print the modelled fit table and exit")
    ap.add_argument("--gpu-hours", metavar="CONFIG", nargs="+",
                    help="print modelled GPU-hours of these study configs (at --tflops) and exit")
    ap.add_argument("--tflops", type=float, default=400.0,
                    help="sustained bf16 TFLOP/s for --gpu-hours (default 400: ~40%% of an H100's dense peak)")
    ap.add_argument("--steps-per-epoch", type=int, default=None,
                    help="for --gpu-hours of a config with unlearning.epochs: the forget set's steps per epoch")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.arch not in ARCHS:
        sys.exit(f"--arch: unknown architecture {a.arch!r}; known: {list(ARCHS)}")
    if a.gpu_hours:
        import yaml

        for path in a.gpu_hours:
            with open(path) as f:
                cfg = yaml.safe_load(f)
            print(json.dumps({"config": path, "arch": a.arch, "tflops": a.tflops, "modelled": True,
                              **gpu_hours(cfg, ARCHS[a.arch], a.tflops, a.steps_per_epoch)}))
        return
    if a.fit_table:
        out = {"arch": a.arch, "params": n_params(ARCHS[a.arch]), "modelled": True, "rows": fit_table(ARCHS[a.arch])}
        print(json.dumps(out, indent=1))
        return
    from unlearning.models import device as default_device

    device = a.device or default_device().type
    seq = a.seq or (128 if a.arch in ("tiny", "small") else LAB_SEQ)
    ckpt = {"on": True, "off": False, "auto": device.startswith("cuda")}[a.checkpointing]
    if a.worker:
        print(json.dumps(worker(a.arch, a.worker, a.steps, a.batch, seq, device, ckpt)))
        return
    names = [n for n in a.optimizers.split(",") if n]
    for n in names:
        if n not in OPTIMIZERS:
            sys.exit(f"--optimizers: unknown optimizer {n!r}; known: {list(OPTIMIZERS)}")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    results = []
    for n in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", n, "--arch", a.arch, "--steps", str(a.steps),
               "--batch", str(a.batch), "--seq", str(seq), "--device", device, "--checkpointing",
               "on" if ckpt else "off"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            rec = {"arch": a.arch, "optimizer": n, "error": tail, "oom": "out of memory" in proc.stderr.lower()}
        else:
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(rec)
        print(json.dumps(rec), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"arch": a.arch, "device": device, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
