"""The `unlearning` command's stages (src/unlearning/commands.py): each declared in the module that runs
it, all listed in one torch-free table that cli.py loops over; `unlearning --help` and the stages that
do not need torch never import it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unlearning import cli, commands

SRC = Path(__file__).resolve().parents[1] / "src"
# The stages that run torch: they get --threads and the no-CUDA check of a GPU job.
TORCH_STAGES = {"tokenizer", "model", "unlearn", "relearn", "evaluate", "grade-distance", "lmc", "onset-scan"}


def _declared_in_sources() -> dict[str, str]:
    """module:attribute of every module-level ``X = Stage(...)`` in the package's sources."""
    found = {}
    for path in sorted((SRC / "unlearning").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "Stage"):
                found.update({f"{module}:{t.id}": module for t in node.targets})
    return found


def test_every_declared_stage_is_listed_once_and_every_listed_one_is_declared():
    listed = [target for target, _ in commands.STAGES.values()]
    assert len(set(listed)) == len(listed)
    assert set(listed) == set(_declared_in_sources())
    for name in commands.STAGES:
        stage = commands.declaration(name)
        assert isinstance(stage, commands.Stage)
        assert stage.needs_torch == (name in TORCH_STAGES), name


def test_a_stage_parser_gets_its_own_arguments_only_when_parsed():
    args = cli.build_parser().parse_args(["--threads", "3", "lmc", "--models", "adam=a", "--reference", "adam",
                                          "--data", "d", "--kind", "wmdp", "--meta", '{"seed": 0}',
                                          "--max-len", "32", "--out", "o.csv"])
    assert (args.stage, args.threads, args.kind, args.meta, args.points, args.max_texts, args.batch_size) == (
        "lmc", 3, "wmdp", {"seed": 0}, 11, 64, 16)


def test_a_known_error_is_one_line_and_exit_status_1(tmp_path, capsys):
    code = cli.main(["aggregate", "--inputs", str(tmp_path / "missing.json"), "--out", str(tmp_path / "t.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("error [aggregate]: ") and "missing.json" in err[0]


@pytest.mark.parametrize("argv, message", [
    (["data", "--bench", "{bad", "--out", "x"], "argument --bench: not valid JSON (Expecting property name"),
    (["model", "--kind", "nonsense"], "argument --kind: invalid choice: 'nonsense'"),
    (["nonsense"], "argument stage: invalid choice: 'nonsense'"),
])
def test_a_bad_command_line_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_help_and_the_stages_without_torch_never_import_it():
    light = [name for name in commands.STAGES if name not in TORCH_STAGES]
    code = ("import contextlib, io, json, sys\n"
            "from unlearning import cli, commands\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        cli.main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "stage_modules = sorted(m for m in sys.modules if m.startswith(('unlearning.stages', 'unlearning.report',"
            " 'unlearning.lmc')))\n"
            "help_torch = 'torch' in sys.modules\n"
            f"for name in {light!r}:\n"
            "    commands.declaration(name)\n"
            "print(json.dumps({'help': out.getvalue(), 'help_torch': help_torch, 'stage_modules': stage_modules,"
            " 'light_torch': 'torch' in sys.modules}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    assert all(name in seen["help"] for name in commands.STAGES)
    assert not seen["help_torch"] and not seen["stage_modules"] and not seen["light_torch"]
