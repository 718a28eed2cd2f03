"""Where a result was made: the library versions, device and CPU kernels that change its numbers.

Training trajectories and quantized kernels differ between torch's CPU capabilities (AVX2 vs AVX512)
and between library releases, so every evaluation JSON records this block and the summary shows it.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

# Libraries whose releases change numbers (kernels, defaults, tokenisation).
_LIBRARIES = ("torch", "transformers", "bitsandbytes", "tokenizers", "accelerate")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_has_avx512_bf16() -> bool:
    """Whether bitsandbytes sees AVX512-BF16 on this CPU (its packed 4-bit path would then apply)."""
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


def environment(dev: Any = None) -> dict[str, Any]:
    """The versions, device and CPU kernel facts that affect a result's numbers (JSON-ready).

    ``cpu_4bit_path`` is the bitsandbytes path 4-bit layers take on the CPU; the project always takes
    the portable one (see ``models.portable_4bit_path``), whatever the CPU offers. ``cpu_linear`` is
    the library that multiplies fp32 linear layers on the CPU and ``cpu_linear_reason`` why (forced,
    measured: both GFLOPS and the cache file, or unavailable; ``cpu_linear.choice``), and
    ``onednn_max_cpu_isa`` the instruction-set cap its oneDNN kernels were given (``ONEDNN_MAX_CPU_ISA``;
    ``default``: the best the CPU has).
    """
    import os

    import torch

    from .cpu_linear import choice
    from .models import CPU_4BIT_PATH, device

    dev = torch.device(dev) if dev is not None else device()
    env: dict[str, Any] = {f"{lib}_version": _version(lib) for lib in _LIBRARIES}
    env["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    env["cpu_avx512_bf16"] = cpu_has_avx512_bf16()
    env["cpu_4bit_path"] = CPU_4BIT_PATH
    linear = choice()
    env["cpu_linear"], env["cpu_linear_reason"] = linear.backend, linear.reason
    env["onednn_max_cpu_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "default"))
    return env
