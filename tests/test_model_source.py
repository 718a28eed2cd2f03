"""A hub model id that cannot be had fails at once, in one line naming the config key and the
download command (compute nodes without network); local folders and cached ids load offline."""

from __future__ import annotations

import time

import pytest

from unlearning import models


def test_unavailable_hub_model_fails_fast_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_in_hub_cache", lambda model_id: False)
    t0 = time.time()
    with pytest.raises(ValueError) as err:
        models.load_model("some-org/not-downloaded-7b")
    assert time.time() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("benchmarks.<bench>.target / .retrain: model 'some-org/not-downloaded-7b'")
    assert "`hf download some-org/not-downloaded-7b`" in msg


def test_local_folder_and_cached_id_need_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.check_model_source(tmp_path) is True
    monkeypatch.setattr(models, "_in_hub_cache", lambda model_id: model_id == "org/cached")
    assert models.check_model_source("org/cached") is True
    with pytest.raises(ValueError, match="benchmarks.muse.target"):
        models.check_model_source("org/other", key="benchmarks.muse.target")


@pytest.mark.slow
def test_copy_model_keeps_the_files_and_dtype(tmp_path):
    import torch
    from safetensors.torch import load_file

    m = models.build_model(dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, max_len=32),
                           300, seed=0).to(torch.float16)
    m.save_pretrained(tmp_path / "src", safe_serialization=True)
    out = models.copy_model(tmp_path / "src", tmp_path / "copy")
    src_files = sorted(p.name for p in (tmp_path / "src").iterdir())
    assert sorted(p.name for p in out.iterdir()) == src_files
    for name in src_files:
        assert (out / name).read_bytes() == (tmp_path / "src" / name).read_bytes()
    assert next(iter(load_file(str(out / "model.safetensors")).values())).dtype == torch.float16
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"benchmarks.muse.target: .* no .safetensors"):
        models.copy_model(tmp_path / "pickled", tmp_path / "c2", key="benchmarks.muse.target")
