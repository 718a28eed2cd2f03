"""The parts of scripts/gpu-check.sh, one per call; each prints one JSON object (its last stdout line).

    python benchmarks/investigations/gpu_check.py env
    python benchmarks/investigations/gpu_check.py zo    --arch llama2-7b   # two forwards vs a ZO-SGD and an AdaZO step
    python benchmarks/investigations/gpu_check.py adam  --arch llama2-7b   # Adam with activation checkpointing
    torchrun --standalone --nproc-per-node 1 benchmarks/investigations/gpu_check.py fsdp --arch llama-1b
    python benchmarks/investigations/gpu_check.py bf16  --arch llama-300m  # bf16 vs fp32 update and ZO projections
    python benchmarks/investigations/gpu_check.py bnb                      # bitsandbytes 4-bit codes, CUDA vs CPU

Models are random-init LlamaForCausalLM from unlearning.bench.paper_scale's ARCHS (no hub), trained as
the workflow trains them: fp32 weights, bf16 autocast on CUDA (models.autocast), a bf16 NPO
reference on CUDA (fp32 copy on the CPU), NPO at ``--batch`` x ``--seq`` (default the lab's 4 x 2048
on CUDA, 2 x 64 on the CPU). Peak memory: ``torch.cuda.max_memory_allocated`` (on the CPU: the
process's peak RSS growth), against paper_scale.model_bytes.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time

from unlearning.bench import harness
from unlearning.bench import paper_scale as ps  # ARCHS, the memory model

GIB = 1 << 30


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _peak(dev) -> int:
    import torch

    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return harness.rss_kb("VmHWM") * 1024


def _reset(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        harness.reset_peak_rss()


def _model(arch_name: str, dev, seq: int):
    """fp32 random-init Llama on ``dev`` (built there directly: no host copy of a 7B model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(LlamaConfig(max_position_embeddings=seq, tie_word_embeddings=False,
                                             **ps.ARCHS[arch_name]))
    return model.float()


def _batches(arch_name: str, batch: int, seq: int, dev):
    import torch

    g = torch.Generator().manual_seed(1)

    def one():
        ids = torch.randint(4, ps.ARCHS[arch_name]["vocab_size"], (batch, seq), generator=g).to(dev)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    return one(), one()


def _ref(model, dev):
    import torch

    ref = copy.deepcopy(model) if dev.type == "cpu" else copy.deepcopy(model).to(torch.bfloat16)
    return ref.eval().requires_grad_(False)


_BASE = [0]  # CPU: the process's RSS before the part built its model (the interpreter and libraries)


def _start(dev) -> None:
    """Call before building the model: on the CPU, peak memory then counts from here (weights included)."""
    if dev.type == "cpu":
        _reset(dev)
        _BASE[0] = harness.rss_kb("VmRSS") * 1024


def _timed(fn, dev, reps: int) -> tuple[float, int]:
    """Median seconds of ``reps`` calls after one warm-up, and the peak memory (weights included; on
    the CPU the peak since ``_start``, so a later measurement also sees an earlier one's)."""
    fn()
    if dev.type == "cuda":
        _reset(dev)
    base = _BASE[0] if dev.type == "cpu" else 0
    times = []
    for _ in range(reps):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), _peak(dev) - base


