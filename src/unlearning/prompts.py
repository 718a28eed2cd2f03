"""Prompt templates shared by data generation and evaluation (torch-free, so the data stage does not
depend on the metric modules)."""

from __future__ import annotations

from typing import Sequence

LETTERS = ("A", "B", "C", "D")

# The subject lm-eval's task files (lm_eval/tasks/wmdp/wmdp_*.yaml) name in each WMDP subset's prompt.
WMDP_SUBJECTS = {"wmdp-bio": "biology", "wmdp-cyber": "cybersecurity", "wmdp-chem": "chemistry"}


def mc_subject(bench: dict) -> str:
    """The multiple-choice prompt subject of a benchmark entry: its WMDP subset's (lm-eval's), else
    its own ``subject`` (the synthetic world)."""
    dataset = bench.get("dataset")
    if dataset in WMDP_SUBJECTS:
        return WMDP_SUBJECTS[dataset]
    return bench["subject"]


def mc_prompt(question: str, choices: Sequence[str], subject: str) -> str:
    """lm-eval's zero-shot multiple-choice prompt (MMLU and WMDP task files), up to "Answer:"."""
    subject = subject.replace("_", " ")
    body = question.strip() + "".join(f"\n{l}. {c}" for l, c in zip(LETTERS, choices))
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n{body}\nAnswer:"
