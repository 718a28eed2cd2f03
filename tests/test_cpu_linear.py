"""oneDNN linear layers on the CPU: same products and gradients as torch's, same parameters and files
(test_cpu_linear_choice.py: when they are used)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearning import cpu_linear
from unlearning.cpu_linear import MIN_ROWS, OneDNNLinear, onednn_layers, use_onednn_linear

pytestmark = pytest.mark.skipif(not cpu_linear._onednn_available(), reason="torch built without oneDNN")


def _pair(bias: bool, seed: int = 0) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(seed)
    plain = nn.Linear(128, 384, bias=bias)
    fast = nn.Linear(128, 384, bias=bias)
    fast.load_state_dict(plain.state_dict())
    assert onednn_layers(fast) == 1
    return plain, fast


@pytest.mark.parametrize("bias", [True, False])
def test_product_and_gradients_equal_torchs(bias):
    plain, fast = _pair(bias)
    assert isinstance(fast, OneDNNLinear)
    x = torch.randn(4, 40, 128)  # [batch, tokens, features], as a transformer layer sees it
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [plain(xs[0]), fast(xs[1])]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    g = torch.randn_like(outs[0])
    for out in outs:
        out.backward(g)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-4)
    if bias:
        torch.testing.assert_close(fast.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-4)


def test_frozen_weights_get_no_gradient_and_inputs_still_do():
    plain, fast = _pair(True)
    for layer in (plain, fast):
        layer.requires_grad_(False)
    x = torch.randn(64, 128)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    plain(xs[0]).square().sum().backward()
    fast(xs[1]).square().sum().backward()
    assert fast.weight.grad is None
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-5, atol=1e-4)


def test_few_rows_take_torchs_product_exactly():
    plain, fast = _pair(True)
    x = torch.randn(MIN_ROWS - 1, 128)  # e.g. one generated token for each of a few sequences
    assert torch.equal(fast(x), plain(x))


def test_other_dtypes_take_torchs_product():
    plain, fast = _pair(True)
    plain.double(), fast.double()
    x = torch.randn(64, 128, dtype=torch.float64)
    assert torch.equal(fast(x), plain(x))


def test_only_plain_linear_layers_change_and_the_state_dict_does_not():
    class Sub(nn.Linear):
        pass

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), Sub(8, 8), nn.Sequential(nn.Linear(8, 4, bias=False)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert onednn_layers(model) == 2
    assert [type(m).__name__ for m in model.modules()] == [
        "Sequential", "OneDNNLinear", "ReLU", "Sub", "Sequential", "OneDNNLinear"]
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert onednn_layers(model) == 0  # already converted


def test_the_variable_forces_either_path(monkeypatch):
    monkeypatch.setenv(cpu_linear.ENV, "torch")
    layer = nn.Linear(4, 4)
    assert cpu_linear.backend() == "torch" and use_onednn_linear(layer) == 0 and type(layer) is nn.Linear
    monkeypatch.setenv(cpu_linear.ENV, "onednn")
    assert cpu_linear.backend() == "onednn" and use_onednn_linear(layer) == 1 and type(layer) is OneDNNLinear


@pytest.mark.slow
def test_a_llama_trains_alike_and_saves_the_same_files(tmp_path, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearning.models import load_model

    monkeypatch.setenv(cpu_linear.ENV, "onednn")  # whatever this machine would choose
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    plain = LlamaForCausalLM(cfg)
    plain.save_pretrained(tmp_path / "plain")
    fast = load_model(tmp_path / "plain", dev=torch.device("cpu"))
    assert sum(isinstance(m, OneDNNLinear) for m in fast.modules()) == 2 * 7 + 1  # q k v o gate up down, lm_head
    ids = torch.randint(0, 64, (4, 24))  # 96 rows per product
    losses = {}
    for name, model in (("plain", plain), ("fast", fast)):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
        losses[name] = loss.item()
    assert losses["fast"] == pytest.approx(losses["plain"], rel=1e-5)
    fast.save_pretrained(tmp_path / "fast")
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "fast" / "model.safetensors")
    assert a.keys() == b.keys()