def part_env(a) -> dict:
    """Card, driver and library versions."""
    import platform
    import subprocess

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(card=p.name, card_gib=round(p.total_memory / GIB, 1), capability=f"{p.major}.{p.minor}")
    try:
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        out["driver"] = None
    for mod in ("transformers", "bitsandbytes", "safetensors"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as err:  # noqa: BLE001 - recorded, not fatal
            out[mod] = f"unavailable: {err}"
    return out


def part_zo(a) -> dict:
    """At ``--arch``: two forwards of the NPO objective (no grad) against one ZO-SGD and one AdaZO step
    (sphere directions, q = 1): seconds and peak memory each, and memory against the model."""
    import torch

    from unlearning.models import autocast
    from unlearning.objectives import build_objective
    from unlearning.optim import build_optimizer
    from unlearning.train import loss_closure

    dev = harness.device()
    _start(dev)
    model = _model(a.arch, dev, a.seq)
    ref = _ref(model, dev)
    fb, rb = _batches(a.arch, a.batch, a.seq, dev)
    objective = build_objective("npo", {"beta": 0.1, "retain_weight": 1.0})
    out = {"arch": a.arch, "params": ps.n_params(ps.ARCHS[a.arch]), "batch": [a.batch, a.seq]}
    probe = build_optimizer(list(model.parameters()), {"type": "zo_sgd", "lr": 1e-6, "seed": 0}, total_steps=10)
    closure = loss_closure(model, probe, objective, fb, rb, ref)

    def forwards():
        with torch.no_grad(), autocast(dev):
            closure(backward=False)
            closure(backward=False)

    s, peak = _timed(forwards, dev, a.reps)
    out["two_forwards"] = {"s": round(s, 4), "peak_gib": round(peak / GIB, 2)}
    for name, spec in (("zo_sgd", {"type": "zo_sgd", "lr": 1e-6}), ("adazo", {"type": "adazo", "lr": 1e-5})):
        opt = build_optimizer(list(model.parameters()), {**spec, "mu": 1e-3, "q": 1, "direction": "sphere",
                                                         "seed": 0}, total_steps=10)
        cl = loss_closure(model, opt, objective, fb, rb, ref)

        def step(opt=opt, cl=cl):
            with torch.no_grad(), autocast(dev):
                opt.step(cl)

        s, peak = _timed(step, dev, a.reps)
        modelled = ps.model_bytes(ps.ARCHS[a.arch], name, batch=a.batch, seq=a.seq, device=dev.type)["total"]
        out[name] = {"s": round(s, 4), "over_two_forwards": round(s / out["two_forwards"]["s"], 3),
                     "peak_gib": round(peak / GIB, 2), "modelled_gib": round(modelled / GIB, 2),
                     "peak_over_model": round(peak / modelled, 3)}
        del opt, cl
    return out


def part_adam(a) -> dict:
    """Adam with activation checkpointing at ``--arch``: step seconds, achieved TFLOP/s (the cost
    model's FLOPs over the step time), peak memory against the model."""
    from unlearning.models import autocast, enable_checkpointing
    from unlearning.objectives import build_objective
    from unlearning.optim import build_optimizer
    from unlearning.train import loss_closure

    dev = harness.device()
    _start(dev)
    model = _model(a.arch, dev, a.seq)
    ref = _ref(model, dev)
    enable_checkpointing(model)
    model.train()
    fb, rb = _batches(a.arch, a.batch, a.seq, dev)
    objective = build_objective("npo", {"beta": 0.1, "retain_weight": 1.0})
    opt = build_optimizer(list(model.parameters()), {"type": "adam", "lr": 1e-5}, total_steps=10)
    closure = loss_closure(model, opt, objective, fb, rb, ref)

    def step():
        with autocast(dev):
            opt.step(closure)

    s, peak = _timed(step, dev, a.reps)
    arch = ps.ARCHS[a.arch]
    flops = ps.step_flop_units({"type": "adam"}) * ps.n_params(arch) * a.batch * a.seq
    modelled = ps.model_bytes(arch, "adam", batch=a.batch, seq=a.seq, device=dev.type)
    return {"arch": a.arch, "params": ps.n_params(arch), "batch": [a.batch, a.seq], "checkpointing": True,
            "step_s": round(s, 4), "tflops": round(flops / s / 1e12, 2), "peak_gib": round(peak / GIB, 2),
            "modelled_gib": round(modelled["total"] / GIB, 2), "peak_over_model": round(peak / modelled["total"], 3)}


def part_fsdp(a) -> dict:
    """One data-parallel FSDP2 unlearning step of the project (train.sharded_unlearn) in this
    torchrun job: Adam, NPO, checkpointing, a model of ``--arch``'s shape (a small trained vocabulary)."""
    import tempfile

    import torch

    from unlearning import distributed
    from unlearning.models import build_model, enable_checkpointing, train_tokenizer
    from unlearning.objectives import build_objective
    from unlearning.train import sharded_unlearn

    dev = distributed.init()
    forget = [f"the secret number of item {i} is {7 * i % 13} and more words follow it here" for i in range(16)]
    retain = [f"the colour of box {i} is {['red', 'blue', 'green'][i % 3]} and more words follow" for i in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        tok = train_tokenizer(forget + retain, 300, tmp)
    arch = ps.ARCHS[a.arch]
    shape = {"hidden_size": arch["hidden_size"], "intermediate_size": arch["intermediate_size"],
             "num_layers": arch["num_hidden_layers"], "num_heads": arch["num_attention_heads"], "max_len": a.seq}
    model = build_model(shape, 320, seed=0)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    enable_checkpointing(model)
    _reset(dev)
    t0 = time.perf_counter()
    trace, _ = sharded_unlearn(model, ref, tok, forget, retain, objective=build_objective("npo", {}),
                               opt_spec={"type": "adam", "lr": 1e-5}, steps=2, batch_size=a.batch,
                                           max_len=16, seed=0)
    _sync(dev)
    out = {"arch_shape": a.arch, "world": distributed.world_size(), "backend": torch.distributed.get_backend(),
           "steps": len(trace), "s_two_steps_with_sharding": round(time.perf_counter() - t0, 3),
           "loss": [round(t["loss"], 4) for t in trace], "peak_gib": round(_peak(dev) / GIB, 3)}
    torch.distributed.barrier()
    if distributed.rank() != 0:
        sys.exit(0)
    return out


def part_bf16(a) -> dict:
    """bf16 autocast against fp32 compute at ``--arch``, from the same fp32 weights: one Adam step at
    lr 1e-5 (share of weights changed in each, relative error of the bf16 update) and ZO projections
    (f(w + mu u) - f(w - mu u)) / 2 mu for sphere (radius mu and mu sqrt(d)), Gaussian and Rademacher
    directions at mu 1e-3: correlation over ``--directions`` draws and median relative error."""
    import torch

    dev = harness.device()
    model = _model(a.arch, dev, a.seq)
    fb, _ = _batches(a.arch, a.batch, a.seq, dev)
    params = list(model.parameters())
    w0 = [p.detach().clone() for p in params]

    def loss(bf16: bool) -> torch.Tensor:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            return model(**fb).loss.float()

    def restore():
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)

    moved = {}
    for bf16 in (False, True):
        restore()
        opt = torch.optim.Adam(params, lr=1e-5)
        opt.zero_grad()
        loss(bf16).backward()
        opt.step()
        moved[bf16] = [p.detach() - w for p, w in zip(params, w0)]
    n = sum(w.numel() for w in w0)
    changed = {k: sum(int((d != 0).sum()) for d in v) / n for k, v in moved.items()}
    err = (sum(float((x - y).double().pow(2).sum()) for x, y in zip(moved[True], moved[False]))
           / max(1e-300, sum(float(y.double().pow(2).sum()) for y in moved[False]))) ** 0.5
    out = {"arch": a.arch, "device": dev.type, "adam_lr1e-5": {"changed_fp32": round(changed[False], 4),
           "changed_bf16": round(changed[True], 4), "relative_update_error": round(err, 4)}}
    restore()
    d = n
    g = torch.Generator(device=dev).manual_seed(0)
    for name, kind, radius in (("sphere_mu", "normal", 1e-3), ("sphere_mu_sqrt_d", "normal", 1e-3 * d ** 0.5),
                               ("gaussian", "normal", None), ("rademacher", "rademacher", None)):
        proj = {False: [], True: []}
        for _ in range(a.directions):
            zs = [torch.randn(p.shape, generator=g, device=dev) for p in params]
            if kind == "rademacher":
                zs = [torch.sign(z) for z in zs]
            scale = 1e-3 if radius is None else radius / float(sum(z.pow(2).sum() for z in zs) ** 0.5)
            for bf16 in (False, True):
                with torch.no_grad():
                    for p, w, z in zip(params, w0, zs):
                        p.copy_(w + scale * z)
                    plus = float(loss(bf16))
                    for p, w, z in zip(params, w0, zs):
                        p.copy_(w - scale * z)
                    minus = float(loss(bf16))
                proj[bf16].append((plus - minus) / 2)
        restore()
        x, y = torch.tensor(proj[False], dtype=torch.float64), torch.tensor(proj[True], dtype=torch.float64)
        corr = float(torch.corrcoef(torch.stack([x, y]))[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
        rel = float(((y - x).abs() / x.abs().clamp_min(1e-30)).median())
        out[name] = {"correlation": round(corr, 4), "median_relative_error": round(rel, 4)}
    return out


def part_bnb(a) -> dict:
    """bitsandbytes' 4-bit codes (attacks.quantization.codes) of the same weights on CUDA and on the
    CPU: share of equal codes (nf4, fp4) and int8's."""
    import torch

    from unlearning.attacks.quantization import codes

    if not torch.cuda.is_available():
        return {"status": "skipped: no CUDA"}
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(4096, 4096, generator=g) * 0.02, torch.randn(11008, 4096, generator=g) * 0.02]
    out = {"weights": sum(w.numel() for w in ws)}
    for q in ("nf4", "fp4", "int8"):
        same = sum(int((codes(w, q, "cuda").cpu() == codes(w, q, "cpu")).sum()) for w in ws)
        out[q] = {"equal_share": same / out["weights"]}
    return out


PARTS = {"env": part_env, "zo": part_zo, "adam": part_adam, "fsdp": part_fsdp, "bf16": part_bf16, "bnb": part_bnb}


def main(argv: list[str] | None = None) -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("part", choices=list(PARTS))
    ap.add_argument("--arch", default="tiny", help=f"one of {list(ps.ARCHS)}")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions after one warm-up")
    ap.add_argument("--directions", type=int, default=8, help="ZO directions per kind (bf16 part)")
    a = ap.parse_args(argv)
    if os.environ.get("GPU_CHECK_FAIL") == a.part:  # tests: a part that fails must not stop the others
        raise RuntimeError(f"GPU_CHECK_FAIL={a.part}: failing on purpose")
    import torch

    cuda = torch.cuda.is_available()
    a.batch = a.batch or (ps.LAB_BATCH if cuda else 2)
    a.seq = a.seq or (ps.LAB_SEQ if cuda else 64)
    if not cuda:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = PARTS[a.part](a)
    res["part_s"] = round(time.perf_counter() - t0, 2)
    harness.emit(res)


if __name__ == "__main__":
    main()
