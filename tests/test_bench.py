"""The benchmark harness (unlearning.bench.harness) and the scripts that use it: every investigation in
benchmarks/investigations/ and every `unlearning` measuring subcommand answers --help in-process, the
harness prints and writes the JSON it promises, each investigation is listed in its README, and no
benchmark or test edits the import path."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch  # at collection, as the fast tier's other tests import it: harness.device needs it

from unlearning import cli
from unlearning.bench import harness

ROOT = Path(__file__).resolve().parents[1]
INVESTIGATIONS = ROOT / "benchmarks" / "investigations"
SCRIPTS = sorted(p.stem for p in INVESTIGATIONS.glob("*.py") if p.stem != "__init__")
TOOLS = {"study-time": "study", "compare-runs": "compare_runs", "paper-scale": "paper_scale"}


def test_there_are_investigations_and_tools():
    assert len(SCRIPTS) >= 12 and {"gpu_check", "optimizers", "host_memory"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_investigation_answers_help_in_process(name, capsys):
    module = importlib.import_module(f"benchmarks.investigations.{name}")
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: ")
    # described by its own docstring (harness.parser; argparse may rewrap it)
    assert " ".join(module.__doc__.splitlines()[0].split()) in " ".join(out.split())


@pytest.mark.parametrize("stage, module", TOOLS.items())
def test_every_tool_is_a_subcommand_and_a_module_that_answer_help(stage, module, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([stage, "--help"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith(f"usage: unlearning {stage} ")
    mod = importlib.import_module(f"unlearning.bench.{module}")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and " ".join(mod.__doc__.splitlines()[0].split()) in " ".join(out.split())


def test_each_investigation_is_listed_in_the_readme():
    readme = (INVESTIGATIONS / "README.md").read_text(encoding="utf-8")
    listed = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ") and ".py" in line}
    assert listed == {f"{s}.py" for s in SCRIPTS}


def test_emit_prints_one_json_line_and_writes_the_same_object(tmp_path, capsys):
    obj = {"arch": "tiny", "rows": [{"s": 0.25, "ok": True}], "note": "Answer: ▁"}
    text = harness.emit(obj)
    assert capsys.readouterr().out == text + "\n" and "\n" not in text and json.loads(text) == obj
    out = tmp_path / "r.json"
    text = harness.emit(obj, indent=1, out=out, ensure_ascii=False)
    printed = capsys.readouterr().out
    assert printed == text + "\n" and out.read_text(encoding="utf-8") == printed
    assert json.loads(printed) == obj and "▁" in printed and printed.startswith('{\n "arch": "tiny"')


def test_emit_fails_on_what_json_cannot_hold_unless_told(capsys):
    with pytest.raises(TypeError):
        harness.emit({"x": {1, 2}})
    assert json.loads(harness.emit({"x": Path("a")}, default=str)) == {"x": "a"}


def test_the_device_is_the_one_named_or_the_workflows_choice(monkeypatch):
    from unlearning.models import device

    assert harness.device("cpu") == torch.device("cpu") and harness.device() == device()
    monkeypatch.setenv("UNLEARNING_DEVICE", "cpu")
    assert harness.device() == torch.device("cpu")


def test_timer_and_memory_readers():
    with harness.timer() as t:
        sum(range(10_000))
    assert 0 <= t["s"] < 1
    assert harness.rss_kb("VmRSS") > 1000 and harness.rss_bytes() > 1_000_000
    with pytest.raises(RuntimeError, match="NoSuchField"):
        harness.rss_kb("NoSuchField")


def test_the_parser_takes_the_docstring():
    doc = "First line.\n\n    usage line kept as written\n"
    assert harness.parser(doc).description == doc
    assert harness.parser(doc, full=False).description == "First line."


def test_no_benchmark_or_test_edits_the_import_path():
    edit = "sys." + "path"  # not written out, so that this file does not find itself
    found = [f"{p.relative_to(ROOT)}:{i}" for folder in ("benchmarks", "tests") for p in (ROOT / folder).rglob("*.py")
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if edit in line]
    assert found == []
