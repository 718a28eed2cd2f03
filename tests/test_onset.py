"""The onset scan (issue 24 item 6; bench/onset.py, report/onset.py): its config, the update's size in
quantization bins, and a tiny scan's JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from unlearning.bench import onset
from unlearning.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "onset.yaml"

TINY = {
    "benchmark": {"kind": "muse", "source": "synthetic",
                  "shape": {"n_forget": 4, "n_retain1": 4, "n_retain2": 4, "n_holdout": 4, "n_icl": 2}},
    "widths": [32],  # torchao's groups of 32 need rows of 32
    "tokenizer": {"vocab_size": 300},
    "model": {"num_layers": 1, "num_heads": 2, "max_len": 128},
    "training": {"steps": 4, "batch_size": 4},
    "method": {"objective": "grad_diff"},
    "optimizers": {"adam": {"type": "adam"}},
    "lrs": [1.0e-4, 1.0e-3],
    "unlearning": {"steps": 2, "batch_size": 2},
    "quantizers": ["int8", "nf4", "int2_g32"],
    "evaluation": {"batch_size": 16, "verbmem_max_new_tokens": 8, "knowmem_max_new_tokens": 4, "max_questions": 4,
                   "knowmem_answer_space": False},
}


def test_committed_config_validates_with_the_study_defaults():
    config = onset.load(CONFIG)
    assert len(config["widths"]) >= 3 and len(config["optimizers"]) >= 2
    assert {"nf4", "int8", "int3_g32", "int2_g32"} <= set(config["quantizers"])
    assert config["training"]["warmup"] == 0.05  # filled from the study schema's training section
    assert config["unlearning"]["chunking"] == "truncate"
    assert "hidden_size" not in config["model"]  # set per width


@pytest.mark.parametrize("edit, named", [
    (lambda c: c.update(widthz=[1]), "widthz"),
    (lambda c: c["training"].update(stepz=3), "training.stepz"),
    (lambda c: c.update(quantizers=["int9"]), "quantizers.0"),
    (lambda c: c.update(metrics=["knowmem_r"]), "metrics"),
])
def test_a_bad_key_is_one_line_naming_it(edit, named):
    config = copy.deepcopy(TINY)
    edit(config)
    with pytest.raises(ConfigError) as err:
        onset.validate(config, "onset.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("onset.yaml: ") and named in message


def test_bin_widths_of_each_library_on_a_hand_built_weight():
    w = torch.zeros(2, 64)
    w[0, :32] = torch.linspace(-1.5, 3.0, 32)  # group 1: max 3, min -1.5
    w[0, 32:] = 0.5  # group 2: all positive, the range still holds 0
    w[1] = torch.linspace(-7.5, 7.5, 64)
    # LLM.int8: per row absmax / 127
    assert torch.allclose(onset.bin_widths(w, "int8")[0], torch.full((64,), 3.0 / 127))
    # bitsandbytes 4-bit: blocks of 64 (one per row here), 2 absmax / 15
    assert torch.allclose(onset.bin_widths(w, "nf4"), torch.tensor([[0.4] * 64, [1.0] * 64]))
    # torchao 2-bit groups of 32: (max(w, 0) - min(w, 0)) / 3
    bins = onset.bin_widths(w, "int2_g32")
    assert torch.allclose(bins[0, :32], torch.full((32,), 1.5))
    assert torch.allclose(bins[0, 32:], torch.full((32,), 0.5 / 3))


def test_update_over_bin_counts_the_quantized_weights_only():
    w = torch.zeros(2, 64)
    w[:, 0] = 7.5  # absmax 7.5 in each row: NF4 bin 1.0
    before = {"model.layers.0.mlp.up_proj.weight": w, "model.embed_tokens.weight": torch.ones(4, 64)}
    after = {"model.layers.0.mlp.up_proj.weight": w + 0.25, "model.embed_tokens.weight": torch.ones(4, 64) * 9}
    moved = onset.update_over_bin(before, after, ["nf4", "nf4_b64_emb"])
    assert moved["nf4"]["update_over_bin"] == pytest.approx(0.25)  # 0.25 / 1.0; embeddings left out
    assert moved["nf4"]["update_abs"] == pytest.approx(0.25)
    # with the embeddings: their bin is 2/15, their update 8 -> 60 bins, over 128 + 256 weights
    assert moved["nf4_b64_emb"]["update_over_bin"] == pytest.approx((128 * 0.25 + 256 * 60) / 384)


@pytest.mark.slow  # matplotlib's import: seconds under load
def test_the_figure_draws_a_result(tmp_path):
    from unlearning.report.onset import figure

    config = onset.validate(copy.deepcopy(TINY))
    point = {"optimizer": "adam", "width": 32, "update_over_bin": {q: 0.1 for q in config["quantizers"]},
             "recovery": {q: {"knowmem_f": 1.0} for q in config["quantizers"]}}
    path = figure({"config": config, "widths": [{"width": 32}], "points": [point, {**point, "lr": 2}]},
                  tmp_path / "onset.png")
    assert path.stat().st_size > 1000


@pytest.mark.slow
def test_a_tiny_scan_writes_its_json(tmp_path):
    path = tmp_path / "onset.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    onset.scan(onset.load(path), tmp_path / "out")
    result = json.loads((tmp_path / "out" / "onset.json").read_text(encoding="utf-8"))
    assert (tmp_path / "out" / "onset.png").exists()
    assert [w["width"] for w in result["widths"]] == [32]
    target = result["widths"][0]
    assert set(target["scores"]) == {"none", *TINY["quantizers"]}
    assert set(target["quantization_change"]) == set(TINY["quantizers"])
    assert [(p["optimizer"], p["lr"]) for p in result["points"]] == [("adam", 1.0e-4), ("adam", 1.0e-3)]
    for p in result["points"]:
        assert p["grade"] == "first"
        assert set(p["update_over_bin"]) == set(p["qcode_change"]) == set(p["recovery"]) == set(TINY["quantizers"])
        for q in TINY["quantizers"]:
            after, before = p["scores"][q]["knowmem_f"], p["scores"]["none"]["knowmem_f"]
            assert p["recovery"][q]["knowmem_f"] == pytest.approx(after - before)
            assert 0 <= p["qcode_change"][q] <= 100
    # ten times the learning rate moves the weights further in bins
    small, large = result["points"]
    assert large["update_over_bin"]["nf4"] > 3 * small["update_over_bin"]["nf4"] > 0
    assert result["work_seconds"] > 0
    # a rerun into the same folder trains and unlearns nothing again, and still counts that work's time
    again = onset.scan(onset.load(path), tmp_path / "out")
    assert [p["seconds"] for p in again["points"]] == [p["seconds"] for p in result["points"]]
    assert again["widths"][0]["training"] == target["training"]
    trained = json.loads((tmp_path / "out" / "w32" / "target" / onset.CLOCK).read_text(encoding="utf-8"))
    assert 0 < trained["seconds"] <= target["seconds"] and again["widths"][0]["seconds"] >= trained["seconds"]


def _recorded(tmp_path: Path, recovery_nf4: float) -> Path:
    """A repository root holding a recorded scan of two Adam points at one width."""
    config = onset.validate(copy.deepcopy(TINY))
    config["quantizers"] = ["nf4"]
    points = [{"width": 32, "optimizer": "adam", "lr": lr, "update_over_bin": {"nf4": ub},
               "update": {"nf4": {"update_abs": 40 * lr, "bin": 0.01, "weight_abs": 0.02, "update_over_bin": ub}},
               "qcode_change": {"nf4": 10.0}, "scores": {"none": {"knowmem_f": 90 - gap}},
               "gap": {"knowmem_f": gap}, "recovery": {"nf4": {"knowmem_f": rec}}, "seconds": 3.0}
              for lr, ub, gap, rec in ((1e-5, 0.04, 2.0, 2.0), (1e-3, 0.8, 60.0, recovery_nf4))]
    result = {"config": config, "widths": [{"width": 32, "params": 32608, "training": {"steps": 4},
                                            "scores": {"none": {"knowmem_f": 90.0}},
                                            "quantization_change": {"nf4": {"knowmem_f": -1.0}}, "seconds": 60.0}],
              "points": points, "seconds": 70.0, "cpu_seconds": 65.0, "work_seconds": 66.0, "work_cpu_seconds": 60.0}
    data = tmp_path / "docs" / "measurements" / "data"
    data.mkdir(parents=True)
    (data / "onset.json").write_text(json.dumps({"name": "onset", "command": "x", "commit": "abc", "cpu": "CPU",
                                                 "shared": True, "date": "2026-12-03", "note": "",
                                                 "output": [result]}), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("recovery, says", [(30.0, "restored at least 30% of the forgotten knowmem_f at 1 of 1"),
                                            (10.0, "No quantizer restored 30% of the forgotten knowmem_f")])
def test_the_readme_paragraph_judges_each_point_by_the_presence_rule(tmp_path, recovery, says):
    from unlearning.report.onset import BIN_7B, onset_block, onset_table

    root = _recorded(tmp_path, recovery)
    text = onset_block(root)
    assert says in text  # 30% of the 60-point gap is 18 points; the 2-point gap is below presence_min_gap
    assert "1 min, 1 CPU-min, CPU, shared with other work" in text
    assert f"{40 * 1e-5 / BIN_7B:.2g} bins at 1e-05" in text  # Adam's move per lr (40) over 7B's bin
    table = onset_table(root)
    assert "| 32 | adam | 0.001 | 0.8 | 10.0 | 30.0 | 60.0 | " in table


def test_forgetting_onset_is_the_smallest_update_that_forgot_per_width():
    from unlearning.report.onset import forgetting_onset

    points = [{"width": w, "gap": {"knowmem_f": g}, "update_over_bin": {"nf4": u}}
              for w, g, u in ((64, 2.0, 0.01), (64, 12.0, 0.5), (64, 40.0, 0.2), (128, 9.9, 0.1), (128, 11.0, 0.3))]
    assert forgetting_onset({"points": points}, "knowmem_f", 10.0) == {64: 0.2, 128: 0.3}
