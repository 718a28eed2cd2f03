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
