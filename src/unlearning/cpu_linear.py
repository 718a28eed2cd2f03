"""Dense fp32 linear layers on the CPU through oneDNN rather than MKL.

torch's CPU wheel multiplies fp32 matrices with MKL's sgemm, which takes its AVX2 code path on AMD
CPUs even where they have AVX-512 (MKL_CBWR and MKL_ENABLE_INSTRUCTIONS do not change that; MKL is
linked into torch, so nothing outside can). oneDNN, also inside torch, picks its kernels by the
instruction sets the CPU reports. On this project's 2-core AMD EPYC (AVX-512) a [680 x 128] x
[128 x 384] product, the size of this study's layers, runs at 240 GFLOPS single-threaded with oneDNN
and 110 with MKL; a whole unlearning run is 20-27% faster (docs/measurements/speed-and-memory.md). Both compute in
full fp32: this changes the order of float additions (as a different CPU does), not the precision.

``use_onednn_linear(model)`` turns every plain ``nn.Linear`` of a model into :class:`OneDNNLinear`
(same parameters, same state dict, same saved files). Its forward and both gradients are oneDNN
matrix products; inputs with fewer than ``MIN_ROWS`` rows (one token per sequence while generating
at a small batch), other dtypes and other devices take ``torch.nn.functional.linear`` as before,
where MKL's smaller per-call cost wins. ``UNLEARNING_CPU_LINEAR=torch`` turns the whole thing off.
"""

from __future__ import annotations

import os

import torch
from torch import nn

ENV = "UNLEARNING_CPU_LINEAR"
BACKENDS = ("onednn", "torch")
# Below this many rows MKL is faster (per call, single thread: 26 vs 8 GFLOPS at 1 row, 70 vs 47 at
# 8, 105 vs 167 at 64; [r x 128] x [128 x 384]).
MIN_ROWS = 32


def backend() -> str:
    """The CPU linear backend this process uses: ``onednn`` when torch has oneDNN's linear op and
    ``UNLEARNING_CPU_LINEAR`` does not say ``torch``, else ``torch``."""
    wanted = os.environ.get(ENV, "onednn").strip().lower() or "onednn"
    if wanted not in BACKENDS:
        raise ValueError(f"{ENV} must be one of {BACKENDS}, got {wanted!r}")
    if wanted == "onednn" and not _onednn_available():
        return "torch"
    return wanted


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` for 2-D ``x`` by oneDNN (strided operands are read in place)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """y = x W^T + b, with dx = dy W and dW = dy^T x, all three products by oneDNN."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        return _matmul(rows, weight, bias).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _matmul(g, weight.t()).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            gw = _matmul(g.t(), x.reshape(-1, x.shape[-1]).t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose fp32 CPU products of at least ``MIN_ROWS`` rows run on oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or x.numel() < MIN_ROWS * x.shape[-1]):
            return super().forward(x)
        return _OneDNNLinearFunction.apply(x, self.weight, self.bias)


def use_onednn_linear(model: nn.Module) -> int:
    """Make every plain ``nn.Linear`` of ``model`` a :class:`OneDNNLinear` (in place; parameters and
    state dict unchanged) unless the backend is ``torch``; returns how many layers changed.
    Quantized layers (bitsandbytes' subclasses) and other modules are left alone."""
    if backend() != "onednn":
        return 0
    n = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            n += 1
    return n
