"""Each reporting rule lists the report modules it runs, and only those: editing one figure's module
replans that figure's jobs (and findings.md, which shows the figure), not the other figures or tables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_reruns import planned

from unlearning.report import code_of

from conftest import ROOT

REPORT_MODULES = ["tidy", "tables", "figures", "quantization_plot", "relearning_plot", "tradeoff_plot", "lmc_plot",
                  "ablation", "findings", "findings_report", "provenance", "grade_distance", "blocks"]


def test_code_of_lists_a_module_and_the_report_modules_it_reaches():
    # the registry (optimizer grades) and TOFU's Forget Quality are library modules the tidy table reads;
    # commands.py holds the Stage declaration the plot modules import (the command's table)
    assert code_of("quantization_plot") == ["commands.py", "registry.py", "report/files.py",
                                            "report/quantization_plot.py", "report/stats.py", "report/style.py",
                                            "report/tidy.py", "tofu_metrics.py"]
    # the tables mark entries whose calibration was not reached (report/calibration.py)
    assert code_of("relearning_plot") == ["calibration.py", "commands.py", "registry.py", "report/calibration.py",
                                          "report/files.py",
                                          "report/provenance.py", "report/relearning_plot.py", "report/stats.py",
                                          "report/style.py", "report/tables.py", "report/tidy.py", "tofu_metrics.py"]
    # library modules outside the report are listed, not followed (lmc.py's own imports are its rule's)
    assert "lmc.py" in code_of("lmc_plot") and "models.py" not in code_of("lmc_plot")
    # the figure dispatcher imports the figure modules by name, at run time: the rule adds the one it runs
    assert code_of("figures") == ["commands.py", "registry.py", "report/figures.py"]
    with pytest.raises(FileNotFoundError, match="no such report module"):
        code_of("nope")


@pytest.mark.parametrize("module", REPORT_MODULES)
@pytest.mark.slow
def test_code_of_covers_what_importing_the_module_loads(module):
    code = (f"import sys, json; import unlearning.report.{module}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('unlearning.'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    loaded = {m.split(".", 1)[1].replace(".", "/") + ".py" for m in json.loads(res.stdout)
              if m not in ("unlearning.report",)}
    assert loaded <= set(code_of(module)), loaded - set(code_of(module))


def report_jobs(jobs):
    return {(r, w) for r, w in jobs if r != "all"}


@pytest.mark.e2e
def test_editing_one_figure_module_replans_only_that_figure(smoke_copy):
    module = smoke_copy / "src" / "unlearning" / "report" / "quantization_plot.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert report_jobs(planned(smoke_copy)) == {
        ("figures", "bench=muse, figure=quantization"), ("figures", "bench=tofu, figure=quantization"),
        ("figures", "bench=wmdp, figure=quantization"),
        ("report_findings", ""),  # copies the figure into results/README
    }


@pytest.mark.e2e
def test_editing_the_findings_module_replans_only_findings(smoke_copy):
    module = smoke_copy / "src" / "unlearning" / "report" / "findings.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert report_jobs(planned(smoke_copy)) == {("report_findings", "")}
