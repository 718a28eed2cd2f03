"""What each grade's optimizer does on a study's target: Sophia's unclipped share, AdaZO's move per step,
and how far apart the unlearned weights of two entries are; prints JSON lines.

    snakemake --cores 1 results/models/muse/target/seed0      # the default study's MUSE target, seed 0
    python benchmarks/investigations/grade_behaviour.py                      # its sophia, signadam, adam, zo entries
    python benchmarks/investigations/grade_behaviour.py --method npo --entries sophia signadam
    python benchmarks/investigations/grade_behaviour.py --spec old='{"type": "sophia", "lr": 3e-4, "hess_scale": 1.0}'

Each entry unlearns the benchmark's target with the config's method, unlearning steps, batch size and
seed (nothing is saved); one line per entry gives the per-step statistics of the trace (Sophia's
``unclipped``, AdaZO's ``move_over_lr``: first five, mean, min, max), then one line per pair the
weight distances of unlearning.weight_distance (``rel_distance`` relative to the first entry's move).
The numbers of issue 17 came from this measurement on the default study's MUSE target.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    harness.add_study(p, ROOT)
    p.add_argument("--entries", nargs="*", default=["sophia", "signadam", "adam", "zo"],
                   help="optimizer entries of the config")
    p.add_argument("--spec", nargs="*", default=[], help="name=JSON optimizer spec, in addition")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import torch
    import yaml

    from unlearning.config import validate
    from unlearning.models import load_model, load_tokenizer
    from unlearning.objectives import build_objective
    from unlearning.stages.common import forget_retain
    from unlearning.train import seed_everything, unlearn
    from unlearning.weight_distance import distance

    torch.set_num_threads(1)
    cfg = validate(yaml.safe_load(Path(a.configfile).read_text()))
    kind = cfg["benchmarks"][a.bench]["kind"]
    target_dir = Path(a.results) / "models" / a.bench / "target" / f"seed{a.seed}"
    tok, target = load_tokenizer(target_dir), load_model(target_dir)
    forget, retain = forget_retain(Path(a.results) / "data" / a.bench, kind)
    method = dict(cfg["methods"][a.method])
    lr_scale = float(method.pop("lr_scale", 1.0))
    specs = {e: dict(cfg["optimizers"][e]) for e in a.entries}
    specs.update({k: json.loads(v) for k, v in (s.split("=", 1) for s in a.spec)})
    start = {k: v.detach().clone() for k, v in target.state_dict().items()}
    weights = {}
    for name, spec in specs.items():
        spec.pop("steps", None)
        if "lr" in spec:
            spec["lr"] *= lr_scale
        if spec["type"] in ("adazo", "zo_sgd", "rs"):
            spec.setdefault("seed", a.seed)
        seed_everything(a.seed)
        model = copy.deepcopy(target)
        objective = build_objective(method["objective"], {k: v for k, v in method.items() if k != "objective"})
        ref = copy.deepcopy(target).eval() if objective.needs_ref else None
        trace = unlearn(model, tok, forget, retain, objective=objective, opt_spec=spec,
                        steps=cfg["unlearning"]["steps"], batch_size=cfg["unlearning"]["batch_size"],
                        max_len=cfg["model"]["max_len"], seed=a.seed, ref=ref)
        weights[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rec = {"entry": name, "spec": spec, "final_loss": trace[-1]["loss"]}
        for key in ("unclipped", "move_over_lr"):
            vals = [t[key] for t in trace if key in t]
            if vals:
                rec[key] = {"first5": [round(v, 4) for v in vals[:5]], "mean": sum(vals) / len(vals),
                            "min": min(vals), "max": max(vals)}
        harness.emit(rec)
    names = list(weights)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            harness.emit({"pair": [x, y], **distance(weights[x], weights[y], start)})


if __name__ == "__main__":
    main()
