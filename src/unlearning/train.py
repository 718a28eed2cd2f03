"""Training loops: language-model fitting (target, retrain, relearning) and the one unlearning loop
that drives every optimizer grade through ``opt.step(closure)``."""

from __future__ import annotations

import logging
import math
import random
from typing import Any, Callable, Container, Iterator, Sequence

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """A NaN or infinite loss; the message names the step, the optimizer and the loss."""


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)


def encode(tok: Any, texts: Sequence[str], max_len: int, dev: torch.device) -> dict[str, torch.Tensor]:
    """Tokenise a batch of documents for causal-LM training (``truncate`` chunking): EOS appended
    (so a model learns where a document ends and greedy continuations stop there), right padding,
    labels -100 on padding."""
    from .data.chunking import examples

    return collate(examples(tok, texts, max_len, "truncate"), _pad_id(tok), dev)


def collate(batch: Sequence[Sequence[int]], pad: int, dev: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad token-id examples into a batch; labels -100 on padding and on the leading
    ``n_prompt`` ids of an example that has them (a TOFU question: unlearning.data.chunking.Example)."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, ids in enumerate(batch):
        input_ids[i, :len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        mask[i, :len(ids)] = 1
    labels = input_ids.clone()
    labels[mask == 0] = -100
    for i, ids in enumerate(batch):
        labels[i, :getattr(ids, "n_prompt", 0)] = -100
    return {"input_ids": input_ids.to(dev), "attention_mask": mask.to(dev), "labels": labels.to(dev)}


def _pad_id(tok: Any) -> int:
    """Padding id: the tokenizer's pad token, else EOS (Llama's tokenizer has no pad token)."""
    for tid in (tok.pad_token_id, tok.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def batches(texts: Sequence[Any], batch_size: int, seed: int) -> Iterator[list[Any]]:
    """Endless shuffled batches of ``texts`` (documents or token-id examples; reshuffled every
    epoch, deterministic in ``seed``)."""
    if not texts:
        raise ValueError("cannot draw batches from an empty dataset")
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(len(texts)))
            rng.shuffle(fresh)
            order += fresh
        chunk, order = order[:batch_size], order[batch_size:]
        yield [texts[i] for i in chunk]


def bucketed_batches(examples_: Sequence[Sequence[int]], batch_size: int, seed: int,
                     bucket: int = 1) -> Iterator[list[Any]]:
    """``batches`` of token-id examples with less padding: ``bucket`` batches at a time are drawn
    from ``batches``' shuffled stream (the same examples, in the same epochs), the pool sorted by
    length (stable) and cut into ``bucket`` batches again, which are yielded in an order shuffled with
    ``seed``. No example is dropped or repeated, each batch keeps ``batch_size`` examples; ``bucket``
    1 is ``batches`` itself."""
    stream = batches(examples_, batch_size, seed)
    if bucket <= 1:
        yield from stream
        return
    rng = random.Random(f"bucket-{seed}")
    while True:
        pool = sorted((e for _ in range(bucket) for e in next(stream)), key=len)
        cut = [pool[i * batch_size:(i + 1) * batch_size] for i in range(bucket)]
        rng.shuffle(cut)
        yield from cut


def _predicted(examples_: Sequence[Sequence[int]]) -> int:
    """Predicted tokens of a batch of examples (every token but each example's first)."""
    return sum(max(0, len(e) - 1) for e in examples_)


def _check_finite(loss: torch.Tensor, step: int, who: str, what: str) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLoss(f"non-finite {what} loss ({loss.item()}) at step {step} with optimizer {who}")


def fit_lm(model: Any, tok: Any, texts: Sequence[str], *, steps: int, lr: float, batch_size: int,
           max_len: int, seed: int, warmup: float = 0.0, schedule: str = "constant",
           weight_decay: float = 0.0, desc: str = "train", chunking: str = "truncate",
           on_step: Callable[[int], None] | None = None, data_parallel: bool = False,
           check: Callable[[int], bool] | None = None, check_every: int = 0, bucket: int = 1) -> list[float]:
    """Fine-tune ``model`` with AdamW on next-token prediction over ``texts``; return the loss trace.

    ``check(step)`` is called every ``check_every`` steps (when set) and after the last, with the
    steps done so far, the model in eval mode and the RNG states kept (``_checked``: a check never
    changes the steps after it), and returns True to stop there (the target's knowledge levels,
    stages/models.py); without it this is the plain fixed-step fit.

    ``bucket`` > 1: batches are drawn ``bucket`` at a time from the same shuffled stream, the pool
    sorted by length and cut again, and the pool's batches trained in shuffled order
    (``bucketed_batches``): each epoch still trains every example once, with less padding.

    ``chunking`` turns the texts into examples (unlearning.data.chunking: ``truncate`` per
    document, ``concat`` the lab's EOS-joined ``max_len``-token chunks). ``on_step(step)`` is called
    after each step (1-based), e.g. to save relearning checkpoints. ``data_parallel`` (a torchrun
    job, distributed.py): each rank takes its block of every batch and weights its token-mean loss by
    its share of the batch's predicted tokens, so the ranks' average gradient (FSDP2's) and the traced
    loss are the whole batch's. On CUDA the forward and backward run under bf16 autocast (fp32 weights).
    """
    from .data.chunking import examples
    from .models import autocast

    dev = next(model.parameters()).device
    share = _share() if data_parallel else None
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n_warm = int(warmup * steps)

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, steps - n_warm)))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    pad = _pad_id(tok)
    it = bucketed_batches(examples(tok, texts, max_len, chunking), batch_size, seed, bucket)
    trace: list[float] = []
    bar = tqdm(range(1, steps + 1), desc=desc, mininterval=2.0, disable=None)
    for step in bar:
        ex = next(it)
        weight = 1.0
        if share is not None:
            total = _predicted(ex)
            ex, mine = share.split(ex)  # mine 0: a rank with no example runs one at weight 0
            weight = share.token_weight(_predicted(ex), total) if mine else 0.0
        batch = collate(ex, pad, dev)
        with autocast(dev):
            loss = model(**batch).loss
        _check_finite(loss, step, "adamw", desc)
        opt.zero_grad(set_to_none=True)
        (loss * weight if weight != 1.0 else loss).backward()
        opt.step()
        sched.step()
        trace.append(share.mean(loss.detach() * weight).item() if share is not None else loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(trace[-20:]) / 20:.3f}")
        if on_step is not None:
            on_step(step)
        due = step == steps or (check_every > 0 and step % check_every == 0)
        if check is not None and due and _checked(model, check, step):
            break
    model.eval()
    return trace


