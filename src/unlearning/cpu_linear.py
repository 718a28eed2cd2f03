"""Dense fp32 linear layers on the CPU through oneDNN or torch's default (MKL), whichever is faster here.

torch's CPU wheel multiplies fp32 matrices with MKL's sgemm, which takes its AVX2 code path on AMD
CPUs even where they have AVX-512 (MKL_CBWR and MKL_ENABLE_INSTRUCTIONS do not change that; MKL is
linked into torch, so nothing outside can). oneDNN, also inside torch, picks its kernels by the
instruction sets the CPU reports. On an AMD EPYC with AVX-512 a [680 x 128] x [128 x 384] product,
the size of this study's layers, runs about twice as fast single-threaded with oneDNN, and a whole
unlearning run 20-27% faster; on an AMD EPYC with AVX2 only oneDNN is the slower of the two
(docs/measurements/speed-and-memory.md). Both compute in full fp32: the choice changes the order of
float additions (as a different CPU does), not the precision.

So the path chooses itself per machine. ``UNLEARNING_CPU_LINEAR`` is ``auto`` (the default),
``onednn`` or ``torch``. ``auto`` times one forward and backward pass of the default study's linear
layers (``ROWS`` rows; the shapes and counts of ``LAYERS``) on both paths, single-threaded as the
rules run, best of ``PASSES`` interleaved passes (well under 2 s), and takes oneDNN only when it is
more than ``MARGIN`` faster, so that the choice is never slower than torch's default. The decision is
measured once per machine and cached as JSON in ``$XDG_CACHE_HOME/unlearning`` (else
``~/.cache/unlearning``), in a file named by a hash of what changes either library's speed: the CPU
model and flags, torch's version and the instruction-set caps the environment gives oneDNN, MKL and
torch (``KERNEL_VARIABLES``). Parallel jobs take a file lock, so one measures and the rest read its
decision; every job of a machine then uses the same path. A cache that cannot be read is measured
again, one that cannot be written leaves the decision to this process; neither is an error.
``choice()`` says which path runs and why (forced, measured with both GFLOPS and the cache file, or
oneDNN unavailable); every evaluation records both (``provenance.environment``).

``use_onednn_linear(model)`` turns every plain ``nn.Linear`` of a model into :class:`OneDNNLinear`
(same parameters, same state dict, same saved files) when the path is ``onednn``. Its forward and
both gradients are oneDNN matrix products; inputs with fewer than ``MIN_ROWS`` rows (one token per
sequence while generating at a small batch), other dtypes and other devices take
``torch.nn.functional.linear`` as before, where MKL's smaller per-call cost wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

ENV = "UNLEARNING_CPU_LINEAR"
CHOICES = ("auto", "onednn", "torch")
BACKENDS = ("onednn", "torch")
# Below this many rows MKL is faster (per call, single thread: 26 vs 8 GFLOPS at 1 row, 70 vs 47 at
# 8, 105 vs 167 at 64; [r x 128] x [128 x 384]).
MIN_ROWS = 32

# The default study's products (config.yaml's model): a forget batch of 8 x 85 tokens; per decoder
# layer q, k, v, o (128 -> 128), gate, up (128 -> 384), down (384 -> 128); the lm_head (128 -> 1024).
ROWS = 680
LAYERS = ((128, 128, 4), (128, 384, 2), (384, 128, 1), (128, 1024, 1))  # (in, out, layers of that shape)
PASSES = 8
# oneDNN must be this much faster to be chosen: within timing noise the choice stays torch's default.
MARGIN = 0.05
# Variables that cap the instruction sets of oneDNN, MKL or torch's own kernels, so change the decision.
KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR",
                    "MKL_DEBUG_CPU_TYPE", "ATEN_CPU_CAPABILITY")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Choice:
    """The linear path this process uses (``backend``) and why (``reason``, one line)."""

    backend: str
    reason: str


def backend() -> str:
    """The CPU linear backend this process uses, ``onednn`` or ``torch`` (see :func:`choice`)."""
    return choice().backend


def choice() -> Choice:
    """The CPU linear path and why: forced by ``UNLEARNING_CPU_LINEAR``, oneDNN unavailable in this
    torch, or (``auto``) measured once per machine and read from the cache after."""
    wanted = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if wanted not in CHOICES:
        raise ValueError(f"{ENV} must be one of {CHOICES}, got {wanted!r}")
    if wanted == "torch":
        return Choice("torch", f"forced: {ENV}=torch")
    if not _onednn_available():
        return Choice("torch", "unavailable: this torch has no oneDNN linear op")
    if wanted == "onednn":
        return Choice("onednn", f"forced: {ENV}=onednn")
    return _decided()


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# --------------------------------------------------------------------------------------------------
# The measured decision and its cache.


def decide(torch_gflops: float, onednn_gflops: float) -> str:
    """``onednn`` when it is more than ``MARGIN`` faster than torch's default, else ``torch``."""
    return "onednn" if onednn_gflops > torch_gflops * (1 + MARGIN) else "torch"


