"""The installs agree: requirements/*.lock satisfy pyproject.toml's ranges, setup.sh's test lock holds the
runtime lock, and the conda env of the rules (envs/unlearning.yaml) pins exactly the runtime lock."""

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
RUNTIME, TEST = REPO / "requirements" / "runtime.lock", REPO / "requirements" / "test.lock"
import lock_to_conda  # noqa: E402  (scripts/, on pytest's pythonpath)


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def lock(path: Path) -> dict[str, Version]:
    """name -> pinned version; every line must be an exact pin."""
    out = {}
    for line in lock_to_conda.pins(path):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in out, f"{path.name}: {req.name} pinned twice"
        out[name] = Version(spec.version)
    return out


def requirements(extra: str | None = None) -> list[Requirement]:
    deps = project()["optional-dependencies"][extra] if extra else project()["dependencies"]
    return [Requirement(d) for d in deps]


@pytest.mark.parametrize("lockfile,extra", [(RUNTIME, None), (TEST, None), (TEST, "test")])
def test_lock_satisfies_pyproject(lockfile, extra):
    pinned = lock(lockfile)
    for req in requirements(extra):
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lockfile.name} lacks {req.name}; rerun scripts/lock.sh"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{lockfile.name}: {req.name}=={pinned[name]} outside pyproject.toml's '{req.specifier}'; "
            "rerun scripts/lock.sh")


def test_test_lock_extends_runtime_lock():
    runtime, test = lock(RUNTIME), lock(TEST)
    differ = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert not differ, f"runtime.lock vs test.lock: {differ}"


def test_torch_pinned_without_local_label():
    """One pin for the CPU and CUDA builds: setup.sh installs torch first from it."""
    assert str(lock(RUNTIME)["torch"]) == str(lock(RUNTIME)["torch"].public)


def test_conda_env_is_generated_from_the_runtime_lock(tmp_path):
    out = tmp_path / "env.yaml"
    lock_to_conda.main(str(RUNTIME), str(out))
    assert out.read_text() == ENV.read_text(), f"{ENV} is stale: rerun scripts/lock.sh"


def test_env_file_shape():
    spec = yaml.safe_load(ENV.read_text())
    assert spec["name"] == "unlearning"
    assert "defaults" not in spec.get("channels", []), "the anaconda defaults channel needs a licence"
    conda = [d for d in spec["dependencies"] if isinstance(d, str)]
    (python,) = [d for d in conda if d.startswith("python")]
    version = re.match(r"python=(\d+\.\d+)$", python).group(1)
    assert SpecifierSet(project()["requires-python"]).contains(f"{version}.0")
    assert "pip" in conda


@pytest.mark.skipif(bool(__import__("os").environ.get("UNLEARNING_UNLOCKED")), reason="unlocked install")
def test_running_environment_is_the_locked_one():
    """scripts/setup.sh installed requirements/test.lock: the versions these tests run with are those."""
    from importlib import metadata

    wrong = {}
    for name, version in lock(TEST).items():
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            have = None
        if have is None or have.public != version.public:
            wrong[name] = (str(version), have and str(have))
    assert not wrong, f"installed versions differ from {TEST.name} (lock, installed): {wrong}; rerun scripts/setup.sh"
