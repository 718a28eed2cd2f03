"""envs/unlearning.yaml (conda env for `--sdm conda`) agrees with pyproject.toml's dependencies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ENV = REPO / "envs" / "unlearning.yaml"


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def env() -> dict:
    return yaml.safe_load(ENV.read_text())


def conda_and_pip(spec: dict) -> tuple[list[str], list[str]]:
    conda, pip = [], []
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
        else:
            conda.append(str(dep))
    return conda, pip


def conda_requirement(dep: str) -> Requirement:
    """'python=3.11' / 'numpy>=1.26' (conda match spec, simple forms) -> a PEP 508 requirement."""
    name, op, version = re.match(r"^([A-Za-z0-9_.\-]+)\s*(==|=|>=|<=|>|<|!=)?\s*(.*)$", dep).groups()
    if op == "=":  # conda's '=3.11' means 3.11.*
        return Requirement(f"{name}=={version}.*" if not version.endswith("*") else f"{name}=={version}")
    return Requirement(f"{name}{op or ''}{version}")


def env_requirements() -> dict[str, Requirement]:
    conda, pip = conda_and_pip(env())
    reqs = {}
    for dep in conda:
        req = conda_requirement(dep)
        if req.name not in ("python", "pip"):
            reqs[canonicalize_name(req.name)] = req
    for dep in pip:
        req = Requirement(dep)
        assert canonicalize_name(req.name) not in reqs, f"{req.name} listed twice in {ENV}"
        reqs[canonicalize_name(req.name)] = req
    return reqs


def project_requirements() -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(d).name): Requirement(d) for d in project()["dependencies"]}


def test_env_file_shape():
    spec = env()
    assert spec["name"] == "unlearning"
    assert "defaults" not in spec.get("channels", []), "the anaconda defaults channel needs a licence"
    conda, pip = conda_and_pip(spec)
    assert any(d.startswith("pip") for d in conda) or not pip, "a pip section needs pip in the env"


def test_env_python_is_311_and_allowed_by_pyproject():
    conda, _ = conda_and_pip(env())
    (python,) = [conda_requirement(d) for d in conda if conda_requirement(d).name == "python"]
    assert python.specifier.contains("3.11.9")
    assert not python.specifier.contains("3.12.0")
    assert SpecifierSet(project()["requires-python"]).contains("3.11.0")


def test_same_package_set():
    env_names, proj_names = set(env_requirements()), set(project_requirements())
    assert env_names == proj_names, (
        f"only in {ENV.name}: {sorted(env_names - proj_names)}; "
        f"only in pyproject.toml: {sorted(proj_names - env_names)}"
    )


@pytest.mark.parametrize("name", sorted(project_requirements()))
def test_version_specifiers_compatible(name):
    """The env's specifier may be narrower than pyproject's (more clauses), never wider."""
    proj = project_requirements()[name].specifier
    req = env_requirements().get(name)
    assert req is not None, f"{name} missing from {ENV}"
    have = {str(s) for s in req.specifier}
    want = {str(s) for s in proj}
    assert want <= have, f"{name}: env has '{req.specifier}', pyproject requires '{proj}'"
    # and the two admit a common version (the env is not empty or contradictory)
    lower = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    if lower:
        assert (req.specifier & proj).contains(max(lower), prereleases=True), f"{name}: no version satisfies both"
