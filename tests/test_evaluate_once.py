"""stages/evaluate.py reads the evaluated model from the shared file system once per job: the
unattacked and the quantized loads and the quantization-code count all read one local copy."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import unlearning.attacks.quantization as Q
import unlearning.models as M

E = importlib.import_module("unlearning.stages.evaluate")  # the package exports a function of that name


@pytest.fixture
def job(tmp_path, monkeypatch):
    model = tmp_path / "shared" / "adam"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    ref = tmp_path / "shared" / "target"
    ref.mkdir()
    seen = {"load": [], "qcodes": [], "copies": []}
    monkeypatch.setenv("UNLEARNING_STAGE_DIR", str(tmp_path / "local"))
    (tmp_path / "local").mkdir()

    def load(path, quant=None, **_):
        assert (Path(path) / "model.safetensors").read_bytes() == b"weights"  # the same bytes
        seen["load"].append((str(path), quant))
        return object()

    real_copy = E.shutil.copytree
    monkeypatch.setattr(E.shutil, "copytree", lambda a, b: seen["copies"].append(str(a)) or real_copy(a, b))
    monkeypatch.setattr(M, "load_model", load)
    monkeypatch.setattr(M, "load_tokenizer", lambda path: None)
    monkeypatch.setattr(Q, "qcode_changes", lambda r, m, q: seen["qcodes"].append((str(r), str(m))) or
                        {x: 1.0 for x in q})
    monkeypatch.setattr(E, "forget_retain", lambda d, k: ([], []))
    monkeypatch.setattr(E, "score", lambda *a, **k: {"knowmem_f": 1.0})
    monkeypatch.setattr("unlearning.provenance.environment", lambda: {})
    return model, ref, seen, tmp_path


def _run(model, ref, out, attacks):
    E.evaluate(model, "data", "muse", attacks, {"optimizer": "adam"}, {}, "", 1.0, out, reference_dir=ref)


def test_every_load_reads_one_local_copy(job):
    model, ref, seen, tmp = job
    _run(model, ref, tmp / "out", ["none", "int8", "fp4", "nf4"])
    assert seen["copies"] == [str(model)]  # the shared folder read once
    paths = {p for p, _ in seen["load"]}
    assert len(paths) == 1 and paths != {str(model)} and str(tmp / "local") in next(iter(paths))
    assert [q for _, q in seen["load"]] == [None, "int8", "fp4", "nf4"]
    assert seen["qcodes"] == [(str(ref), next(iter(paths)))]  # the codes from the same copy
    assert not list((tmp / "local").iterdir())  # the copy is gone after the job
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["fp4.json", "int8.json", "nf4.json", "none.json"]


def test_one_load_reads_in_place(job):
    model, ref, seen, tmp = job
    _run(model, ref, tmp / "out", ["none"])
    assert seen["copies"] == [] and seen["load"] == [(str(model), None)]
