"""Every number in configs/paper-*.yaml says where it comes from: `paper`, `lab (<repository> <file>)`
or `ours`, in a comment on its line."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT

PAPER_CONFIGS = sorted((ROOT / "configs").glob("paper-*.yaml"))
LABEL = re.compile(r"\bpaper\b|\bours\b|\blab \([\w.-]+/[\w.-]+ [^)]+\)")
# A number as a YAML scalar: not part of a word, a name or a path (int8, zephyr-7b, seed0, 1e-5 ok).
NUMBER = re.compile(r"(?<![\w.\-/])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.\-/])")


def _code(line: str) -> str:
    """The line without its comment and quoted strings."""
    line = re.sub(r'"[^"]*"|\'[^\']*\'', '""', line)
    return line.split("#", 1)[0]


def numbers_per_line(text: str) -> list[tuple[int, str, int]]:
    """(line number, line, count of numeric scalars) for each line holding a number."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        n = len(NUMBER.findall(_code(line)))
        if n:
            out.append((i, line, n))
    return out


def numeric_leaves(obj) -> int:
    if isinstance(obj, bool):
        return 0
    if isinstance(obj, (int, float)):
        return 1
    if isinstance(obj, dict):
        return sum(numeric_leaves(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(numeric_leaves(v) for v in obj)
    return 0


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.name)
def test_every_number_carries_a_source_label(path):
    text = path.read_text()
    found = numbers_per_line(text)
    # the line scanner sees every number YAML sees (so a number cannot hide from the label check)
    assert sum(n for _, _, n in found) == numeric_leaves(yaml.safe_load(text))
    missing = [f"{path.name}:{i}: {line.strip()}" for i, line, _ in found
               if "#" not in line or not LABEL.search(line.split("#", 1)[1])]
    assert not missing, "numbers without a `paper` / `lab (<repo> <file>)` / `ours` label:\n" + "\n".join(missing)


def test_the_label_check_fails_on_an_unlabelled_number():
    text = "optimizers:\n  adam: {type: adam, lr: 1.0e-5}\n  sam: {type: sam, rho: 0.01}   # lab (A/B run.sh)\n"
    unlabelled = [i for i, line, _ in numbers_per_line(text)
                  if "#" not in line or not LABEL.search(line.split("#", 1)[1])]
    assert unlabelled == [2]
    assert not LABEL.search("the lab's value")  # `lab` needs its repository and file
    assert [n for *_, n in numbers_per_line("quantization: [int8, fp4]\nx: zephyr-7b\ns: [0, 1, 2]\n")] == [3]
