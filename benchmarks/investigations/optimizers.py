"""Speed and memory of one unlearning step for every optimizer grade; prints JSON lines.

    python benchmarks/investigations/optimizers.py [--sizes tiny,100m] [--optimizers adam,zo_sgd,...]

For each size and optimizer a fresh subprocess builds a random-init Llama, a fixed forget and retain
batch, and a GradDiff-like closure (-NLL(forget) + NLL(retain); ``gnb=True`` gives the cross-entropy
against labels sampled from the model on the forget batch), then runs ``steps`` optimizer steps.
``step_s`` is the median wall time of the steps after the first (warm-up); ``run_s`` the total of all
steps. Memory: on CPU the kernel's peak-RSS mark (VmHWM) is reset after the model and batches are
built (``/proc/self/clear_refs``), so ``peak_mem_bytes`` = peak RSS during the steps minus the RSS
before them (optimizer state + temporaries + activations; weights excluded) and ``peak_rss_bytes``
is the absolute peak (weights included). On CUDA: torch.cuda.max_memory_allocated, likewise.

``forward`` is a pseudo-optimizer: two closure(backward=False) calls under no_grad (what a q=1 ZO
step evaluates), the reference for the zeroth-order ratios. The summary line per size gives
    zo_mem_ratio       = zo_sgd peak RSS / forward peak RSS          (goal <= 1.05; weights included;
                         zo_mem_ratio_delta: the same on the deltas, weights excluded)
    zo_time_ratio      = zo_sgd step / two forwards                  (goal <= 1.3; Gaussian directions)
    zo_time_ratio_by_direction = the same for each direction kind (gaussian, sphere, rademacher)
    hybrid_time_ratio  = hybrid run / adam run of HYBRID_STEPS steps (paper: ~1)
The time ratios come from one extra process that builds the model once and interleaves the things
compared (two forwards, a ZO step; an Adam run, a hybrid run), taking each one's minimum over
``reps`` rounds, so that load from other processes on a shared machine distorts them least.
Threads: 1 (OMP_NUM_THREADS=1, torch.set_num_threads(1)) so numbers are comparable on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from unlearning.bench import harness

SIZES = {
    # name: (LlamaConfig kwargs, batch, seq_len)
    "tiny": (dict(vocab_size=2048, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=256), 4, 128),
    # 109.5M parameters (tied embeddings); batch 2 x 128 per side to keep the run under ~10 min on one core
    "100m": (dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=2048, tie_word_embeddings=True), 2, 128),
}

ZO_DIRECTIONS = ("gaussian", "sphere", "rademacher")  # zo_time_ratio_by_direction

# what each benchmark entry runs; hyperparameters not given take the constructors' defaults
SPECS = {
    "forward": None,
    "sophia": {"type": "sophia", "k": 1},  # k=1: Hessian (GNB) refreshed every step, the worst case
    "adam": {"type": "adam"},
    "adamw": {"type": "adamw"},
    "sam": {"type": "sam"},
    "rs": {"type": "rs", "n_samples": 3},
    "signsgd": {"type": "signsgd"},
    "signadam": {"type": "signadam"},
    "nbit_adam": {"type": "nbit_adam", "bits": 4},
    "adamw8bit": {"type": "adamw8bit"},
    "zo_sgd": {"type": "zo_sgd", "q": 1},
    "adazo": {"type": "adazo", "q": 1},
    "hybrid": {"type": "hybrid", "n_fo": 1, "n_zo": 1},
}
HYBRID_STEPS = 4  # adam and hybrid run this many steps (FO ZO FO ZO) for hybrid_time_ratio


BATCH_OVERRIDE = os.environ.get("BENCH_BATCH")  # set by --batch for the worker processes


def setup(size: str, device: str):
    """Model, parameters and closure for ``size`` (deterministic)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)

    cfg_kw, batch, seq = SIZES[size]
    if BATCH_OVERRIDE:
        batch = int(BATCH_OVERRIDE)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = LlamaForCausalLM(LlamaConfig(max_position_embeddings=seq, **cfg_kw)).to(dev)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    g = torch.Generator().manual_seed(1)
    forget = torch.randint(0, cfg_kw["vocab_size"], (batch, seq), generator=g).to(dev)
    retain = torch.randint(0, cfg_kw["vocab_size"], (batch, seq), generator=g).to(dev)
    sample_gen = torch.Generator(device=dev).manual_seed(2)

    def zero():
        for p in params:
            p.grad = None

    def closure(backward: bool = True, gnb: bool = False):
        if gnb:
            zero()
            logits = model(input_ids=forget).logits[:, :-1].float().reshape(-1, cfg_kw["vocab_size"])
            with torch.no_grad():
                y = torch.multinomial(torch.softmax(logits, -1), 1, generator=sample_gen).squeeze(-1)
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            return loss.detach()
        if backward:
            zero()
        with torch.set_grad_enabled(backward or torch.is_grad_enabled()):
            loss = -model(input_ids=forget, labels=forget).loss + model(input_ids=retain, labels=retain).loss
        if backward:
            loss.backward()
        return loss.detach()

    closure.batch_tokens = batch * (seq - 1)  # Sophia scales its Hessian by the GNB loss's token count
    return model, params, n_params, closure, (batch, seq)