def measure(passes: int = PASSES, timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Single-threaded GFLOPS of one forward and backward pass of ``LAYERS`` at ``ROWS`` rows, by
    torch's default and by oneDNN: best of ``passes`` passes each, interleaved so that other work on
    the machine slows both alike."""
    gen = torch.Generator().manual_seed(0)
    work = []
    for n_in, n_out, count in LAYERS:
        plain = nn.Linear(n_in, n_out)
        fast = nn.Linear(n_in, n_out)
        fast.load_state_dict(plain.state_dict())
        fast.__class__ = OneDNNLinear
        x = torch.randn(ROWS, n_in, generator=gen).requires_grad_()
        work.append((plain, fast, x, torch.randn(ROWS, n_out, generator=gen), count))
    flop = sum(3 * 2.0 * ROWS * n_in * n_out * count for n_in, n_out, count in LAYERS)  # y, dx, dW

    def one_pass(i: int) -> float:
        t0 = timer()
        for layers in work:
            layer, x, g = layers[i], layers[2], layers[3]
            for _ in range(layers[4]):
                layer(x).backward(g)
        return timer() - t0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = [float("inf"), float("inf")]
        for k in range(passes + 1):  # the first pass of each warms up
            for i in (0, 1):
                t = one_pass(i)
                if k:
                    best[i] = min(best[i], t)
    finally:
        torch.set_num_threads(threads)
    return {name: round(flop / max(t, 1e-12) / 1e9, 1) for name, t in zip(("torch_gflops", "onednn_gflops"), best)}


def machine_key() -> dict[str, Any]:
    """What changes either library's speed on this machine: CPU model and flags, torch's version and
    the instruction-set caps set in the environment (``KERNEL_VARIABLES``)."""
    model, flags = platform.machine(), ""  # not platform.processor(): that starts `uname -p`
    try:
        first = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").split("\n\n")[0]
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
        model, flags = fields.get("model name", model), " ".join(sorted(fields.get("flags", "").split()))
    except OSError:  # not Linux: the architecture stands for the CPU
        pass
    return {"cpu": model, "flags": hashlib.sha256(flags.encode()).hexdigest()[:16], "torch": torch.__version__,
            **{v: os.environ.get(v, "") for v in KERNEL_VARIABLES}}


def cache_file(key: dict[str, Any] | None = None) -> Path:
    """The JSON file that holds this machine's decision: ``cpu_linear-<hash of the key>.json`` in
    ``$XDG_CACHE_HOME/unlearning`` or ``~/.cache/unlearning``."""
    key = machine_key() if key is None else key
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unlearning"
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return root / f"cpu_linear-{digest}.json"


_DECIDED: dict[Path, Choice] = {}  # per process: the cache is read once per file


def _decided() -> Choice:
    key = machine_key()
    try:
        path = cache_file(key)
    except RuntimeError:  # no home folder to cache in
        return _DECIDED.setdefault(Path(), _measured(None, key, "not cached: no home folder"))
    if path not in _DECIDED:
        _DECIDED[path] = _read_or_measure(path, key)
    return _DECIDED[path]


def _reason(rec: dict[str, Any], where: str) -> str:
    return f"measured: torch {rec['torch_gflops']}, onednn {rec['onednn_gflops']} GFLOPS; {where}"


def _read(path: Path, key: dict[str, Any]) -> Choice | None:
    """The decision cached at ``path`` for ``key``; None when missing, unreadable or not this key's."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("version") != CACHE_VERSION or rec.get("key") != key or rec["backend"] not in BACKENDS:
            return None
        float(rec["torch_gflops"]), float(rec["onednn_gflops"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Choice(rec["backend"], _reason(rec, path.name))


def _read_or_measure(path: Path, key: dict[str, Any]) -> Choice:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a+")
    except OSError as e:  # nowhere to cache: this process decides for itself
        return _measured(None, key, f"not cached: {type(e).__name__}")
    with lock:
        _flock(lock)  # released when the file closes
        return _read(path, key) or _measured(path, key, path.name)


def _flock(f) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a race measures twice, and the last write wins
        return
    fcntl.flock(f, fcntl.LOCK_EX)


def _measured(path: Path | None, key: dict[str, Any], where: str) -> Choice:
    try:
        rec = measure()
    except RuntimeError as e:  # oneDNN's op present but failing on this CPU
        return Choice("torch", f"unavailable: oneDNN's linear op failed ({str(e).splitlines()[0][:80]})")
    rec = {"version": CACHE_VERSION, "key": key, "backend": decide(rec["torch_gflops"], rec["onednn_gflops"]),
           **rec, "rows": ROWS, "layers": [list(x) for x in LAYERS], "passes": PASSES, "margin": MARGIN}
    if path is not None:
        try:
            with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp",
                                             delete=False, encoding="utf-8") as tmp:
                json.dump(rec, tmp, indent=1)
            os.replace(tmp.name, path)
        except OSError as e:
            where = f"not cached: {type(e).__name__}"
    return Choice(rec["backend"], _reason(rec, where))


# --------------------------------------------------------------------------------------------------
# The oneDNN layers.


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
    state dict unchanged) when the backend (:func:`choice`) is ``onednn``; returns how many layers changed.
    Quantized layers (bitsandbytes' subclasses) and other modules are left alone."""
    return onednn_layers(model) if backend() == "onednn" else 0


def onednn_layers(model: nn.Module) -> int:
    """Make every plain ``nn.Linear`` of ``model`` a :class:`OneDNNLinear` whatever the backend (for
    benchmarks and tests); returns how many layers changed."""
    n = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            n += 1
    return n
