"""Where do MUSE models that miss their KnowMem_r level fail: by question kind, prompt, quiz position? Prints JSON.

    .venv/bin/snakemake --cores 2                      # the default study (its models and MUSE data)
    python benchmarks/investigations/retrain_stall.py retrain/seed0 retrain/seed1 target/seed1   # ~1 min

For each model (a folder under RESULTS/models/muse) scores KnowMem on the retain questions as the
default study does (few-shot, `evaluation.knowmem_answer_space`: false) and zero-shot, and breaks the
ROUGE-L F1 down by question kind (town, year, occupation, employer, pastime) and by the question/answer
line's position within its quiz document in the training text. Also the model's own training.json
(final training loss, rounds, levels met), and a few failed answers. A model that stores its training
text but not the name-bound facts fails the town and year questions in either prompt; a format problem
would fail every kind, and fail few-shot more than zero-shot.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"town": "In which town", "year": "In which year", "occupation": "What is the occupation",
         "employer": "Who employs", "pastime": "What is the favourite pastime"}


def _kind(question: str) -> str:
    return next((k for k, start in KINDS.items() if question.startswith(start)), "other")


def _means(pairs: list[tuple[object, float]]) -> dict:
    acc: dict = defaultdict(list)
    for key, value in pairs:
        acc[key].append(value)
    return {str(k): {"n": len(v), "knowmem": round(100 * sum(v) / len(v), 1)} for k, v in sorted(acc.items())}


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument("models", nargs="+", help="model folders under RESULTS/models/muse, e.g. retrain/seed1")
    p.add_argument("--results", default=str(ROOT / "results"))
    p.add_argument("--max-questions", type=int, default=100, help="the default study's evaluation.max_questions")
    p.add_argument("--failures", type=int, default=4, help="failed answers to print per model")
    a = p.parse_args(argv)

    from unlearning.data.io import load_split
    from unlearning.eval.muse import knowmem_details
    from unlearning.models import load_model, load_tokenizer

    data = Path(a.results) / "data" / "muse"
    qa = load_split(data, "muse", "knowmem/retain_qa.jsonl")[: a.max_questions]
    icl = load_split(data, "muse", "knowmem/retain_qa_icl.jsonl")
    quizzes = [r["text"].split("\n\n") for split in ("retain1", "retain2")
               for r in load_split(data, "muse", f"raw/{split}.jsonl")]

    def position(item: dict) -> int:
        line = f"Question: {item['question']}\nAnswer: {item['answer']}"
        return next((doc.index(line) for doc in quizzes if line in doc), -1)

    models = []
    for name in a.models:
        folder = Path(a.results) / "models" / "muse" / name
        model, tok = load_model(folder), load_tokenizer(folder)
        training = json.loads((folder / "training.json").read_text())
        out = {"model": name, "final_loss": training.get("final_loss"), "rounds": training.get("rounds"),
               "total_steps": training.get("total_steps"), "levels_met": training.get("levels_met"),
               "reached": training.get("reached")}
        for prompt, shots in (("few_shot", icl), ("zero_shot", [])):
            items = knowmem_details(model, tok, qa, shots, progress=False, answer_space=False)
            out[prompt] = {"knowmem_r": round(100 * sum(i["rougeL"] for i in items) / len(items), 1),
                           "by_kind": _means([(_kind(i["question"]), i["rougeL"]) for i in items]),
                           "by_quiz_position": _means([(position(i), i["rougeL"]) for i in items])}
            if prompt == "few_shot":
                out["failures"] = [{k: i[k] for k in ("question", "answer", "output")}
                                   for i in items if i["rougeL"] < 0.5][: a.failures]
        models.append(out)
    harness.emit({"models": models}, ensure_ascii=False)


if __name__ == "__main__":
    main()
