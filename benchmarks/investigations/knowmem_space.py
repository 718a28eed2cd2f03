"""How much MUSE's trailing space in "Answer: " moves KnowMem on a Llama-style tokenizer; prints JSON.

    snakemake --cores 1 results/models/muse/target     # builds results/data/muse (the default study's)
    python benchmarks/investigations/knowmem_space.py                 # ~5 min on 2 CPU cores

Trains a Llama-style tokenizer (sentencepiece-like BPE, byte fallback, the word marker "▁";
unlearning.bench.llama_style) on the default study's MUSE training corpus, fits a target with the default
study's architecture and training settings (config.yaml), and scores KnowMem_f and KnowMem_r with
the prompt ending "Answer: " (MUSE's) and "Answer:". Also prints how each tokenizer ends the prompt.
"""

from __future__ import annotations

import time
from pathlib import Path

from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    p.add_argument("--data", default=str(ROOT / "results" / "data" / "muse"))
    p.add_argument("--byte-level-tokenizer", default=str(ROOT / "results" / "models" / "muse" / "tokenizer"))
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    p.add_argument("--max-questions", type=int, default=None)
    a = p.parse_args(argv)

    import yaml

    from unlearning.bench.llama_style import llama_style_tokenizer
    from unlearning.config import validate
    from unlearning.data.io import load_split
    from unlearning.eval.muse import knowmem, knowmem_prompt
    from unlearning.models import build_model, device, load_tokenizer
    from unlearning.stages.common import training_texts
    from unlearning.train import fit_lm, seed_everything

    cfg = validate(yaml.safe_load(Path(a.configfile).read_text()))
    tr, arch, ev = cfg["training"], cfg["model"], cfg["evaluation"]
    texts = training_texts(a.data, "muse", "target")
    tok = llama_style_tokenizer(texts, cfg["tokenizer"]["vocab_size"])
    tok.pad_token = tok.eos_token
    prompt = knowmem_prompt("Where was Zorbin born?")
    ends = {"llama_style": tok.convert_ids_to_tokens(tok(prompt)["input_ids"])[-3:]}
    if Path(a.byte_level_tokenizer).exists():
        bl = load_tokenizer(a.byte_level_tokenizer)
        ends["byte_level"] = bl.convert_ids_to_tokens(bl(prompt)["input_ids"])[-3:]
    harness.emit({"prompt_ends": ends}, ensure_ascii=False)

    seed_everything(tr["seed"])
    model = build_model(arch, len(tok), tr["seed"]).to(device())
    steps = a.steps or tr["steps"]
    t0 = time.time()
    trace = fit_lm(model, tok, texts, steps=steps, lr=tr["lr"], batch_size=tr["batch_size"],
                   max_len=arch["max_len"], seed=tr["seed"], warmup=tr["warmup"], schedule=tr["schedule"])
    cap = a.max_questions if a.max_questions is not None else ev["max_questions"]
    out = {"tokenizer": "llama_style", "vocab": len(tok), "steps": steps, "final_loss": trace[-1],
           "train_seconds": round(time.time() - t0, 1)}
    for which in ("forget", "retain"):
        qa = load_split(a.data, "muse", f"knowmem/{which}_qa.jsonl")
        qa = qa[:cap] if cap else qa
        icl = load_split(a.data, "muse", f"knowmem/{which}_qa_icl.jsonl")
        for space in (True, False):
            out[f"knowmem_{which[0]}_{'space' if space else 'nospace'}"] = knowmem(
                model, tok, qa, icl, max_new_tokens=ev["knowmem_max_new_tokens"], batch_size=ev["batch_size"],
                answer_space=space)
    harness.emit(out)


if __name__ == "__main__":
    main()
