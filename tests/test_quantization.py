"""qcode_change: the share of quantization codes that differ between two models."""

from __future__ import annotations

import pytest
import torch

from unlearning.attacks.quantization import codes, qcode_change
from unlearning.models import build_model

ARCH = dict(hidden_size=64, intermediate_size=128, num_layers=1, num_heads=2, max_len=64)


def _save(model, path):
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.mark.parametrize("quant", ["int8", "fp4", "nf4"])
@pytest.mark.slow
def test_identical_models_share_every_code(tmp_path, quant):
    m = build_model(ARCH, 300, seed=0)
    a, copy = _save(m, tmp_path / "a"), _save(m, tmp_path / "copy")
    assert qcode_change(a, copy, quant) == 0.0  # computed: same weights in another folder


def test_model_against_itself_is_not_read_and_threads_are_restored(tmp_path):
    from unlearning.attacks.quantization import qcode_changes

    missing = tmp_path / "not-there"  # the target's own evaluation: nothing to read or compare
    assert qcode_changes(missing, missing, ["int8", "nf4"]) == {"int8": 0.0, "nf4": 0.0}
    m = build_model(ARCH, 300, seed=0)
    a = _save(m, tmp_path / "a")
    with torch.no_grad():
        m.model.layers[0].mlp.up_proj.weight.mul_(-1.0)
    b = _save(m, tmp_path / "b")
    before = torch.get_num_threads()
    one = qcode_changes(a, b, ["int8", "fp4"], device="cpu", threads=1)
    two = qcode_changes(a, b, ["int8", "fp4"], device="cpu", threads=2)
    assert one == two and one["int8"] > 0
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("quant", ["fp4", "nf4"])
def test_changing_one_block_changes_only_its_codes(tmp_path, quant):
    m = build_model(ARCH, 300, seed=0)
    a = _save(m, tmp_path / "a")
    w = m.model.layers[0].mlp.down_proj.weight  # [64, 128]: one quantization block is 64 weights
    before = codes(w, quant)
    with torch.no_grad():
        w.view(-1)[:64] *= -1.0  # negate exactly one block (same absmax, mirrored values)
    after = codes(w, quant)
    b = _save(m, tmp_path / "b")
    diff = (before != after).nonzero().flatten()
    assert len(diff) >= 48 and diff.max() < 64  # only the first block; most of its codes
    total = sum(p.numel() for n, p in m.named_parameters() if n.endswith("proj.weight"))
    assert qcode_change(a, b, quant) == pytest.approx(100 * len(diff) / total)


def test_codes_match_what_bitsandbytes_stores():
    import bitsandbytes.functional as F

    w = torch.randn(32, 64)
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4")
    # Dequantising our unpacked codes through the NF4 table and the block absmax gives back
    # bitsandbytes' own dequantisation.
    table = state.code.float()
    absmax = state.absmax.float().repeat_interleave(64)
    ours = table[codes(w, "nf4").long()] * absmax
    ref = F.dequantize_4bit(packed, state).flatten().float()
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-3)


def test_int8_codes_are_rowwise_absmax():
    w = torch.tensor([[1.0, -0.5, 0.25], [2.0, 0.0, -2.0]])
    assert codes(w, "int8").tolist() == [[127, -64, 32], [127, 0, -127]]