def two_forwards(closure) -> None:
    import torch
    with torch.no_grad():
        closure(backward=False)
        closure(backward=False)


def worker(size: str, name: str, steps: int, device: str) -> dict:
    import torch

    from unlearning.optim import GRADES, build_optimizer

    dev = torch.device(device)
    model, params, n_params, closure, (batch, seq) = setup(size, device)
    spec = SPECS[name]
    opt = build_optimizer(params, spec, total_steps=steps) if spec is not None else None

    def one_step():
        if opt is None:
            two_forwards(closure)
        else:
            opt.step(closure)

    import gc
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = harness.rss_kb("VmRSS") * 1024
        if not harness.reset_peak_rss():
            raise RuntimeError("cannot reset the peak-RSS mark (/proc/self/clear_refs); CPU memory not measurable")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        one_step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak_abs = torch.cuda.max_memory_allocated()
    else:
        peak_abs = harness.rss_kb("VmHWM") * 1024
    out = {"name": name, "grade": GRADES.get(spec["type"]) if spec else "inference", "size": size,
           "params": n_params, "step_s": round(statistics.median(times[1:] if len(times) > 1 else times), 4),
           "step_min_s": round(min(times[1:] if len(times) > 1 else times), 4),
           "peak_mem_bytes": int(peak_abs - base), "peak_rss_bytes": int(peak_abs), "run_s": round(sum(times), 4),
           "steps": steps, "batch": [batch, seq], "device": str(dev), "spec": spec}
    if name == "hybrid":
        out["phases"] = opt.schedule()
    return out