def loss_closure(model: Any, opt: Any, objective: Any, fb: dict, rb: dict, ref: Any = None,
                 check: Any = None, max_grad_norm: float | None = None, share: Any = None) -> Any:
    """The optimizer closure for one forget and one retain batch (docs/extending/architecture.md):
    ``closure(backward=True, gnb=False, part="all", clip=True)`` returns the detached unlearning loss,
    after ``backward()`` when asked; ``gnb=True`` gives Sophia's Gauss-Newton-Bartlett loss on the
    forget batch instead. ``part`` ``"forget"`` or ``"retain"`` computes only that term of the
    objective (``objective.forget_loss`` / ``retain_loss``; SAM and RS smoothing the forget term
    alone, as the lab's trainers do). After a backward the trainable gradients are clipped to
    ``max_grad_norm`` (0 or None: off) unless ``clip=False`` (SAM and RS combine several passes and
    clip the combination, as HF Trainer clips what the lab's training_step leaves in ``.grad``);
    SophiaG's loop clips its GNB gradient too, so ``gnb`` passes are clipped as well.
    ``accumulate=True`` adds the backward's gradients to those in ``.grad`` instead of zeroing them
    first (SAM and RS sum their passes in place rather than in a second gradient-sized buffer).
    ``check(loss)`` sees every unlearning loss before it is used. The closure carries
    ``batch_tokens``, the forget batch's number of predicted tokens (SophiaG scales its Hessian by it),
    ``max_grad_norm`` and ``takes_parts`` (it accepts ``part``, ``clip`` and ``accumulate``).

    ``share`` (data parallelism, ``distributed.DataShare``): ``(fb, rb)`` are this rank's part of the
    batch, ``share.weight`` scales the loss before its backward, every returned value is the ranks'
    average, and the GNB pass runs on ``share.whole_forget`` (the whole forget batch on every rank).
    """
    from .objectives import gnb_loss
    from .optim._common import clip_grad_norm

    def terms(part: str) -> Any:
        if part == "all":
            loss = objective.loss(model, fb, rb, ref)
        elif part == "forget":
            loss = objective.forget_loss(model, fb, ref)
        elif part == "retain":
            loss = objective.retain_loss(model, rb, ref)
        else:
            raise ValueError(f"closure part must be 'all', 'forget' or 'retain', got {part!r}")
        return loss * share.weight if share is not None and share.weight != 1.0 else loss

    def out(loss: torch.Tensor) -> torch.Tensor:
        return share.mean(loss) if share is not None else loss

    def clipped() -> None:
        clip_grad_norm((p for g in opt.param_groups for p in g["params"]), max_grad_norm)

    def closure(backward: bool = True, gnb: bool = False, part: str = "all", clip: bool = True,
                accumulate: bool = False) -> torch.Tensor:
        if gnb:
            opt.zero_grad(set_to_none=True)
            loss = gnb_loss(model, fb if share is None else share.whole_forget)
            loss.backward()
            if clip:
                clipped()
            return loss.detach()
        if backward:
            if not accumulate:
                opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = terms(part)
            if not torch.is_tensor(loss):  # a term that is absent (retain weight 0): no gradient
                return out(torch.tensor(float(loss)))
            if check is not None:
                check(loss)
            loss.backward()
            if clip:
                clipped()
            return out(loss.detach())
        loss = terms(part)
        if not torch.is_tensor(loss):
            return out(torch.tensor(float(loss)))
        if check is not None:
            check(loss)
        return out(loss.detach())

    whole = fb if share is None else share.whole_forget
    closure.batch_tokens = int((whole["labels"][:, 1:] != -100).sum())
    closure.max_grad_norm = max_grad_norm
    closure.takes_parts = True
    closure.accumulates = True  # takes accumulate=True
    return closure


