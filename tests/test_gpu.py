"""One-shot CUDA check (marker `gpu`; skipped without CUDA): the smoke study on the GPU, 4-bit and
8-bit loading through bitsandbytes' CUDA kernels, and CPU/GPU agreement of the metrics.

Run it where a GPU is at hand:  .venv/bin/python -m pytest -m gpu -q tests/test_gpu.py
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from conftest import make_study, snakemake

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# bf16 on the GPU against fp32 on the CPU: scores computed from greedy generations and argmax
# letters may flip on near-ties, so agreement is required within these bounds (0-100 scales).
TOLERANCE = {"verbmem_f": 10.0, "knowmem_f": 10.0, "knowmem_r": 10.0, "wmdp_acc": 10.0,
             "mmlu_acc": 10.0, "mink_auc": 0.1}


@pytest.fixture(scope="module")
def gpu_study(tmp_path_factory):
    study = make_study(tmp_path_factory.mktemp("gpu") / "study")
    snakemake(study, "--cores", "2")
    return study


def test_smoke_study_runs_on_cuda_with_finite_metrics(gpu_study):
    for bench in ("muse", "wmdp"):
        df = pd.read_csv(gpu_study / "results" / "tables" / f"{bench}.csv")
        assert df.value.map(math.isfinite).all()
        assert {"int8", "fp4", "nf4"} <= set(df.attack)


@pytest.mark.parametrize("quant", ["int8", "fp4", "nf4"])
def test_quantized_loading_uses_bitsandbytes_cuda_layers(gpu_study, quant):
    from unlearning.models import load_model

    model = load_model(gpu_study / "results" / "models" / "muse" / "target" / "seed0", quant=quant)
    layer = model.model.layers[0].mlp.down_proj
    assert type(layer).__module__.startswith("bitsandbytes")
    assert next(model.parameters()).device.type == "cuda"
    ids = torch.tensor([[1, 5, 6, 7]], device="cuda")
    assert torch.isfinite(model(ids).logits.float()).all()


def test_cpu_and_gpu_metrics_agree(gpu_study):
    import yaml

    from unlearning.config import validate
    from unlearning.models import load_model, load_tokenizer
    from unlearning.stages.evaluate import score

    cfg = validate(yaml.safe_load((gpu_study / "configs" / "smoke.yaml").read_text()))
    for bench in ("muse", "wmdp"):
        path = gpu_study / "results" / "models" / bench / "target" / "seed0"
        data = gpu_study / "results" / "data" / bench
        tok = load_tokenizer(path)
        got = {}
        for dev in ("cpu", "cuda"):
            model = load_model(path, dev=torch.device(dev))
            got[dev] = score(model, tok, data, bench, cfg["evaluation"], "biology", [])
        for metric, cpu_value in got["cpu"].items():
            if metric in TOLERANCE:
                assert abs(cpu_value - got["cuda"][metric]) <= TOLERANCE[metric], (bench, metric, got)


# ------------------------------------------------------------------ issue 16: bf16 ZO and directions on CUDA
@pytest.mark.parametrize("typ", ["zo_sgd", "adazo"])
def test_bf16_zo_master_weights_on_cuda_follow_fp32(typ):
    """The CPU test's claim on the GPU: bf16 weights with fp32 masters follow the fp32 run."""
    g = torch.Generator().manual_seed(0)
    w0 = (0.02 * torch.randn(256, 128, generator=g)).cuda()
    x = torch.randn(512, 256, generator=g).cuda()
    y = x @ (w0 + 0.02 * torch.randn(256, 128, generator=g).cuda())
    from unlearning.optim import build_optimizer

    ends = {}
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.nn.Parameter(w0.to(dtype, copy=True))
        opt = build_optimizer([w], {"type": typ, "lr": 1e-6 if typ == "adazo" else 3e-5, "seed": 1}, 20)
        for _ in range(20):
            opt.step(lambda backward=True, gnb=False, w=w: ((x @ w.float() - y) ** 2).mean())
        ends[dtype] = (opt.state[w]["master"] if dtype == torch.bfloat16 else w.detach()).float()
    start = w0.to(torch.bfloat16).float()
    ref, got = ends[torch.float32] - w0, ends[torch.bfloat16] - start
    assert (got - ref).norm() < 0.1 * ref.norm()


def test_rademacher_directions_on_cuda_are_signs_and_reproducible():
    from unlearning.optim._common import DirectionStream

    p = torch.zeros(300_001, device="cuda")
    a = torch.cat([z.clone() for _, _, z in DirectionStream(3, kind="rademacher").chunks(p)])
    b = torch.cat([z.clone() for _, _, z in DirectionStream(3, kind="rademacher").chunks(p)])
    assert torch.equal(a, b) and set(a.unique().tolist()) == {-1.0, 1.0}
