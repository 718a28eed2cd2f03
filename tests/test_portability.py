"""Same numbers on every CPU: bitsandbytes' AVX512-BF16 path is forced on and off on any machine, and
the quantized evaluation must neither raise nor change; model shapes are checked before any job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from unlearning.config import ConfigError, validate
from unlearning.models import build_model, load_model

ROOT = Path(__file__).resolve().parents[1]
# The smoke model's widths: 16 is not a multiple of the packed path's block of 32.
SMOKE = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, max_len=64)


def force_avx512_bf16(monkeypatch, on: bool) -> None:
    """Make bitsandbytes' 4-bit layers believe the CPU has (or lacks) AVX512-BF16. Linear4bit reads
    the flag when it is built, so this must run before the model is loaded."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: on)


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    build_model(SMOKE, 300, seed=0).save_pretrained(path, safe_serialization=True)
    return path


def logits(model_dir: Path, quant: str) -> torch.Tensor:
    model = load_model(model_dir, quant=quant, dev=torch.device("cpu"))
    ids = torch.randint(0, 300, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("quant", ["fp4", "nf4"])
@pytest.mark.slow
def test_forced_flag_changes_nothing(monkeypatch, smoke_model, quant):
    force_avx512_bf16(monkeypatch, True)
    flagged = logits(smoke_model, quant)
    force_avx512_bf16(monkeypatch, False)
    plain = logits(smoke_model, quant)
    assert torch.isfinite(flagged).all()
    assert torch.equal(flagged, plain)  # one path, so bit for bit


def test_forcing_the_flag_does_reach_the_packed_path(monkeypatch, smoke_model):
    """Guard for the two tests above: without the project's switch, the forced flag makes bitsandbytes
    repack the 16-wide layers and fail, as it did on AVX512-BF16 CPUs (0.50.2). If a bitsandbytes
    release drops the packed path or its width constraint, this fails and the switch can be revisited."""
    import unlearning.models as models

    force_avx512_bf16(monkeypatch, True)
    monkeypatch.setattr(models, "portable_4bit_path", lambda model: 0)
    with pytest.raises(AssertionError, match="divisible by block_n"):
        logits(smoke_model, "nf4")


@pytest.mark.parametrize("hidden,inter,heads", [(16, 32, 2), (30, 33, 3), (6, 9, 3), (2, 3, 1)])
@pytest.mark.parametrize("quant", ["int8", "fp4", "nf4"])
@pytest.mark.slow
def test_any_layer_width_loads_quantized_on_a_flagged_cpu(monkeypatch, tmp_path, hidden, inter, heads, quant):
    """The portable path takes any width, so the config needs no quantizer-shape check."""
    arch = dict(hidden_size=hidden, intermediate_size=inter, num_layers=1, num_heads=heads, max_len=64)
    build_model(arch, 300, seed=0).save_pretrained(tmp_path / "m", safe_serialization=True)
    force_avx512_bf16(monkeypatch, True)
    assert torch.isfinite(logits(tmp_path / "m", quant)).all()


@pytest.mark.slow
def test_evaluation_json_is_identical_with_the_flag_on_and_off(monkeypatch, smoke_run, tmp_path):
    """The evaluate stage on the smoke study's trained target under every quantization attack:
    byte-identical JSON whichever way the flag is forced (the recorded CPU facts aside)."""
    from unlearning.stages.evaluate import evaluate

    cfg = validate(yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text()))
    res = smoke_run / "results"
    meta = {"benchmark": "muse", "method": "none", "optimizer": "target", "grade": "reference", "seed": 0}
    out = {}
    for on in (True, False):
        force_avx512_bf16(monkeypatch, on)
        evaluate(res / "models/muse/target/seed0", res / "data/muse", "muse", ["fp4", "nf4"], meta,
                 cfg["evaluation"], "biology", 0.25, tmp_path / str(on), reference_dir=res / "models/muse/target/seed0")
        out[on] = {a: json.loads((tmp_path / str(on) / f"{a}.json").read_text()) for a in ("fp4", "nf4")}
    for attack in ("fp4", "nf4"):
        flagged, plain = out[True][attack], out[False][attack]
        assert flagged["env"]["cpu_4bit_path"] == "portable"
        flagged["env"].pop("cpu_avx512_bf16"), plain["env"].pop("cpu_avx512_bf16")
        assert flagged == plain
        assert flagged["metrics"]["qcode_change"] == 0.0  # the target against itself