def _share() -> Any:
    from .distributed import DataShare

    return DataShare()


def cache_reference(objective: Any, ref: Any, tok: Any, forget: Sequence[str], *, steps: int, batch_size: int,
                    max_len: int, seed: int, chunking: str = "truncate", data_parallel: bool = False) -> bool:
    """Score every forget example the run will see with the frozen reference, up front, then release
    the objective's hold on ``ref`` so the caller can free it (issue 23: 12.5 GiB at 7B in bf16).

    Only for objectives whose reference enters through per-example scores (``ref_cacheable``: NPO;
    not RMU, which reads the frozen model's activations every step). The batches are the loop's
    (``unlearn``: the same examples, seed, order and, data-parallel, this rank's block), scored as
    the loop scored them lazily before (a batch with an unseen example scored whole, first score
    kept), so the losses are the same bit for bit. Returns whether the scores were cached."""
    from .data.chunking import examples
    from .models import autocast

    if ref is None or not getattr(objective, "ref_cacheable", False):
        return False
    dev = next(ref.parameters()).device
    pad = _pad_id(tok)
    share = _share() if data_parallel else None
    f_it = batches(examples(tok, forget, max_len, chunking), batch_size, seed)
    for _ in range(steps):
        f_all = next(f_it)
        if share is not None:
            f_all, _ = share.split(f_all)
        with autocast(dev):
            objective.reference_nll(ref, collate(f_all, pad, dev))
    objective.release_reference()
    return True