def ratio_worker(size: str, reps: int, device: str, parts: str) -> dict:
    """Time ratios measured side by side in one process, interleaved, minimum over ``reps`` rounds
    (the minimum is the least disturbed by other load on a shared machine)."""
    import torch

    from unlearning.optim import build_optimizer

    dev = torch.device(device)
    _, params, _, closure, _ = setup(size, device)

    def timed(fn):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    out = {"reps": reps}
    if "zo" in parts:
        # one ZO-SGD per direction kind, interleaved with the two forwards in every round
        zos = {d: build_optimizer(params, dict(SPECS["zo_sgd"], direction=d), total_steps=reps + 1)
               for d in ZO_DIRECTIONS}
        for zo in zos.values():
            zo.step(closure)  # warm-up (and the first-call overheads of the model)
        two_forwards(closure)
        fwd_t, zo_t = [], {d: [] for d in zos}
        for _ in range(reps):
            fwd_t.append(timed(lambda: two_forwards(closure)))
            for d, zo in zos.items():
                zo_t[d].append(timed(lambda zo=zo: zo.step(closure)))
        out.update(forward2_s=min(fwd_t), zo_sgd_s=min(zo_t["gaussian"]))
        out.update({f"zo_sgd_{d}_s": min(t) for d, t in zo_t.items()})
    if "hybrid" not in parts:
        return out

    def run(spec):
        opt = build_optimizer(params, spec, total_steps=HYBRID_STEPS)
        for _ in range(HYBRID_STEPS):
            opt.step(closure)

    adam_t, hyb_t = [], []
    for _ in range(max(1, reps // 3)):
        adam_t.append(timed(lambda: run(SPECS["adam"])))
        hyb_t.append(timed(lambda: run(SPECS["hybrid"])))
    out.update(adam_run_s=min(adam_t), hybrid_run_s=min(hyb_t))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--sizes", default="tiny,100m", help=f"comma list of {list(SIZES)}")
    ap.add_argument("--optimizers", default=",".join(SPECS), help=f"comma list of {list(SPECS)}")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per optimizer, the first a warm-up (default: tiny 6, 100m 2)")
    ap.add_argument("--reps", type=int, default=None, help="rounds of the ratio measurement (default: tiny 9, 100m 3)")
    ap.add_argument("--batch", type=int, default=None, help="sequences per forget/retain batch (default: per size)")
    harness.add_device(ap)
    ap.add_argument("--worker", nargs=2, metavar=("SIZE", "OPTIMIZER"), help=argparse.SUPPRESS)
    ap.add_argument("--ratio-worker", nargs=2, metavar=("SIZE", "PARTS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.device = args.device or harness.device().type
    if args.worker:
        harness.emit(worker(args.worker[0], args.worker[1], args.steps, args.device))
        return
    if args.ratio_worker:
        harness.emit(ratio_worker(args.ratio_worker[0], args.reps, args.device, args.ratio_worker[1]))
        return
    sizes = [s for s in args.sizes.split(",") if s]
    names = [n for n in args.optimizers.split(",") if n]
    for s in sizes:
        if s not in SIZES:
            sys.exit(f"unknown size {s!r}; known: {list(SIZES)}")
    for n in names:
        if n not in SPECS:
            sys.exit(f"unknown optimizer {n!r}; known: {list(SPECS)}")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if args.batch:
        env["BENCH_BATCH"] = str(args.batch)
    me = os.path.abspath(__file__)

    def sub(cmd):
        proc = subprocess.run([sys.executable, me, *cmd, "--device", args.device], env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])

    for size in sizes:
        steps = args.steps or {"tiny": 6, "100m": 2}[size]
        reps = args.reps or {"tiny": 9, "100m": 3}[size]
        res = {}
        for name in names:
            rec = sub(["--worker", size, name, "--steps", str(steps)])
            if "error" in rec:
                rec = {"name": name, "size": size, **rec}
            else:
                res[name] = rec
            harness.emit(rec)
        summary = {"summary": True, "size": size}
        if "zo_sgd" in res and "forward" in res:
            z, f = res["zo_sgd"], res["forward"]
            summary["zo_mem_ratio"] = round(z["peak_rss_bytes"] / f["peak_rss_bytes"], 4)
            summary["zo_mem_ratio_delta"] = round(z["peak_mem_bytes"] / max(f["peak_mem_bytes"], 1), 4)
        parts = ",".join(p for p, need in (("zo", {"zo_sgd", "forward"}), ("hybrid", {"adam", "hybrid"}))
                         if need <= set(names))
        if parts:
            r = sub(["--ratio-worker", size, parts, "--reps", str(reps)])
            if "error" in r:
                summary["ratio_error"] = r["error"]
            else:
                if "zo_sgd_s" in r:
                    summary["zo_time_ratio"] = round(r["zo_sgd_s"] / r["forward2_s"], 4)
                    summary["zo_time_ratio_by_direction"] = {
                        d: round(r[f"zo_sgd_{d}_s"] / r["forward2_s"], 4) for d in ZO_DIRECTIONS}
                if "hybrid_run_s" in r:
                    summary["hybrid_time_ratio"] = round(r["hybrid_run_s"] / r["adam_run_s"], 4)
                    summary["hybrid_steps"] = HYBRID_STEPS
                summary["timings_s"] = {k: round(v, 4) for k, v in r.items() if k.endswith("_s")}
                summary["reps"] = reps
        summary["batch"] = [args.batch or SIZES[size][1], SIZES[size][2]]
        harness.emit(summary)


if __name__ == "__main__":
    main()
