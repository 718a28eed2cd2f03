"""The report: tables, figures and findings read from the evaluation JSON files and tidy tables.

One module per concern, so that a reporting rule lists (and reruns for) only the code it runs:

- ``files``: atomic writes of CSV and text.
- ``tidy``: the tidy table (one row per benchmark, method, optimizer, grade, seed, attack, metric),
  PrivLeak, and the vocabulary of attacks, metrics and optimizer order every other module uses.
- ``stats``: mean and 95% confidence interval over seeds; paired tests by seed, Holm, TOST, the
  detectable difference, logit-scale intervals; the legacy two-interval rule.
- ``tables``: the summary markdown, the main table (CSV + markdown), quantization and relearning tables.
- ``style``: one colour per optimizer, matplotlib set-up and the helpers every figure shares.
- ``quantization_plot``, ``relearning_plot``, ``tradeoff_plot``: one figure each per benchmark.
- ``lmc_plot``: linear-mode-connectivity paths and their loss barriers.
- ``ablation``: the hybrid ablation's table and figure.
- ``findings``: the paper's findings as data (with their declared primary comparisons), judged by
  one function.
- ``findings_report``: results/README/findings.md, verdicts.csv, comparisons.csv.
- ``blocks``: README's and docs' generated blocks, written from the files committed in results/README.

This file imports nothing, so importing one module never loads the others; ``code_of`` tells the
workflow which files a module runs.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
LIBRARY = PACKAGE.parent  # src/unlearning


# Cached: a Snakemake start asks code_of for 27 rules' modules and parsed the same files 136 times (0.4 s
# of CPU in each of the test suite's ~100 Snakemake starts); the files do not change within a process.
@functools.cache
def _imports(path: Path) -> list[Path]:
    """Files of the ``unlearning`` library that ``path`` imports relatively (at any depth in it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        parts = node.module.split(".") if node.module else []
        target = base.joinpath(*parts)
        names = [a.name for a in node.names] if not parts else [None]
        for name in names:
            t = target / name if name else target
            for cand in (t.with_suffix(".py"), t / "__init__.py"):
                if cand.is_file():
                    found.append(cand)
                    break
    return found


def code_of(module: str) -> list[str]:
    """The library files (relative to src/unlearning) that running report module ``module`` imports:
    the module, the report modules it reaches (and what the stage table, commands.py, imports), and
    each library module outside the report it names (not followed further: those are the rules' own
    business). Workflow rules list these as inputs,
    so editing one figure's module replans only that figure's jobs."""
    start = PACKAGE / f"{module}.py"
    if not start.is_file():
        raise FileNotFoundError(f"{start}: no such report module")
    seen: list[Path] = []
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        # the stage table (commands.py) is glue every report command imports: followed like the report
        if path.parent == PACKAGE or path == LIBRARY / "commands.py":
            todo += [p for p in _imports(path) if p.name != "__init__.py" or p.parent != PACKAGE]
    return sorted(str(p.relative_to(LIBRARY)) for p in seen)
