"""Issue 23's memory savings at paper scale, each checked for exactness on a tiny model: NPO's reference
scored up front and freed, RS's gradients accumulated in place, SAM / RS restoring by subtraction."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from unlearning import train
from unlearning.models import build_model, train_tokenizer
from unlearning.objectives import build_objective
from unlearning.train import cache_reference, unlearn

ARCH = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_len=64)
# five examples of different lengths at batch 2: batches straddle epochs and pad differently
FORGET = ["Zorbin was born in Veltrim.", "Quala works as a potter for the Drun Guild.", "Ilse sings.",
          "The tower of Kesh has nine floors and one door.", "Pell met Orra in the spring of 1204."]
pytestmark = pytest.mark.slow  # several short training runs each (seconds on a loaded machine)

RETAIN = ["Mirel lives by the river Tass.", "Obran keeps bees near Sollo.", "Dana rows.",
          "The market opens at dawn.", "Fenn sells rope."]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(FORGET + RETAIN, 300, tmp_path_factory.mktemp("tok"))


def _model(tok):
    torch.manual_seed(0)
    return build_model(ARCH, len(tok), seed=0)


def _frozen(model):
    import copy

    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _npo_run(tok, spec, monkeypatch=None, up_front=True, steps=6):
    model = _model(tok)
    ref = _frozen(model)
    objective = build_objective("npo", {"beta": 0.1})
    if not up_front:  # the old path: the loop scores each unseen example lazily with the live reference
        monkeypatch.setattr(train, "cache_reference", lambda *a, **k: False)
    trace = unlearn(model, tok, FORGET, RETAIN, objective=objective, opt_spec=spec, steps=steps,
                    batch_size=2, max_len=64, seed=0, ref=ref)
    return model, trace, objective


@pytest.mark.parametrize("spec", [{"type": "adam", "lr": 1e-3},
                                  {"type": "zo_sgd", "lr": 1e-3, "seed": 0},
                                  {"type": "sam", "lr": 1e-3, "smooth_terms": "forget"}])
def test_npo_reference_scored_up_front_gives_the_same_run_bit_for_bit(tok, spec, monkeypatch):
    a, trace_a, obj_a = _npo_run(tok, spec, up_front=True)
    b, trace_b, _ = _npo_run(tok, spec, monkeypatch, up_front=False)
    assert [t["loss"] for t in trace_a] == [t["loss"] for t in trace_b]
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert obj_a._ref_cache[0] is None and len(obj_a._ref_cache[1]) == len(FORGET)


def test_npo_reference_can_be_freed_after_the_scores_and_rmu_keeps_its_model(tok):
    model = _model(tok)
    ref = _frozen(model)
    alive = weakref.ref(ref)
    npo = build_objective("npo", {"beta": 0.1})
    assert cache_reference(npo, ref, tok, FORGET, steps=4, batch_size=2, max_len=64, seed=0)
    del ref
    gc.collect()
    assert alive() is None  # nothing (the objective's cache included) holds the reference any more
    unlearn(model, tok, FORGET, RETAIN, objective=npo, opt_spec={"type": "adam", "lr": 1e-3}, steps=4,
            batch_size=2, max_len=64, seed=0)  # ref=None: every example's score is cached
    more = build_objective("npo", {"beta": 0.1})
    with pytest.raises(ValueError, match="frozen reference"):  # nothing cached, no reference
        unlearn(_model(tok), tok, FORGET, RETAIN, objective=more, opt_spec={"type": "adam", "lr": 1e-3},
                steps=1, batch_size=2, max_len=64, seed=0)
    rmu = build_objective("rmu", {})
    assert rmu.needs_ref and not rmu.ref_cacheable
    assert not cache_reference(rmu, _frozen(model), tok, FORGET, steps=1, batch_size=2, max_len=64, seed=0)


def _steps(tok, spec, steps=4, hide_accumulate=False):
    """``steps`` optimizer steps of ``spec`` on GradDiff-like NPO batches with the loop's closure; with
    ``hide_accumulate`` the closure does not offer ``accumulate`` (the optimizers' separate-buffer path)."""
    from unlearning.optim import build_optimizer
    from unlearning.train import collate, loss_closure

    model = _model(tok)
    ref = _frozen(model)
    objective = build_objective("npo", {"beta": 0.1})
    opt = build_optimizer(list(model.parameters()), dict(spec), total_steps=steps)
    ids = [tok(t)["input_ids"] for t in FORGET], [tok(t)["input_ids"] for t in RETAIN]
    fb, rb = collate(ids[0][:2], 0, torch.device("cpu")), collate(ids[1][:2], 0, torch.device("cpu"))
    closure = loss_closure(model, opt, objective, fb, rb, ref, max_grad_norm=1.0)
    if hide_accumulate:
        inner = closure

        def closure(backward=True, gnb=False, part="all", clip=True):
            return inner(backward, gnb, part, clip)

        closure.takes_parts, closure.max_grad_norm = True, 1.0
    for _ in range(steps):
        opt.step(closure)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("spec", [
    {"type": "rs", "lr": 1e-3, "sigma": 0.01, "n_samples": 3, "seed": 0},
    {"type": "rs", "lr": 1e-3, "sigma": 0.01, "n_samples": 3, "seed": 0, "smooth_terms": "forget"},
    {"type": "sam", "lr": 1e-3, "rho": 0.05, "smooth_terms": "forget"},
])
def test_gradients_summed_in_place_are_the_separate_buffers_sums_bit_for_bit(tok, spec):
    assert torch.equal(_steps(tok, spec), _steps(tok, spec, hide_accumulate=True))


@pytest.mark.parametrize("spec", [
    {"type": "rs", "lr": 1e-3, "sigma": 0.01, "n_samples": 3, "seed": 0, "smooth_terms": "forget"},
    {"type": "sam", "lr": 1e-3, "rho": 0.05, "smooth_terms": "forget"},
    {"type": "sam", "lr": 1e-3, "rho": 0.05},
])
def test_restore_by_subtraction_stays_within_float_rounding_of_the_copy(tok, spec):
    steps = 8
    # lr 0: the update moves nothing, so what moves the weights is the restore alone
    start = _steps(tok, {**spec, "lr": 0.0}, 1)
    assert torch.equal(_steps(tok, {**spec, "lr": 0.0}, steps), start)  # the copy restores exactly
    restored = _steps(tok, {**spec, "lr": 0.0, "restore": "subtract"}, steps)
    err = (restored - start).abs().max().item()
    ulp = torch.finfo(torch.float32).eps * start.abs().max().item()
    # with training: the two runs' distance, Adam's normalisation amplifying the rounding
    copy_, sub = _steps(tok, spec, steps), _steps(tok, {**spec, "restore": "subtract"}, steps)
    moved, drift = (copy_ - start).abs().max().item(), (copy_ - sub).abs().max().item()
    print(f"{spec['type']} {spec.get('smooth_terms', 'all')}: restore error after {steps} steps {err:.3g} "
          f"({err / ulp:.2f} ulp of the largest weight); trained: max |w - w'| {drift:.3g}, largest move {moved:.3g}")
    assert err <= steps * ulp  # at most half an ulp per add-subtract pair
    assert drift <= 1e-2 * moved  # rounding, not a different step: a wrong restore moves by ~rho or sigma


def test_hybrid_with_idle_state_offloaded_is_the_same_run(tok):
    # on the CPU the move is a no-op: this holds the phase bookkeeping (a switch every two steps) exact
    spec = {"type": "hybrid", "n_fo": 2, "n_zo": 2, "fo": {"type": "adam", "lr": 1e-3},
            "zo": {"type": "adazo", "lr": 1e-3, "seed": 0}}
    plain = _steps(tok, spec, steps=6)
    assert torch.equal(_steps(tok, {**spec, "offload_idle": True}, steps=6), plain)


def test_place_state_moves_per_weight_tensors_and_leaves_scalars():
    from unlearning.optim.hybrid import _place_state

    p = torch.nn.Parameter(torch.zeros(4, device="meta"))  # a weight on another device than the host
    opt = torch.optim.Adam([p])
    opt.state[p] = {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}  # as offloaded to the host
    _place_state(opt, host=True)
    assert opt.state[p]["exp_avg"].device.type == "cpu"
    _place_state(opt, host=False)  # back to the weight's device; the step count stays where it was
    assert opt.state[p]["exp_avg"].device.type == "meta" and opt.state[p]["step"].device.type == "cpu"
