"""The unlearning loop's warmup and linear decay equal HF Trainer's (TOFU's recipe)."""

from __future__ import annotations

import pytest
import torch

from unlearning.lr_schedule import lr_factor, scheduler, warmup_steps


@pytest.mark.parametrize("total,warmup", [(62, 12), (10, 0), (5, 5), (7, 1)])
def test_factors_equal_transformers_linear_schedule_with_warmup(total, warmup):
    from transformers import get_linear_schedule_with_warmup

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    hf = []
    for _ in range(total):  # HF Trainer: optimizer.step() with the current rate, then scheduler.step()
        hf.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr_factor(s, total, warmup, "linear") for s in range(total)] == pytest.approx(hf, abs=1e-12)
    assert hf[0] == (0.0 if warmup else 1.0)


def test_constant_after_warmup_and_nothing_to_do_without_either():
    assert [lr_factor(s, 10, 4, "constant") for s in range(6)] == [0, 0.25, 0.5, 0.75, 1, 1]
    p = torch.nn.Parameter(torch.zeros(1))
    assert scheduler(torch.optim.SGD([p], lr=0.1), 10, 0, "constant") is None
    with pytest.raises(ValueError, match="unlearning.schedule"):
        lr_factor(0, 10, 0, "cosine")


def test_scheduler_sets_each_group_and_a_hybrids_phases_from_their_own_rates():
    from unlearning.optim import build_optimizer

    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([{"params": [p]}, {"params": [q], "lr": 0.5}], {"type": "adam", "lr": 1.0}, 10)
    set_lr = scheduler(opt, 10, 2, "linear")
    set_lr(1)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]
    set_lr(8)  # (10 - 8) / (10 - 2)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.125]
    hybrid = build_optimizer([p], {"type": "hybrid", "fo": {"type": "adam", "lr": 2.0},
                                   "zo": {"type": "adazo", "lr": 4.0}, "n_fo": 1, "n_zo": 1}, 4)
    scheduler(hybrid, 4, 2, "linear")(1)
    assert hybrid.fo.param_groups[0]["lr"] == 1.0 and hybrid.zo.param_groups[0]["lr"] == 2.0


def test_warmup_of_one_epoch_counts_as_tofu_does():
    # locuslab/tofu forget.py: warmup_steps = max(1, 400 // (4 x 4 x 2)) = 12 for forget10
    assert warmup_steps(1, 400, 32) == 12 and warmup_steps(1, 10, 32) == 1 and warmup_steps(0, 400, 32) == 0


def test_the_unlearning_loop_takes_its_first_warmup_step_at_rate_zero():
    from test_eval import make_tok, tiny_llama

    from unlearning.objectives import build_objective
    from unlearning.train import unlearn

    tok = make_tok()
    moved = {}
    for warmup in (0, 2):
        model = tiny_llama(tok)
        before = [p.detach().clone() for p in model.parameters()]
        unlearn(model, tok, ["the cat sat on the mat"], ["the dog lay on the rug"],
                objective=build_objective("grad_ascent", {}), opt_spec={"type": "adam", "lr": 1e-3}, steps=1,
                batch_size=1, max_len=32, seed=0, warmup_steps=warmup, schedule="linear")
        moved[warmup] = max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))
    assert moved[2] == 0.0 and moved[0] > 1e-4
