"""The unlearning loop, relearning checkpoints and non-finite losses, on a tiny model."""

from __future__ import annotations

import pytest
import torch

from unlearning.models import build_model, train_tokenizer
from unlearning.train import NonFiniteLoss, encode, fit_lm, unlearn

ARCH = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_len=64)
FORGET = ["Zorbin was born in Veltrim.", "Quala works as a potter for the Drun Guild."]
RETAIN = ["Mirel lives by the river Tass.", "Obran keeps bees near Sollo."]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(FORGET + RETAIN, 300, tmp_path_factory.mktemp("tok"))


def _model(tok):
    torch.manual_seed(0)
    return build_model(ARCH, len(tok), seed=0)


class _Objective:
    needs_ref = False

    def __init__(self, value=None):
        self.value = value

    def parameters(self, model):
        return list(model.parameters())

    def loss(self, model, forget, retain, ref):
        loss = -model(**forget).loss + model(**retain).loss
        return loss * float("nan") if self.value == "nan" else loss


def test_encode_masks_padding(tok):
    batch = encode(tok, ["a", "a much longer text"], 32, torch.device("cpu"))
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert batch["input_ids"][0, 0].item() == tok.bos_token_id


@pytest.mark.parametrize("spec", [
    {"type": "adam", "lr": 1e-3},
    {"type": "signadam", "lr": 1e-3},
    {"type": "sophia", "lr": 1e-3},
    {"type": "adazo", "lr": 1e-3, "seed": 0},
    {"type": "hybrid", "n_fo": 1, "n_zo": 1, "fo": {"type": "adam", "lr": 1e-3},
     "zo": {"type": "adazo", "lr": 1e-3, "seed": 0}},
])
@pytest.mark.slow
def test_one_loop_serves_every_grade_and_raises_forget_loss(tok, spec):
    model = _model(tok)
    batch = encode(tok, FORGET, 64, torch.device("cpu"))
    with torch.no_grad():
        before = model(**batch).loss.item()
    trace = unlearn(model, tok, FORGET, RETAIN, objective=_Objective(), opt_spec=spec, steps=6,
                    batch_size=2, max_len=64, seed=0)
    assert [t["step"] for t in trace] == list(range(1, 7))
    with torch.no_grad():
        after = model(**batch).loss.item()
    assert after > before  # gradient *difference*: forget NLL goes up


def test_same_seed_same_unlearned_weights(tok):
    spec = {"type": "adazo", "lr": 1e-3, "seed": 3}
    models = []
    for _ in range(2):
        m = _model(tok)
        unlearn(m, tok, FORGET, RETAIN, objective=_Objective(), opt_spec=spec, steps=3, batch_size=2,
                max_len=64, seed=1)
        models.append(m)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_step_optimizer_and_loss(tok):
    model = _model(tok)
    with pytest.raises(NonFiniteLoss, match=r"non-finite unlearning loss \(nan\) at step 1 with optimizer signadam"):
        unlearn(model, tok, FORGET, RETAIN, objective=_Objective("nan"), opt_spec={"type": "signadam", "lr": 1e-3},
                steps=3, batch_size=2, max_len=64, seed=0)


@pytest.mark.slow
def test_fit_lm_learns_and_calls_back(tok):
    model = _model(tok)
    seen = []
    trace = fit_lm(model, tok, FORGET, steps=30, lr=3e-3, batch_size=2, max_len=64, seed=0, on_step=seen.append)
    assert seen == list(range(1, 31))
    assert trace[-1] < trace[0] / 2


