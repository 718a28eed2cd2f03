#!/usr/bin/env python3
"""Copy the default study's generated findings into README.md (between the results markers).

Everything inserted comes from results/README/ (rule report_findings), which is generated from the
tidy tables; nothing here is typed by hand. Run after `snakemake --cores 2`:

    .venv/bin/python scripts/update_readme_results.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def main() -> int:
    readme = ROOT / "README.md"
    findings = ROOT / "results" / "README" / "findings.md"
    if not findings.exists():
        print(f"error: {findings} not found; run the default study first (snakemake --cores 2)", file=sys.stderr)
        return 1
    body = findings.read_text(encoding="utf-8")
    # Demote headings one level so they nest under README's "Results".
    body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)
    # Figure paths in findings.md are relative to results/README/.
    body = re.sub(r"\]\((?!http)([^)]+\.png)\)", r"](results/README/\1)", body)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"error: {readme} lacks the markers {START} ... {END}", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{body.strip()}\n{END}{tail}", encoding="utf-8")
    print(f"updated {readme} from {findings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