def unlearn(model: Any, tok: Any, forget: Sequence[str], retain: Sequence[str], *, objective: Any,
            opt_spec: dict, steps: int, batch_size: int, max_len: int, seed: int,
            ref: Any = None, chunking: str = "truncate", warmup_steps: int = 0,
            schedule: str = "constant", data_parallel: bool = False, check_every: int = 0,
            check: Callable[[int], bool] | None = None, check_steps: Container[int] | None = None) -> list[dict]:
    """Run the unlearning loop: one optimizer of any grade, stepped with a loss closure.

    The closure follows docs/extending/architecture.md: ``closure(backward=True, gnb=False)``. Zeroth-order
    optimizers call it with ``backward=False``; Sophia's Gauss-Newton-Bartlett refresh with ``gnb=True``.
    The closure carries ``batch_tokens``, the number of predicted tokens of the forget batch (the
    batch Sophia's GNB loss averages over; SophiaG scales its Hessian by it). Returns one record per
    step: step, loss, and the optimizer's ``last_stats`` where it keeps them (Sophia's ``unclipped``
    share, AdaZO's ``move_over_lr``). The closure clips the gradients to the entry's
    ``max_grad_norm`` (kept on the built optimizer; 0: off). ``chunking`` turns forget and retain
    texts into examples (unlearning.data.chunking). ``warmup_steps`` and ``schedule`` (``constant`` or ``linear``) set
    the learning rate of each step as HF Trainer's linear schedule does (unlearning.lr_schedule).
    ``data_parallel`` (a torchrun job, distributed.py): each rank computes its share of every batch.
    On CUDA the forward and backward run under bf16 autocast (models.autocast; weights stay fp32).

    Early stopping (calibration.early_stop): ``check(step)`` is called after every ``check_every``-th
    step and after the last, with the model in eval mode and the RNG states put back afterwards, and
    returns True to stop there; the model is left in that step's state. ``check_steps``: the steps to
    check at instead (stages/unlearn.py: every ``every``-th and the budget, or a replay's every step
    after the last check before an overshooting one). The optimizer, the schedule
    and a hybrid's phases are laid out over ``steps`` (the budget), so a stopped run is the budget
    run's first steps: bit for bit a ``steps=k`` run where neither depends on the length (a
    constant rate, no hybrid).
    """
    from .data.chunking import examples
    from .lr_schedule import scheduler
    from .models import autocast
    from .optim import build_optimizer

    if cache_reference(objective, ref, tok, forget, steps=steps, batch_size=batch_size, max_len=max_len,
                       seed=seed, chunking=chunking, data_parallel=data_parallel):
        ref = None  # NPO's scores are cached; the caller's copy is its own to free (stages/unlearn.py)
    dev = next(model.parameters()).device
    params = [p for p in objective.parameters(model)]
    trainable = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    opt = build_optimizer(params, dict(opt_spec), total_steps=steps)
    # HF Trainer's warmup / linear decay (TOFU's recipe), unlearning.lr_schedule; None: rates untouched
    set_lr = scheduler(opt, steps, warmup_steps, schedule)
    who = opt_spec.get("type", "?")
    pad = _pad_id(tok)
    f_it = batches(examples(tok, forget, max_len, chunking), batch_size, seed)
    r_it = batches(examples(tok, retain, max_len, chunking), batch_size, seed + 1)
    model.train()
    trace: list[dict] = []
    bar = tqdm(range(1, steps + 1), desc=f"unlearn[{who}]", mininterval=2.0, disable=None)
    share = _share() if data_parallel else None
    for step in bar:
        f_all, r_all = next(f_it), next(r_it)
        if share is not None:  # this rank's block of each batch (distributed.DataShare)
            share.whole_forget = collate(f_all, pad, dev)
            tokens = _predicted(f_all), _predicted(r_all)
            f_all, share.weight = share.split(f_all)
            r_all, _ = share.split(r_all)  # the same block sizes: both batches have batch_size examples
        fb = collate(f_all, pad, dev)
        rb = collate(r_all, pad, dev)
        if share is not None and share.weight:
            # token means (objectives.mean_nll) over the whole batch's tokens: N sum_r / T after the
            # loss's factor n_r N / B, so the ranks' average is the single process's token mean
            for b, total in zip((fb, rb), tokens):
                b["token_scale"] = batch_size / (len(f_all) * max(1, total))

        closure = loss_closure(model, opt, objective, fb, rb, ref,
                               check=lambda loss: _check_finite(loss, step, who, "unlearning"),
                               max_grad_norm=getattr(opt, "max_grad_norm", None), share=share)
        if set_lr is not None:
            set_lr(step - 1)
        with autocast(dev):
            loss = opt.step(closure)
        value = float(loss) if loss is not None else float("nan")
        _check_finite(torch.tensor(value), step, who, "unlearning")
        trace.append({"step": step, "loss": value, **getattr(opt, "last_stats", {})})
        if step % 10 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
        if check is not None and _due(step, steps, check_every, check_steps) and _checked(model, check, step):
            break
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return trace


def _due(step: int, steps: int, every: int, at: Container[int] | None) -> bool:
    """Whether ``unlearn`` checks after ``step``: one of ``at`` when given, else every ``every``-th and the last."""
    return step in at if at is not None else step % every == 0 or step == steps


def _checked(model: Any, check: Callable[[int], bool], step: int) -> bool:
    """``check(step)`` on the model in eval mode without gradients, leaving the training loop as it
    was: train mode and the torch and Python RNG states (a scorer that draws from them must not change
    the steps after it)."""
    cpu, py = torch.get_rng_state(), random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    model.eval()
    try:
        with torch.no_grad():
            return bool(check(step))
    finally:
        model.train()
        torch.set_rng_state(cpu)
        random.setstate(py)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def sharded_unlearn(model: torch.nn.Module, ref: torch.nn.Module | None, tok: Any, forget: Sequence[str],
                    retain: Sequence[str], *, objective: Any, opt_spec: dict, steps: int, batch_size: int,
                    max_len: int, seed: int, chunking: str = "truncate", sharded: bool = False,
                    **loop: Any) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """``unlearn`` data-parallel over this torchrun job's ranks, on a model (and NPO reference)
    sharded with FSDP2 (distributed.py): ``sharded`` when they come from ``distributed.load_sharded``,
    else they are whole models (every rank's copy) and are sharded here. ``loop``: further keywords
    of ``unlearn``.

    Returns the trace and, on rank 0, the full state dict on the CPU (empty on other ranks). The
    caller writes outputs on rank 0 only.
    """
    from .distributed import check_shardable, full_state_dict, init, rank, shard

    check_shardable(opt_spec, opt_spec.get("type", "?"))
    dev = init()
    if not sharded:
        shard(model, dev)
        if ref is not None:
            shard(ref, dev, frozen=True)
    trace = unlearn(model, tok, forget, retain, objective=objective, opt_spec=opt_spec, steps=steps,
                    batch_size=batch_size, max_len=max_len, seed=seed, ref=ref, chunking=chunking,
                    data_parallel=True, **loop)
    state = full_state_dict(model)
    return trace, (state if rank() == 0 else {})
