"""docs/extending/adding-an-attack.md, followed: a toy quantizer (weights rounded to a grid of 0.05)
added as one module (this file stands for it), one registry entry and its schema enum entry, and
nothing else, flows through the schema check, the attack list of a config, model loading, the
quantization-code count, an evaluation and the report's ordering, markers and quantization table."""

from __future__ import annotations

import copy
import importlib
import json

import pandas as pd
import pytest
import torch
import yaml
from test_registry import attack_problems

from unlearning import registry
from unlearning.attacks.quantization import qcode_changes
from unlearning.config import attacks_for_reference, attacks_for_unlearned, load_schema, validate

STEP = 0.05
# Weights that transformers quantizes in a Llama (every nn.Linear but lm_head).
LINEAR = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
          "gate_proj.weight", "up_proj.weight", "down_proj.weight")


# --- the toy quantizer's module --------------------------------------------------------------------

def round_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Round every linear weight (lm_head aside) to the grid."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(LINEAR):
                p.copy_(grid_codes(p, "grid").to(p.dtype) * STEP)
    return model


def grid_codes(w: torch.Tensor, name: str) -> torch.Tensor:
    """The grid index each weight is stored as."""
    return torch.round(w / STEP).to(torch.int32)


# --- its registry entry and schema entry -----------------------------------------------------------

GRID = registry.Attack("grid 0.05", "P", "#17becf", quantization=True,
                       apply=f"{__name__}:round_weights", codes=f"{__name__}:grid_codes")


@pytest.fixture
def schema(monkeypatch) -> dict:
    """The registry with the toy entry, and the schema with its enum entry."""
    monkeypatch.setitem(registry.ATTACKS, "grid", GRID)
    schema = copy.deepcopy(load_schema())
    schema["properties"]["attacks"]["properties"]["quantization"]["items"]["enum"].append("grid")
    return schema


def test_the_entry_agrees_with_its_code_and_the_schema(schema):
    assert attack_problems(registry.ATTACKS, schema) == []
    # without its schema entry the registry check names what is missing
    assert attack_problems(registry.ATTACKS, load_schema()) == [
        "quantization grid: not in the schema's attacks.quantization enum"]
    assert registry.quantizations()[-1] == "grid"
    assert registry.four_bit() == ["fp4", "nf4"]


def test_a_config_naming_it_evaluates_it(schema):
    with open("configs/smoke.yaml", encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    config["attacks"]["quantization"] = ["nf4", "grid"]
    validate(config, schema)
    assert attacks_for_unlearned(config) == ["none", "nf4", "grid",
                                             *(f"relearn{s}" for s in sorted(config["attacks"]["relearn"]["steps"]))]
    assert attacks_for_reference(config) == ["none", "nf4", "grid"]


def _weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"model.layers.0.self_attn.q_proj.weight": torch.randn(4, 8, generator=g) * 0.2,
            "model.layers.0.mlp.down_proj.weight": torch.randn(8, 4, generator=g) * 0.2,
            "lm_head.weight": torch.randn(5, 8, generator=g)}


def test_the_code_count_uses_its_codes(schema, tmp_path):
    from safetensors.torch import save_file

    ref = _weights(0)
    new = {k: v.clone() for k, v in ref.items()}
    new["model.layers.0.self_attn.q_proj.weight"][0, :4] += STEP  # four weights move one grid step
    new["lm_head.weight"] += 1.0  # not a quantized weight: not counted
    for name, w in (("ref", ref), ("new", new)):
        (tmp_path / name).mkdir()
        save_file(w, str(tmp_path / name / "model.safetensors"))
    changed = qcode_changes(tmp_path / "ref", tmp_path / "new", ["grid"], device="cpu")
    assert changed == {"grid": pytest.approx(100.0 * 4 / 64)}


def test_the_report_orders_marks_and_tabulates_it(schema):
    from unlearning.report import style, tables, tidy

    assert tidy.attack_order(["relearn5", "grid", "none", "nf4"]) == ["none", "nf4", "grid", "relearn5"]
    markers, colours = style.attack_styles(["none", "grid", "relearn5"])
    assert (markers["grid"], colours["grid"]) == ("P", "#17becf")
    rows = [{"benchmark": "b", "method": "npo", "optimizer": "adam", "grade": "first", "seed": s, "attack": a,
             "metric": "wmdp_acc", "value": v} for s in (0, 1) for a, v in (("none", 30.0 + s), ("grid", 40.0 + s))]
    q = tables.quantization_table(pd.DataFrame(rows))
    grid = q[(q.attack == "grid") & (q.metric == "wmdp_acc")].iloc[0]
    assert grid.after == pytest.approx(40.5) and grid.change == pytest.approx(10.0)


@pytest.mark.slow  # trains a tokenizer and scores a tiny model (a few seconds)
def test_an_evaluation_loads_the_model_through_it(schema, tmp_path):
    from unlearning.data.synthetic import generate
    from unlearning.models import build_model, load_model, save_model, train_tokenizer
    from unlearning.stages.common import training_texts

    evaluate = importlib.import_module("unlearning.stages.evaluate").evaluate
    data = tmp_path / "data"
    generate("wmdp", data, seed=0, n_forget=2, n_retain=2, rehearsals=1)
    tok = train_tokenizer(training_texts(data, "wmdp", "target"), 300, tmp_path / "tok")
    arch = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1, "num_heads": 2, "max_len": 256}
    save_model(build_model(arch, len(tok), seed=0), tok, tmp_path / "target")
    save_model(build_model(arch, len(tok), seed=1), tok, tmp_path / "model")

    model = load_model(tmp_path / "model", quant="grid")
    q = model.get_submodule("model.layers.0.self_attn.q_proj").weight
    assert torch.equal(q, torch.round(q / STEP) * STEP) and q.abs().sum() > 0

    params = {"batch_size": 4, "max_questions": 4}
    evaluate(tmp_path / "model", data, "wmdp", ["none", "grid"], {"optimizer": "adam"}, params, "biology", 0.5,
             tmp_path / "out", reference_dir=tmp_path / "target")
    record = json.loads((tmp_path / "out" / "grid.json").read_text())
    assert record["attack"] == "grid" and 0 <= record["metrics"]["wmdp_acc"] <= 100
    assert 0 < record["metrics"]["qcode_change"] < 100  # two independent random models, counted on the grid