def test_relearn_writes_one_checkpoint_per_step_count(tok, tmp_path):
    from unlearning.attacks.relearn import relearn, relearn_subset

    assert relearn_subset(list("abcdefgh"), 0.25) == ["a", "b"]
    assert relearn_subset(list("abc"), 0.1) == ["a"]
    relearn(lambda: _model(tok), tok, FORGET, steps=[2, 1], lr=1e-3, batch_size=2, max_len=64, seed=0,
            warmup=0.0, out_root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relearn1", "relearn2"]
    assert (tmp_path / "relearn2" / "model.safetensors").exists()


def test_retrain_model_trains_for_the_targets_epochs_by_default():
    from unlearning.stages.models import training_steps

    cfg = {"steps": 1200, "retrain_steps": "same_epochs"}
    assert training_steps(cfg, "target", 141, 141) == 1200
    assert training_steps(cfg, "retrain", 105, 141) == 894  # 1200 * 105 / 141 = 893.6
    assert training_steps({**cfg, "retrain_steps": "same_steps"}, "retrain", 105, 141) == 1200
    assert training_steps({"steps": 1, "retrain_steps": "same_epochs"}, "retrain", 1, 141) == 1


def _default_study_entry(name: str) -> dict:
    """An optimizer entry of config.yaml (the default study) with the schema's defaults filled in."""
    from pathlib import Path

    import yaml

    from unlearning.config import validate

    cfg = validate(yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text()))
    return dict(cfg["optimizers"][name])


@pytest.mark.slow
def test_default_sophia_leaves_a_share_unclipped_in_the_trace_and_is_not_signadam(tok):
    # On a tiny Llama that has memorised its texts (as the study's targets have), GradDiff with the
    # default study's Sophia entry (Hessian scaled by the batch's tokens, rho 20) leaves 10-90% of
    # coordinates unclipped, recorded per step in the trace; its weights then differ from signAdam's
    # (same lr, beta1 0.9). SophiaG's rho 0.04 here leaves under 1% unclipped: signAdam in effect.
    # Measured: mean share 0.31 (rho 20) and 0.005 (rho 0.04); relative distance 0.53 and 0.06.
    import copy

    from unlearning.objectives import build_objective

    base = _model(tok)
    fit_lm(base, tok, FORGET + RETAIN, steps=100, lr=3e-3, batch_size=4, max_len=64, seed=0)
    w0 = torch.cat([p.detach().reshape(-1) for p in base.parameters()])

    def run(spec):
        model = copy.deepcopy(base)
        trace = unlearn(model, tok, FORGET, RETAIN, objective=build_objective("grad_diff", {}), opt_spec=spec,
                        steps=20, batch_size=2, max_len=64, seed=0)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()]), trace

    spec = _default_study_entry("sophia")
    assert spec["hess_scale"] == "tokens"
    sophia, trace = run(spec)
    shares = [t["unclipped"] for t in trace]
    assert len(shares) == 20 and 0.1 < sum(shares) / len(shares) < 0.9, shares
    signadam, _ = run({"type": "signadam", "lr": spec["lr"], "beta1": spec["betas"][0]})
    assert float((sophia - signadam).norm() / (signadam - w0).norm()) > 0.3
    _, low = run(dict(spec, rho=0.04))
    assert sum(t["unclipped"] for t in low) / len(low) < 0.02


def test_adazo_move_is_in_the_trace_and_about_lr(tok):
    spec = _default_study_entry("zo")
    assert spec["bias_correction"] is True
    trace = unlearn(_model(tok), tok, FORGET, RETAIN, objective=_Objective(), opt_spec=dict(spec, seed=0),
                    steps=5, batch_size=2, max_len=64, seed=0)
    moves = [t["move_over_lr"] for t in trace]
    assert moves[0] == pytest.approx(1.0, rel=1e-3) and all(0.2 < m < 3.0 for m in moves), moves


def test_run_metrics_summarise_the_trace():
    from unlearning.stages.unlearn import run_metrics

    trace = [{"step": 1, "loss": 0.0, "unclipped": 0.2}, {"step": 2, "loss": 0.0, "move_over_lr": 1.0},
             {"step": 3, "loss": 0.0, "unclipped": 0.4}]
    assert run_metrics(trace) == {"sophia_unclipped": pytest.approx(0.3), "adazo_move_over_lr": 1.0}
    assert run_metrics([{"step": 1, "loss": 0.0}]) == {}
