"""No import circle among the package's modules (issue 26): a module that imports another, at the top or
inside a function, may not be imported back by it, directly or through others. A circle makes the import
order matter and hides which module a piece belongs to; a function-level import only postpones it.
Imports under ``if TYPE_CHECKING:`` never run and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "unlearning"


def modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere in the tree (functions included), except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _type_checking(node) and child in node.body:
                continue
            stack.append(child)


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports. ``from X import Y`` counts X.Y when that is a module,
    else X; relative imports are resolved against the importing module's package."""
    mods = modules(src, package)
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = here[:len(here) - node.level + 1] if node.level else []
                stem = ".".join(base + (node.module.split(".") if node.module else []))
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
            for target in targets:
                # `import a.b.c` of a name that is not a module: the longest prefix that is one
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_module_of_the_package_imports_itself_back():
    graph = import_graph()
    assert "unlearning.cli" in graph and "unlearning.stages.evaluate" in graph
    found = circles(graph)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("code_b, expected", [
    ("from . import a\n", [["pkg.a", "pkg.b"]]),  # a -> b at the top, b -> a
    ("def f():\n    from .a import x\n", [["pkg.a", "pkg.b"]]),  # a function-level import counts
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n", []),  # never runs
    ("import pkg.sub.c\n", [["pkg.a", "pkg.b", "pkg.sub.c"]]),  # through a subpackage
])
def test_the_check_finds_a_circle_and_only_a_circle(tmp_path, code_b, expected):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import y\n")  # c -> a; a -> b; b -> c would close it
    (pkg / "a.py").write_text("from .b import z\n")
    (pkg / "b.py").write_text(code_b)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert circles(graph) == expected
