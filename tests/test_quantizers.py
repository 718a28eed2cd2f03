"""The library quantizers (src/unlearning/attacks/lowbit.py) behind the registry's stronger attacks: what
one weight is stored as and restored to, which weights a model gets quantized, and what qcode_change
counts. Each check runs on every registry entry that names the module."""

from __future__ import annotations

import pytest
import torch

from unlearning import registry
from unlearning.attacks import lowbit
from unlearning.attacks.quantization import four_bit_codes, qcode_changes

LOWBIT = {n: a for n, a in registry.ATTACKS.items() if a.apply == "unlearning.attacks.lowbit:apply"}
ARCH = {"hidden_size": 64, "intermediate_size": 128, "num_layers": 1, "num_heads": 2, "max_len": 32}


def _settings(name: str) -> dict:
    return {k: v for k, v in LOWBIT[name].settings.items() if k != "embeddings"}


def _groups(t: torch.Tensor, s: dict) -> torch.Tensor:
    """The weights sharing one scale, one group a row: torchao's groups along each row, bitsandbytes'
    blocks of the flattened weight."""
    return t.reshape(-1, s["group_size"] if s["library"] == "torchao" else s["blocksize"])


def _weight(rows: int = 64, cols: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[3, 7] = 0.6  # an outlier, as trained weights have
    return w


def test_the_stronger_quantizers_are_registered_from_two_libraries():
    assert {a.settings["library"] for a in LOWBIT.values()} == {"torchao", "bitsandbytes"}
    assert {a.settings.get("bits") for a in LOWBIT.values()} >= {2, 3}
    assert any(a.settings.get("embeddings") for a in LOWBIT.values())
    # not the paper's 4-bit attacks: the findings keep judging bitsandbytes' NF4 as loaded
    assert not any(a.four_bit for a in LOWBIT.values()) and registry.PRIMARY_QUANTIZATION == "nf4"


@pytest.mark.parametrize("name", sorted(LOWBIT))
def test_each_group_holds_at_most_2_to_the_bits_values_the_codes_name(name):
    s = _settings(name)
    bits = s.get("bits", 4)
    w = _weight()
    codes, restored = lowbit.quantize(w, **s)
    assert restored.shape == w.shape and restored.dtype == torch.float32 and codes.shape == w.shape
    assert not torch.equal(restored, w)
    assert codes.unique().numel() <= 2 ** bits
    for c, r in zip(_groups(codes, s), _groups(restored, s)):
        assert r.unique().numel() <= 2 ** bits
        # within a group a code stands for one value: the restored weight is a function of the code
        for code in c.unique():
            assert r[c == code].unique().numel() == 1
    if s["library"] == "torchao":  # min-max affine: no weight moves by more than one bin of its group
        g = _groups(w, s)
        step = (g.amax(1, keepdim=True) - g.amin(1, keepdim=True)) / (2 ** bits - 1)
        assert ((_groups(restored, s) - g).abs() <= step + 1e-6).all()
    # quantizing is deterministic (qcode_change compares two models' codes)
    again = lowbit.quantize(w.clone(), **s)
    assert torch.equal(again[0], codes) and torch.equal(again[1], restored)


@pytest.mark.parametrize("name", sorted(n for n in LOWBIT if LOWBIT[n].settings["library"] == "torchao"))
def test_torchao_values_are_those_its_own_quantize_api_gives_a_linear_layer(name):
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    s = _settings(name)
    layer = torch.nn.Linear(128, 64, bias=False)
    with torch.no_grad():
        layer.weight.copy_(_weight())
    codes, restored = lowbit.quantize(layer.weight, **s)
    quantize_(layer, IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{s['bits']}"),
                                          granularity=PerGroup(s["group_size"]), mapping_type=MappingType.ASYMMETRIC))
    assert torch.equal(layer.weight.qdata, codes)
    assert torch.equal(layer.weight.dequantize(), restored)


def test_bitsandbytes_block_64_stores_the_codes_of_the_loaded_nf4():
    w = _weight()
    codes, _ = lowbit.quantize(w, "bitsandbytes", quant_type="nf4", blocksize=64)
    assert torch.equal(codes.flatten(), four_bit_codes(w, "nf4"))
    wide, _ = lowbit.quantize(w, "bitsandbytes", quant_type="nf4", blocksize=4096)
    assert not torch.equal(wide, codes)  # the block size is honoured


def test_a_group_size_that_does_not_divide_a_row_is_refused():
    with pytest.raises(ValueError, match="group_size 48"):
        lowbit.quantize(_weight(), "torchao", bits=3, group_size=48)
    with pytest.raises(ValueError, match="unknown quantization library 'quanto'"):
        lowbit.quantize(_weight(), "quanto")


def _model():
    from unlearning.models import build_model

    return build_model(ARCH, 96, seed=0)


@pytest.mark.parametrize("embeddings", [False, True])
def test_the_embeddings_option_quantizes_embed_tokens_and_lm_head_too(embeddings):
    name = "int2_g32_emb" if embeddings else "int2_g32"
    before = {n: p.detach().clone() for n, p in _model().named_parameters()}
    model = lowbit.apply(_model(), **LOWBIT[name].settings)
    s = _settings(name)
    touched = set()
    for n, p in model.named_parameters():
        if lowbit.quantized(n, embeddings):
            assert torch.equal(p, lowbit.quantize(before[n], **s)[1]), n  # exactly the library's values
            touched.add(n.rsplit(".", 2)[-2])
        else:
            assert torch.equal(p, before[n]), n  # norms always, embeddings and lm_head unless asked
    linear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert touched == (linear | {"embed_tokens", "lm_head"} if embeddings else linear)


