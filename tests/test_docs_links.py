"""Every relative link of README.md and docs/**/*.md points at a file that exists and, for a page, at
one of its headings (GitHub's anchors): pages move (docs/ was regrouped) and headings get renamed."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(pages: list[Path]) -> list[str]:
    """``page: link`` for every relative link whose file or heading is missing."""
    out = []
    for page in pages:
        for m in LINK.finditer(page.read_text(encoding="utf-8")):
            link = m[1]
            if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
                continue
            path, _, frag = link.partition("#")
            target = (page.parent / path) if path else page
            if not target.exists():
                out.append(f"{page.name}: {link}")
            elif frag and target.suffix == ".md":
                heads = {anchor(h.lstrip("#")) for h in target.read_text(encoding="utf-8").splitlines()
                         if h.startswith("#")}
                if frag not in heads:
                    out.append(f"{page.name}: {link}")
    return out


def test_anchor_follows_github():
    assert anchor(" Step time and memory per optimizer (`benchmarks/investigations/optimizers.py`)") == \
        "step-time-and-memory-per-optimizer-benchmarksinvestigationsoptimizerspy"
    assert anchor("Paper scale: the cost model, 7B (issues 16, 23)") == "paper-scale-the-cost-model-7b-issues-16-23"


def test_a_missing_page_or_heading_is_found(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n[ok](b.md#the-end) [gone](c.md) [bad](b.md#nope) [web](https://x.y/z)\n")
    (tmp_path / "b.md").write_text("## The end\n")
    assert broken_links([tmp_path / "a.md"]) == ["a.md: c.md", "a.md: b.md#nope"]


def test_readme_and_docs_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert broken_links(pages) == []


def test_docs_pages_the_code_names_exist():
    """A page path written into code, rules, configs or scripts (e.g. findings.md's pointer to
    docs/reference/statistics.md) names a page that exists, so outputs never point at an old path."""
    named = set()
    for top in ("src", "workflow", "scripts", "configs", "benchmarks", "tests"):
        for f in (ROOT / top).rglob("*"):
            if f.is_file() and f.suffix in {".py", ".smk", ".yaml", ".sh", ".rst"}:
                named |= set(re.findall(r"docs/[A-Za-z0-9_./-]+\.md", f.read_text(encoding="utf-8", errors="ignore")))
    named |= set(re.findall(r"docs/[A-Za-z0-9_./-]+\.md", (ROOT / "config.yaml").read_text(encoding="utf-8")))
    assert "docs/reference/statistics.md" in named
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
