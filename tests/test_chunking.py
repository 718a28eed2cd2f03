"""Training examples by chunking, unlearning length in epochs, and relearning runs per step count."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from unlearning.data.chunking import examples, steps_per_epoch
from unlearning.models import build_model, train_tokenizer

ARCH = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_len=64)
DOCS = ["Zorbin was born in Veltrim and sailed to the far islands of Qel.",
        "Quala works as a potter for the Drun Guild.", "Mirel lives by the river Tass.",
        "Obran keeps bees near Sollo, and sells their honey at the spring market."]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(DOCS, 300, tmp_path_factory.mktemp("tok"))


def test_concat_trains_on_every_token_in_bos_led_chunks(tok):
    bare = [tok(d + tok.eos_token, add_special_tokens=False)["input_ids"] for d in DOCS]
    stream = [t for ids in bare for t in ids]
    chunks = examples(tok, DOCS, 16, "concat")
    assert all(c[0] == tok.bos_token_id for c in chunks)
    assert [len(c) for c in chunks[:-1]] == [16] * (len(chunks) - 1)
    assert [t for c in chunks for t in c[1:]] == stream  # every token once, in order, EOS between documents
    assert len(chunks) == -(-len(stream) // 15)


def test_truncate_keeps_each_documents_head(tok):
    out = examples(tok, DOCS, 8, "truncate")
    assert len(out) == len(DOCS)
    full = tok(DOCS[0] + tok.eos_token)["input_ids"]
    assert out[0] == full[:8] and len(full) > 8  # the rest of a long document is never seen
    assert examples(tok, DOCS, 512, "truncate")[2][-1] == tok.eos_token_id


def test_bad_chunking_is_refused(tok):
    with pytest.raises(ValueError, match="chunking must be one of"):
        examples(tok, DOCS, 16, "pack")


def test_steps_per_epoch_and_epochs():
    from unlearning.stages.unlearn import unlearning_steps

    assert steps_per_epoch(408, 4) == 102  # the lab's MUSE-News: ~102 steps per epoch at batch 4
    assert steps_per_epoch(9, 4) == 3
    assert unlearning_steps({"steps": 60, "epochs": 10}, 102) == 1020
    assert unlearning_steps({"steps": 60, "epochs": None}, 102) == 60
    assert unlearning_steps({"steps": 60}, 102) == 60


def _model(tok):
    return build_model(ARCH, len(tok), seed=0)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_cosine_relearning_trains_each_step_count_on_its_own(tok, tmp_path):
    from unlearning.attacks.relearn import relearn
    from unlearning.train import fit_lm

    kw = dict(lr=3e-3, batch_size=2, max_len=64, seed=0, warmup=0.0, schedule="cosine", chunking="concat")
    relearn(lambda: _model(tok), tok, DOCS, steps=[3, 6], out_root=tmp_path / "a", **kw)
    direct = _model(tok)
    fit_lm(direct, tok, DOCS, steps=3, **kw)
    got = _weights(tmp_path / "a" / "relearn3")
    for name, p in direct.state_dict().items():
        if name in got:
            assert torch.equal(got[name], p.detach().cpu()), name  # relearn3 is a 3-step cosine run
    # ... which is not step 3 of the 6-step cosine run (the rate had not decayed there)
    shared = _model(tok)
    snap = {}
    fit_lm(shared, tok, DOCS, steps=6, on_step=lambda s: snap.update(
        {n: p.detach().clone() for n, p in shared.state_dict().items()} if s == 3 else {}), **kw)
    assert any(not torch.equal(got[n], snap[n]) for n in got)


@pytest.mark.slow
def test_constant_relearning_without_warmup_saves_checkpoints_of_one_run(tok, tmp_path):
    from unlearning.attacks.relearn import one_run_serves_all, relearn

    assert one_run_serves_all("constant", 0.0)
    assert not one_run_serves_all("constant", 0.1) and not one_run_serves_all("cosine", 0.0)
    loads = []

    def load():
        loads.append(1)
        return _model(tok)

    kw = dict(lr=3e-3, batch_size=2, max_len=64, seed=0, warmup=0.0, schedule="constant")
    relearn(load, tok, DOCS, steps=[2, 4], out_root=tmp_path / "one", **kw)
    assert len(loads) == 1
    relearn(lambda: _model(tok), tok, DOCS, steps=[2],
            out_root=tmp_path / "two", **kw)
    a, b = _weights(tmp_path / "one" / "relearn2"), _weights(tmp_path / "two" / "relearn2")
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_relearn_report_must_be_a_configured_step_count_and_picks_the_judged_attack():
    import pandas as pd

    from unlearning.config import ConfigError, validate
    from unlearning.report.findings import judged_relearn

    base = {"benchmarks": {"m": {"kind": "muse"}}, "methods": {"ga": {"objective": "grad_ascent"}},
            "optimizers": {"adam": {"type": "adam"}}}
    assert validate({**base, "attacks": {"relearn": {"steps": [100, 150], "report": 100}}})
    with pytest.raises(ConfigError, match=r"attacks.relearn.report: 125 is not one of"):
        validate({**base, "attacks": {"relearn": {"steps": [100, 150], "report": 125}}})
    df = pd.DataFrame({"attack": ["none", "relearn100", "relearn125", "relearn150"]})
    assert judged_relearn(df, 100) == ["relearn100"]
    assert judged_relearn(df, None) == ["relearn150"]