def test_load_model_applies_the_entry_with_its_settings(tmp_path):
    from unlearning.models import load_model

    model = _model()
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(tmp_path / "m", quant="int3_g32_emb", dev=torch.device("cpu"))
    s = _settings("int3_g32_emb")
    for n in ("model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.down_proj.weight"):
        assert torch.equal(loaded.get_parameter(n), lowbit.quantize(model.get_parameter(n), **s)[1]), n


def test_qcode_change_counts_embeddings_only_for_entries_that_quantize_them(tmp_path):
    from safetensors.torch import save_file

    ref = {n: p.detach().clone() for n, p in _model().named_parameters()}
    new = {n: v.clone() for n, v in ref.items()}
    new["lm_head.weight"] = -new["lm_head.weight"]
    for name, w in (("ref", ref), ("new", new)):
        (tmp_path / name).mkdir()
        save_file(w, str(tmp_path / name / "model.safetensors"))
    changed = qcode_changes(tmp_path / "ref", tmp_path / "new", ["int2_g32", "int2_g32_emb"], device="cpu")
    assert changed["int2_g32"] == 0.0
    counted = [n for n in ref if lowbit.quantized(n, embeddings=True)]
    flips = int((lowbit.codes(ref["lm_head.weight"], "int2_g32_emb")
                 != lowbit.codes(new["lm_head.weight"], "int2_g32_emb")).sum())
    assert flips > 0
    assert changed["int2_g32_emb"] == pytest.approx(100.0 * flips / sum(ref[n].numel() for n in counted))


def _target_rows(bench: str, metric: str, values: dict[str, tuple[float, float]]) -> list[dict]:
    return [{"benchmark": bench, "method": "none", "optimizer": "target", "grade": "reference", "seed": s,
             "attack": a, "metric": metric, "value": v[s]} for a, v in values.items() for s in (0, 1)]


def test_the_report_checks_that_the_target_keeps_its_forget_knowledge_under_each_quantizer():
    import pandas as pd

    from unlearning.report import quant_check

    muse = _target_rows("muse", "knowmem_f", {"none": (95.0, 40.0), "int2_g32": (90.0, 38.0),
                                              "int2_g32_emb": (78.0, 39.0)})
    muse += _target_rows("muse", "knowmem_r", {"none": (98.0, 30.0), "int2_g32_emb": (10.0, 10.0)})  # utility
    wmdp = _target_rows("wmdp", "wmdp_acc", {"none": (100.0, 100.0), "int2_g32": (92.0, 95.0)})
    unlearned = [{**r, "method": "npo", "optimizer": "adam", "value": 0.0} for r in muse]  # not the target
    tables = {"muse": pd.DataFrame(muse + unlearned), "wmdp": pd.DataFrame(wmdp)}
    df = quant_check.target_keeps(tables, 0.9).set_index(["benchmark", "attack", "metric"])
    assert list(df.index) == [("muse", "int2_g32", "knowmem_f"), ("muse", "int2_g32_emb", "knowmem_f"),
                              ("wmdp", "int2_g32", "wmdp_acc")]
    ok = df.loc[("muse", "int2_g32", "knowmem_f")]
    assert ok.kept == pytest.approx((90 / 95 + 38 / 40) / 2) and ok.kept_min == pytest.approx(90 / 95) and ok.keeps
    assert not df.loc[("muse", "int2_g32_emb", "knowmem_f")].keeps  # 78 / 95 = 82% on seed 0
    acc = df.loc[("wmdp", "int2_g32", "wmdp_acc")]  # above chance (25): 67 / 75 = 89% on seed 0
    assert acc.kept_min == pytest.approx(67 / 75) and not acc.keeps
    assert quant_check.target_keeps(tables, 0.8).loc[lambda d: d.attack == "int2_g32_emb", "keeps"].all()
    text = quant_check.markdown(tables, 0.9)
    assert text.startswith("Under INT2 g32, INT2 g32 + embeddings the target itself loses more than 10%")
    assert "| muse | INT2 g32 + embeddings | knowmem_f | 67.5 | 58.5 | 89.8% | 82.1% | **no** |" in text


def test_the_quant_strong_overlay_adds_every_library_quantizer_to_the_default_study():
    from pathlib import Path

    import yaml
    from snakemake.utils import update_config

    from unlearning.config import attacks_for_reference, validate

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config.yaml").read_text())
    default = yaml.safe_load((root / "config.yaml").read_text())
    overlay = yaml.safe_load((root / "configs" / "overlays" / "quant-strong.yaml").read_text())
    update_config(config, overlay)  # as Snakemake merges a second --configfile
    # only the quantizations change: the default study's models are reused
    assert {k: v for k, v in config.items() if k != "attacks"} == {k: v for k, v in default.items() if k != "attacks"}
    assert config["attacks"]["relearn"] == default["attacks"]["relearn"]
    assert config["attacks"]["quantization"][:3] == default["attacks"]["quantization"]
    assert set(LOWBIT) <= set(attacks_for_reference(validate(config)))