@pytest.mark.slow
def test_evaluation_json_records_where_it_was_made(smoke_run):
    rec = json.loads((smoke_run / "results/eval/muse/none/target/seed0/nf4.json").read_text())
    env = rec["env"]
    assert env["torch_version"] == torch.__version__
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["device"] == "cpu" and env["cpu_4bit_path"] == "portable"
    assert set(env) >= {"transformers_version", "bitsandbytes_version", "cpu_avx512_bf16"}


def _smoke() -> dict:
    return yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())


@pytest.mark.parametrize("hidden,heads,expect", [
    (30, 4, "model.num_heads: 4 does not divide model.hidden_size 30"),
    (24, 8, "model.hidden_size: 24 / model.num_heads 8 = 3, an odd head size"),
])
def test_model_shapes_refused_with_the_key(hidden, heads, expect):
    cfg = _smoke()
    cfg["model"].update(hidden_size=hidden, num_heads=heads)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value).startswith(expect)


def test_model_shapes_accepted():
    cfg = _smoke()
    cfg["model"].update(hidden_size=30, num_heads=3)  # head size 10
    validate(cfg)


FORCE = ROOT / "tests" / "support" / "bnb_avx512bf16"  # sitecustomize forcing the flag in every process


@pytest.mark.e2e
def test_smoke_study_gives_the_same_tables_with_the_flag_forced_the_other_way(smoke_run, smoke_copy, monkeypatch):
    """The smoke study's evaluations of the unlearned models again, every process believing the opposite
    of this CPU's AVX512-BF16 flag: the benchmark tables (every quantized evaluation's metrics) are
    byte-identical to the natural run's; only the recorded provenance differs. Only the evaluate stages
    load a model quantized, so a copy of the study reruns the `evaluate` jobs and the tables; the
    reference models' evaluations are the same stage (checked in-process above), and rerunning them
    would rerun the calibration and relearning that read them."""
    import os

    from unlearning.provenance import cpu_has_avx512_bf16

    from conftest import snakemake

    forced = "off" if cpu_has_avx512_bf16() else "on"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(FORCE), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("UNLEARNING_TEST_AVX512BF16", forced)
    work = smoke_copy
    tables = sorted(p.relative_to(smoke_run) for p in (smoke_run / "results/tables").glob("*.csv"))
    assert {"muse.csv", "tofu.csv", "wmdp.csv", "provenance.csv"} <= {p.name for p in tables}
    # Forced by file: the unlearned models' evaluations only. The controls' (method none) go through the
    # same stage, but the calibration reads the retrain model's unattacked score, so forcing them would
    # rerun every calibration and relearning downstream of it.
    unlearned = sorted(str(p.relative_to(smoke_run)) for p in (smoke_run / "results/eval").glob("*/*/*/seed*/none.json")
                       if p.parts[-4] != "none")
    assert unlearned
    # own_server: the flag is forced at interpreter start (sitecustomize on PYTHONPATH), so the jobs' fork
    # server must start under the forced environment; the test process's shared server did not
    out = snakemake(work, "--cores", "2", "--forcerun", *unlearned, "--configfile", "configs/smoke.yaml", "--",
                    *map(str, tables), configfile=None, own_server=True)
    log = out.stdout + out.stderr
    # the unlearned models' evaluations reran under the forced flag; nothing upstream of them did
    assert re.search(r"^evaluate\s+\d+$", log, re.M), log[-3000:]
    assert not re.search(r"^(train_model|unlearn|relearn|calibrate|evaluate_reference)\s+\d+", log, re.M), log[-3000:]
    differ = [str(p) for p in tables
              if p.name != "provenance.csv" and (smoke_run / p).read_bytes() != (work / p).read_bytes()]
    assert not differ, f"tables differ with AVX512-BF16 forced {forced}: {differ}"
    prov = (work / "results/tables/provenance.csv").read_text()
    assert "cpu_avx512_bf16" in prov and str(forced == "on") in prov
