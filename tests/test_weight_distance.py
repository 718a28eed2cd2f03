"""Grade distance: how far apart two unlearned models are, on tiny saved models with known values."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from unlearning.stages.distance import COLUMNS, grade_distance
from unlearning.weight_distance import grade_pairs, model_distance

T = {"x": torch.zeros(4), "y": torch.zeros(2, 2)}
A = {"x": torch.tensor([3.0, 0, 0, 0]), "y": torch.tensor([[4.0, 0], [0, 0]])}  # ||A - T|| = 5
B = {"x": torch.tensor([3.0, 0, 0, 0]), "y": torch.tensor([[0.0, 0], [0, 4]])}  # ||B - T|| = 5


def _save(tmp_path, name, tensors, extra=None):
    d = tmp_path / name
    d.mkdir()
    save_file({**tensors, **(extra or {})}, str(d / "model.safetensors"))
    return d


def test_known_distances(tmp_path):
    t, a, b = _save(tmp_path, "t", T), _save(tmp_path, "a", A), _save(tmp_path, "b", B, {"only_b": torch.ones(3)})
    d = model_distance(a, b, t)
    # A - B = (0,0,0,0 | 4,0,0,-4): sqrt(32) / 5; updates' dot 9 over 5 * 5; x and y's two zeros equal
    # (6 of 8); moved: x[0], y[0,0], y[1,1] (3 of 8). A tensor only one model has is not compared.
    assert d["rel_distance"] == pytest.approx(math.sqrt(32) / 5)
    assert d["update_cosine"] == pytest.approx(9 / 25)
    assert d["identical_share"] == 6 / 8 and d["moved_share"] == 3 / 8
    same = model_distance(a, _save(tmp_path, "a2", A), t)
    assert same["rel_distance"] == 0.0 and same["identical_share"] == 1.0
    assert same["update_cosine"] == pytest.approx(1.0)


def test_errors_name_the_problem(tmp_path):
    t, a = _save(tmp_path, "t", T), _save(tmp_path, "a", A)
    bad = _save(tmp_path, "bad", {"x": torch.zeros(5), "y": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="'x' has different shapes"):
        model_distance(a, bad, t)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        model_distance(a, tmp_path / "empty", t)


def _run(opt, grade, seed=0, method="npo", bench="muse", path=""):
    return {"benchmark": bench, "method": method, "optimizer": opt, "grade": grade, "seed": seed, "path": path}


def test_pairs_are_of_different_grades_within_benchmark_method_seed():
    runs = [_run("signadam", "compressed"), _run("sophia", "second"), _run("adam", "first"),
            _run("signsgd", "compressed"), _run("adam", "first", seed=1), _run("hybrid", "hybrid", method="gd")]
    pairs = [(a["optimizer"], b["optimizer"]) for a, b in grade_pairs(runs)]
    # higher grade first; the two compressed optimizers are not paired; nothing crosses seeds or methods
    assert pairs == [("sophia", "adam"), ("sophia", "signadam"), ("sophia", "signsgd"), ("adam", "signadam"),
                     ("adam", "signsgd")]
    with pytest.raises(ValueError, match="grade"):
        list(grade_pairs([_run("x", "fourth")]))


def test_stage_writes_a_tidy_table(tmp_path):
    t, a, b = _save(tmp_path, "t", T), _save(tmp_path, "a", A), _save(tmp_path, "b", B)
    runs = [{**_run("sophia", "second", path=str(a)), "target": str(t)},
            {**_run("signadam", "compressed", path=str(b)), "target": str(t)}]
    out = tmp_path / "tables" / "grade_distance.csv"
    assert grade_distance(runs, out) == 1
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS and len(df) == 4
    row = df[df.metric == "rel_distance"].iloc[0]
    pair = (row.optimizer_a, row.grade_a, row.optimizer_b, row.grade_b)
    assert pair == ("sophia", "second", "signadam", "compressed")
    assert row.value == pytest.approx(math.sqrt(32) / 5)
    with pytest.raises(ValueError, match="no target"):
        grade_distance([{**r, "target": None} for r in runs], out)
    with pytest.raises(ValueError, match="different targets"):
        grade_distance([runs[0], {**runs[1], "target": str(a)}], out)


def _models(tmp_path, dtype, n=4):
    """A target and ``n`` models that moved some weights (the rest bit-identical to the target), with a
    tensor one model lacks and one model that moved nothing."""
    g = torch.Generator().manual_seed(0)
    shapes = {"emb": (50, 8), "l0.w": (8, 8), "l1.w": (8, 24), "norm": (8,)}
    target = {k: torch.randn(s, generator=g).to(dtype) for k, s in shapes.items()}
    paths = []
    for m in range(n):
        w = {}
        for k, t in target.items():
            mask = torch.rand(t.shape, generator=g) < (0.0 if m == n - 1 else 0.3 + 0.2 * m)
            w[k] = torch.where(mask, t + 1e-3 * torch.randn(t.shape, generator=g).to(dtype), t)
        if m == 1:
            del w["norm"]
        paths.append(_save(tmp_path, f"m{m}", w))
    return _save(tmp_path, "target", target), paths


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_group_equals_pairwise_reading(tmp_path, dtype):
    from unlearning.weight_distance import group_distances

    t, paths = _models(tmp_path, dtype)
    pairs = [(i, j) for i in range(len(paths)) for j in range(len(paths)) if i != j]
    streamed = group_distances(paths, t, pairs)
    for (i, j), d in zip(pairs, streamed):
        old = model_distance(paths[i], paths[j], t)
        for k in old:  # bit for bit (nan for the model that moved nothing, as before)
            assert d[k] == old[k] or (math.isnan(d[k]) and math.isnan(old[k])), (i, j, k, d[k], old[k])
    assert 0 < streamed[0]["identical_share"] < 1 and streamed[0]["rel_distance"] > 0


def test_stage_reads_each_model_once_per_group(tmp_path, monkeypatch):
    import unlearning.weight_distance as W

    t, paths = _models(tmp_path, torch.float32)
    grades = ["second", "first", "compressed", "zeroth"]
    runs = [{**_run(f"o{k}", grades[k], seed=s, path=str(p)), "target": str(t)}
            for s in (0, 1) for k, p in enumerate(paths)]
    opened = []
    real = W._Lazy.__init__

    def count(self, d):
        opened.append(str(d))
        real(self, d)

    monkeypatch.setattr(W._Lazy, "__init__", count)
    out = tmp_path / "gd.csv"
    assert grade_distance(runs, out) == 2 * 6
    # per seed: the four models and the target, each opened once (not 3 x 6 reads per seed)
    assert sorted(opened) == sorted([*map(str, paths), str(t)] * 2)
    df = pd.read_csv(out)
    for a, b in grade_pairs(runs[:4]):
        row = df[(df.seed == 0) & (df.optimizer_a == a["optimizer"]) & (df.optimizer_b == b["optimizer"])]
        got = dict(zip(row.metric, row.value))
        want = model_distance(a["path"], b["path"], t)
        assert got == pytest.approx(want, nan_ok=True, rel=1e-15)
    # groups in two threads: the same bytes as one group at a time
    monkeypatch.setattr(W._Lazy, "__init__", real)
    grade_distance(runs, tmp_path / "gd2.csv", workers=2)
    assert (tmp_path / "gd2.csv").read_bytes() == out.read_bytes()


def test_row_blocks_of_large_tensors_agree(tmp_path):
    """Tensors above the block size are summed block by block: equal to rounding, counts exact."""
    from unlearning.weight_distance import group_distances

    t, paths = _models(tmp_path, torch.bfloat16)
    pairs = [(0, 2), (2, 0), (0, 1)]
    whole, blocks = group_distances(paths, t, pairs), group_distances(paths, t, pairs, chunk=7)
    for w, b in zip(whole, blocks):
        assert b["identical_share"] == w["identical_share"] and b["moved_share"] == w["moved_share"]
        assert b["rel_distance"] == pytest.approx(w["rel_distance"], rel=1e-12)
        assert b["update_cosine"] == pytest.approx(w["update_cosine"], rel=1e-12)
