"""What `unlearning.chunking` changes on a study's data: examples and tokens per epoch, and the
unlearned model's forget NLL and KnowMem; prints JSON lines.

    snakemake --cores 1 results/models/muse/target/seed0   # the default study's MUSE target, seed 0
    python benchmarks/investigations/chunking.py                       # graddiff + adam, the config's steps and batch

For each chunking (truncate, concat): forget and retain examples, trained tokens per epoch (non-pad),
steps per epoch at the config's batch size; then unlearning of the target with the config's method
and optimizer entry for the config's steps, and the mean per-token forget NLL (each forget document
scored whole, as in training under truncate) with KnowMem_f / KnowMem_r (the config's prompt).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    harness.add_study(p, ROOT)
    p.add_argument("--entry", default="adam")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import torch
    import yaml

    from unlearning.config import validate
    from unlearning.data.chunking import examples, steps_per_epoch
    from unlearning.data.io import load_split
    from unlearning.eval.muse import knowmem
    from unlearning.models import load_model, load_tokenizer
    from unlearning.objectives import build_objective
    from unlearning.stages.common import forget_retain
    from unlearning.train import encode, seed_everything, unlearn

    cfg = validate(yaml.safe_load(Path(a.configfile).read_text()))
    res = Path(a.results)
    data, target = res / "data" / a.bench, res / "models" / a.bench / "target" / f"seed{a.seed}"
    tok = load_tokenizer(target)
    base = load_model(target)
    max_len, run, ev = cfg["model"]["max_len"], cfg["unlearning"], cfg["evaluation"]
    forget, retain = forget_retain(data, "muse")
    method = dict(cfg["methods"][a.method])
    lr_scale = float(method.pop("lr_scale", 1.0))
    spec = dict(cfg["optimizers"][a.entry])
    spec.pop("grade", None)
    spec["lr"] = spec["lr"] * lr_scale

    def forget_nll(model) -> float:
        tot, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(forget), 16):
                b = encode(tok, forget[i:i + 16], max_len, next(model.parameters()).device)
                k = int((b["labels"][:, 1:] != -100).sum())
                tot += model(**b).loss.item() * k
                n += k
        return tot / n

    def km(model, which: str) -> float:
        qa = load_split(data, "muse", f"knowmem/{which}_qa.jsonl")[: ev["max_questions"] or None]
        icl = load_split(data, "muse", f"knowmem/{which}_qa_icl.jsonl")
        return knowmem(model, tok, qa, icl, max_new_tokens=ev["knowmem_max_new_tokens"],
                       batch_size=ev["batch_size"], answer_space=ev["knowmem_answer_space"])

    harness.emit({"model": "target", "forget_nll": forget_nll(base), "knowmem_f": km(base, "forget"),
                      "knowmem_r": km(base, "retain")})
    for chunking in ("truncate", "concat"):
        fx, rx = examples(tok, forget, max_len, chunking), examples(tok, retain, max_len, chunking)
        row = {"chunking": chunking, "forget_documents": len(forget), "forget_examples": len(fx),
               "forget_tokens": sum(map(len, fx)), "retain_examples": len(rx), "retain_tokens": sum(map(len, rx)),
               "steps_per_epoch": steps_per_epoch(len(fx), run["batch_size"]), "steps": run["steps"],
               "epochs": run["steps"] / steps_per_epoch(len(fx), run["batch_size"]),
               "forget_tokens_per_step": sum(map(len, fx)) / len(fx) * run["batch_size"]}
        seed_everything(a.seed)
        model = copy.deepcopy(base)
        objective = build_objective(method["objective"], {k: v for k, v in method.items() if k != "objective"})
        t0 = time.time()
        unlearn(model, tok, forget, retain, objective=objective, opt_spec=spec, steps=run["steps"],
                batch_size=run["batch_size"], max_len=max_len, seed=a.seed, chunking=chunking)
        row.update({"seconds": round(time.time() - t0, 1), "forget_nll": forget_nll(model),
                    "knowmem_f": km(model, "forget"), "knowmem_r": km(model, "retain")})
        harness.emit(row)


if __name__ == "__main__":
    main()
