"""Sophia's clipped share on the paper-shaped local run, and how close it comes to signAdam; prints JSON.

    python benchmarks/investigations/sophia_clipping.py                         # rho 0.04 (the paper configs') and 20
    python benchmarks/investigations/sophia_clipping.py --rho 0.04 5 20 100 --refresh before_update

The paper-shaped local run (tests/test_paper_shaped.py): configs/paper-muse-news.yaml on local stand-ins,
a small Llama-2-architecture model (unlearning.bench.llama_style, randomly initialised as that test's target) and
the hub-layout MUSE-News fixture, with the config's protocol (GradDiff, batch 4, concat chunking, 10
epochs) at the test's max_len 48. Sophia is the config's entry (lr 1e-5, betas (0.9, 0.95), k 10, GNB,
hess_scale tokens, clipping at 1.0, SophiaG's refresh order) at each ``--rho``; signAdam the config's
entry with Sophia's lr (its beta1 0.9 equals Sophia's). Per rho: the share of coordinates whose ratio
|m| / (rho * tokens * h) is below 1 (``unclipped``, SophiaG's win rate, among coordinates that have had a
gradient) at every step, and the share of weights bit-identical to signAdam's after the same steps.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[2]

FIX = ROOT / "tests" / "fixtures" / "hub"
# tests/test_paper_shaped.py's stand-in tokenizer corpus and model
CORPUS = [f"the lighthouse of Varn{i} was painted blue in spring; question {i}: what colour? answer: blue"
          for i in range(50)] + ["The following are multiple choice questions (with answers) about biology."]
MAX_LEN = 48


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument("--rho", type=float, nargs="+", default=[0.04, 20.0])
    p.add_argument("--refresh", default="after_update", choices=["after_update", "before_update"])
    p.add_argument("--method", default="graddiff", choices=["graddiff", "npo"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import torch
    import yaml

    from unlearning.bench.llama_style import llama_snapshot, llama_style_tokenizer
    from unlearning.config import validate
    from unlearning.data.chunking import examples, steps_per_epoch
    from unlearning.models import load_model, load_tokenizer
    from unlearning.objectives import build_objective
    from unlearning.stages.common import forget_retain
    from unlearning.stages.data import prepare_data
    from unlearning.train import seed_everything, unlearn

    torch.set_num_threads(1)
    cfg = validate(yaml.safe_load((ROOT / "configs" / "paper-muse-news.yaml").read_text()))
    tmp = Path(tempfile.mkdtemp())
    snap = llama_snapshot(tmp / "target", llama_style_tokenizer(CORPUS, 300), seed=0)
    tok, target = load_tokenizer(snap), load_model(snap, dev=torch.device("cpu"))
    prepare_data({"kind": "muse", "source": str(FIX / "MUSE-News"), "dataset": "muse-news"}, tmp / "data")
    forget, retain = forget_retain(tmp / "data", "muse")
    run = cfg["unlearning"]
    per_epoch = steps_per_epoch(len(examples(tok, forget, MAX_LEN, run["chunking"])), run["batch_size"])
    steps = round(run["epochs"] * per_epoch)
    method = {k: v for k, v in cfg["methods"][a.method].items() if k != "lr_scale"}

    def run_entry(spec: dict) -> tuple[list[dict], dict]:
        seed_everything(a.seed)
        model = copy.deepcopy(target)
        objective = build_objective(method["objective"], {k: v for k, v in method.items() if k != "objective"})
        ref = copy.deepcopy(target).eval() if objective.needs_ref else None
        trace = unlearn(model, tok, forget, retain, objective=objective, opt_spec=dict(spec), steps=steps,
                        batch_size=run["batch_size"], max_len=MAX_LEN, seed=a.seed, ref=ref,
                        chunking=run["chunking"])
        return trace, {k: v.detach().clone() for k, v in model.named_parameters()}

    sophia = dict(cfg["optimizers"]["sophia"], hessian_refresh=a.refresh)
    sophia.pop("steps", None)
    signadam = dict(cfg["optimizers"]["signadam"], lr=sophia["lr"])
    _, w_sign = run_entry(signadam)
    header = {"run": "paper-shaped (tests/test_paper_shaped.py stand-ins, configs/paper-muse-news.yaml)",
              "method": a.method, "steps": steps, "steps_per_epoch": per_epoch, "batch_size": run["batch_size"],
              "max_len": MAX_LEN, "sophia": sophia, "signadam": signadam,
              "params": sum(v.numel() for v in w_sign.values())}
    harness.emit(header)
    for rho in a.rho:
        trace, w = run_entry(dict(sophia, rho=rho))
        shares = [t.get("unclipped") for t in trace]
        same = sum(int((w[k] == w_sign[k]).sum()) for k in w)
        total = sum(v.numel() for v in w.values())
        refreshed = [s for s in shares[sophia["k"]:] if s is not None] if a.refresh == "after_update" else \
            [s for s in shares if s is not None]
        harness.emit({"rho": rho, "unclipped_per_step": [round(s, 5) if s is not None else None for s in shares],
                          "unclipped_mean_with_h": sum(refreshed) / len(refreshed) if refreshed else None,
                          "bit_identical_to_signadam": same / total})


if __name__ == "__main__":
    main()
