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
