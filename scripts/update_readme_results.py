#!/usr/bin/env python3
"""Copy the verdicts of the default study's findings into README.md (between the results markers).

What is inserted is the "Verdicts" table of results/README/findings.md (rule report_findings), which
is generated from the tidy tables; nothing here is typed by hand. Only the default study (config.yaml)
feeds README: its results folder (`results`, schema default `results`) is read from config.yaml, so a
study run with another config (its own folder, e.g. results/paper-muse-news) never changes README.
The rest of findings.md (summary tables, figures, the evidence per finding) stays there, committed,
and README links to it. Run after
`snakemake --cores 2`:

    .venv/bin/python scripts/update_readme_results.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
SECTION = "## Verdicts"


def verdicts(findings: str) -> str | None:
    """The Verdicts section of findings.md (heading demoted to nest under README's), or None."""
    m = re.search(rf"^{re.escape(SECTION)}\n(.*?)(?=^## |\Z)", findings, flags=re.M | re.S)
    return f"#{SECTION}\n\n{m.group(1).strip()}" if m else None


def default_results(root: Path) -> Path:
    """The default study's results folder: config.yaml's `results`, else the schema's default."""
    config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {}
    schema = yaml.safe_load((root / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    return root / config.get("results", schema["properties"]["results"]["default"])


def main() -> int:
    readme = ROOT / "README.md"
    findings = default_results(ROOT) / "README" / "findings.md"
    if not findings.exists():
        print(f"error: {findings} not found; run the default study first (snakemake --cores 2)", file=sys.stderr)
        return 1
    body = verdicts(findings.read_text(encoding="utf-8"))
    if body is None:
        print(f"error: {findings} has no '{SECTION}' section", file=sys.stderr)
        return 1
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"error: {readme} lacks the markers {START} ... {END}", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{body}\n{END}{tail}", encoding="utf-8")
    print(f"updated {readme} from {findings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
