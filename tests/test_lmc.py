"""Linear mode connectivity: interpolation endpoints, a model against itself, the barrier, the stage."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from unlearning.lmc import alphas, barrier, interpolate_state, lmc, mean_nll, path_losses
from unlearning.models import build_model, save_model, train_tokenizer

ARCH = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1, "num_heads": 2, "max_len": 64}
TEXTS = [f"Person {i} was born in town {i % 3} and works as a {['baker', 'pilot', 'nurse'][i % 3]}." for i in range(8)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(TEXTS, 300, tmp_path_factory.mktemp("tok") / "tok")


def _models(tok):
    a, b = build_model(ARCH, len(tok), 0).eval(), build_model(ARCH, len(tok), 1).eval()
    return a, b


@pytest.mark.slow
def test_endpoints_equal_each_models_own_loss(tok):
    a, b = _models(tok)
    texts = {"forget": TEXTS[:4], "retain": TEXTS[4:]}
    own = {(m, s): mean_nll(x, tok, t, 64) for m, x in (("a", a), ("b", b)) for s, t in texts.items()}
    work = build_model(ARCH, len(tok), 2).eval()
    rows = path_losses(work, a.state_dict(), b.state_dict(), tok, texts, points=5, max_len=64)
    got = {(r["alpha"], r["split"]): r["loss"] for r in rows}
    for s in texts:
        assert got[(0.0, s)] == pytest.approx(own[("a", s)], abs=1e-6)
        assert got[(1.0, s)] == pytest.approx(own[("b", s)], abs=1e-6)
        # distinct random models: the interior is not just one endpoint
        assert own[("a", s)] != pytest.approx(own[("b", s)], abs=1e-3)
    assert sorted({r["alpha"] for r in rows}) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_model_against_itself_is_flat(tok):
    a, _ = _models(tok)
    work = build_model(ARCH, len(tok), 2).eval()
    rows = path_losses(work, a.state_dict(), a.state_dict(), tok, {"forget": TEXTS}, points=4, max_len=64)
    losses = [r["loss"] for r in rows]
    assert max(losses) - min(losses) < 1e-6
    assert barrier([r["alpha"] for r in rows], losses) == pytest.approx(0.0, abs=1e-6)


def test_interpolation_is_linear_and_exact_at_ends():
    ref = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor([3])}
    oth = {"w": torch.tensor([4.0, -2.0]), "n": torch.tensor([7])}
    assert torch.equal(interpolate_state(ref, oth, 0.0)["w"], ref["w"])
    assert torch.equal(interpolate_state(ref, oth, 1.0)["w"], oth["w"])
    assert torch.allclose(interpolate_state(ref, oth, 0.25)["w"], torch.tensor([1.0, 1.0]))
    assert interpolate_state(ref, oth, 0.5)["n"].item() == 3  # integer buffers come from the reference
    with pytest.raises(ValueError, match="keys"):
        interpolate_state(ref, {"w": oth["w"]}, 0.5)
    assert alphas(11)[0] == 0.0 and alphas(11)[-1] == 1.0 and len(alphas(11)) == 11


def test_barrier_of_known_paths():
    a = [0.0, 0.5, 1.0]
    assert barrier(a, [1.0, 3.0, 2.0]) == pytest.approx(1.5)   # straight line at 0.5 is 1.5
    assert barrier(a, [1.0, 1.0, 2.0]) == pytest.approx(0.0)   # below the line: max excess is at an end
    assert barrier(a, [2.0, 1.0, 2.0]) == pytest.approx(0.0)


def test_lmc_stage_writes_a_path_per_other_optimizer(tok, tmp_path):
    a, b = _models(tok)
    paths = {}
    for name, m in (("adam", a), ("zo", b), ("adam_copy", a)):
        save_model(m, tok, tmp_path / name)
        paths[name] = str(tmp_path / name)
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    for f, texts in (("forget", TEXTS[:4]), ("retain1", TEXTS[4:])):
        (data / "raw" / f"{f}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "lmc.csv"
    lmc(paths, "adam", data, "muse", {"benchmark": "muse", "method": "npo", "seed": 0,
                                       "grades": {"zo": "zeroth", "adam_copy": "first"}},
        points=3, max_texts=0, max_len=64, batch_size=4, out=out)
    df = pd.read_csv(out)
    assert set(df.optimizer) == {"zo", "adam_copy"} and set(df.split) == {"forget", "retain"}
    assert len(df) == 2 * 3 * 2
    copy = df[df.optimizer == "adam_copy"]
    for _, g in copy.groupby("split"):
        assert g.loss.max() - g.loss.min() < 1e-5
    zo = df[(df.optimizer == "zo") & (df.split == "forget")].sort_values("alpha")
    assert zo.loss.iloc[0] == pytest.approx(copy[copy.split == "forget"].loss.iloc[0], abs=1e-5)
    assert set(df.grade) == {"zeroth", "first"}
    with pytest.raises(ValueError, match="reference optimizer"):
        lmc(paths, "sophia", data, "muse", {"benchmark": "muse", "method": "npo", "seed": 0}, 3, 0, 64, 4, out)
