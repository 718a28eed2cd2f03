"""Hybrid grade: FO-ZO, alternating first-order and zeroth-order phases.

``n_fo`` steps of a first-order optimizer (Adam by default), then ``n_zo`` steps of a zeroth-order one
(AdaZO by default), repeated; the run starts first-order and always ends on a zeroth-order phase.

Schedule rule for ``total_steps`` T, cycle C = n_fo + n_zo, T = K*C + r (0 <= r < C):
the run ends with K full cycles [FO n_fo, ZO n_zo]; the r leftover steps form a shortened cycle
*prepended* at the start, split in the FO:ZO ratio with ZO rounded down (r_zo = floor(r*n_zo/C),
r_fo = r - r_zo >= 1), so the FO:ZO step ratio is kept as closely as integers allow. Adjacent phases
of the same kind merge (r_zo = 0 lengthens the first FO phase). When T < C (K = 0), r_zo is at least
1 so the run still ends on ZO; T = 1 is a single ZO step (the only case that cannot start FO).
Steps beyond T (if the loop runs longer) stay zeroth-order.
Examples (n_fo = n_zo = 20): T=80 -> FO20 ZO20 FO20 ZO20; T=50 -> FO5 ZO5 FO20 ZO20;
T=45 -> FO3 ZO2 FO20 ZO20; T=10 -> FO5 ZO5; T=41 -> FO21 ZO20.

The two sub-optimizers act on the same parameters and keep their own state across phases (Adam's
moments pause during ZO phases and vice versa). With bf16 weights the ZO optimizer's fp32 master
copies are reloaded from the weights at each FO -> ZO switch (the FO phase changed them), so at
most half a bf16 ulp of the ZO phase's progress is rounded away per switch.

``offload_idle`` (ours; the paper configs): at each phase switch the idle sub-optimizer's state tensors
move to host memory and the active one's back to its weights' device, so the GPU holds one phase's
state, not both (at 7B, Adam + AdaZO is 16 bytes per weight). Moving is exact, so the run is the same
bit for bit; on the CPU nothing moves. FSDP2 shards (DTensors) are left in place.
"""

from __future__ import annotations

from typing import Callable

from torch.optim import Optimizer

from .build import GRADES, build_optimizer

FO, ZO = "fo", "zo"


def fozo_schedule(total_steps: int, n_fo: int, n_zo: int) -> list[tuple[str, int]]:
    """Phases as ``[(kind, length), ...]`` following the rule in the module docstring."""
    for name, v in (("total_steps", total_steps), ("n_fo", n_fo), ("n_zo", n_zo)):
        if v is None or int(v) != v or v < 1:
            raise ValueError(f"hybrid: {name} must be a positive integer, got {v!r}")
    cycle = n_fo + n_zo
    k, r = divmod(int(total_steps), cycle)
    phases: list[tuple[str, int]] = []
    if r:
        r_zo = (r * n_zo) // cycle
        if k == 0:
            r_zo = max(1, r_zo)
        r_fo = r - r_zo
        phases += [(FO, r_fo), (ZO, r_zo)]
    phases += [(FO, n_fo), (ZO, n_zo)] * k
    merged: list[tuple[str, int]] = []
    for kind, n in phases:
        if n <= 0:
            continue
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + n)
        else:
            merged.append((kind, n))
    return merged


class HybridFOZO(Optimizer):
    """FO-ZO hybrid. ``fo`` and ``zo`` are optimizer specs (as for ``build_optimizer``) whose types must
    be of grade first/compressed/second and zeroth respectively.

    A parameter group's own hyperparameters (e.g. ``{"params": ..., "lr": 0}``) override both phase
    specs' for that group.

    Defaults: ``fo={"type": "adam"}``, ``zo={"type": "adazo"}`` and ``n_fo = n_zo = 20`` the paper's
    (1:1 was best, e.g. 20/20; insensitive to N); sub-spec hyperparameters not given take their
    constructors' defaults. ``total_steps`` is required (the registry passes it).
    """

    def __init__(self, params, fo: dict | None = None, zo: dict | None = None, n_fo: int = 20, n_zo: int = 20,
                 total_steps: int | None = None, offload_idle: bool = False):
        fo = dict(fo) if fo is not None else {"type": "adam"}
        zo = dict(zo) if zo is not None else {"type": "adazo"}
        if GRADES.get(fo.get("type")) not in ("first", "compressed", "second"):
            raise ValueError("hybrid: 'fo' must be a first-order/compressed/second-order spec, "
                             f"got type {fo.get('type')!r}")
        if GRADES.get(zo.get("type")) != "zeroth":
            raise ValueError(f"hybrid: 'zo' must be a zeroth-order spec, got type {zo.get('type')!r}")
        self._schedule = fozo_schedule(total_steps, n_fo, n_zo)
        super().__init__(params, dict(n_fo=int(n_fo), n_zo=int(n_zo), total_steps=int(total_steps)))
        self.total_steps = int(total_steps)
        # a group's own settings (e.g. its lr) override the phase specs' for that group, in both phases
        own = [{k: v for k, v in g.items() if k not in self.defaults} for g in self.param_groups]
        self.fo = build_optimizer([dict(g) for g in own], fo, total_steps)
        self.zo = build_optimizer([dict(g) for g in own], zo, total_steps)
        self._boundaries = []
        start = 0
        for kind, n in self._schedule:
            self._boundaries.append((start, start + n, kind))
            start += n
        self.steps_done = 0
        self.last_stats: dict[str, float] = {}
        self.offload_idle = bool(offload_idle)

    @property
    def max_grad_norm(self) -> float:
        """The first-order phase's gradient clipping norm (the unlearning loop's closure applies it;
        zeroth-order phases take no gradient)."""
        return getattr(self.fo, "max_grad_norm", 0.0)

    def schedule(self) -> list[tuple[str, int]]:
        """The phase list, e.g. ``[("fo", 20), ("zo", 20), ...]``; lengths sum to total_steps."""
        return list(self._schedule)

    def phase(self, step: int) -> str:
        """``"fo"`` or ``"zo"`` for 0-based step index ``step``."""
        for a, b, kind in self._boundaries:
            if a <= step < b:
                return kind
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return ZO

    def step(self, closure: Callable | None = None):
        if closure is None:
            raise ValueError("HybridFOZO.step needs a closure(backward: bool = True, gnb: bool = False) -> loss")
        kind = self.phase(self.steps_done)
        sub = self.fo if kind == FO else self.zo
        if kind == ZO and self.steps_done > 0 and self.phase(self.steps_done - 1) == FO:
            # the first-order phase moved the weights: the ZO fp32 master copies are stale
            getattr(self.zo, "sync_master", lambda: None)()
        if self.offload_idle and (self.steps_done == 0 or self.phase(self.steps_done - 1) != kind):
            _place_state(self.zo if kind == FO else self.fo, host=True)
            _place_state(sub, host=False)
        loss = sub.step(closure)
        self.last_stats = dict(getattr(sub, "last_stats", {}))  # the active phase's (for the trace)
        self.steps_done += 1
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.fo.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"steps_done": self.steps_done, "fo": self.fo.state_dict(), "zo": self.zo.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.steps_done = int(state_dict["steps_done"])
        self.fo.load_state_dict(state_dict["fo"])
        self.zo.load_state_dict(state_dict["zo"])


def _place_state(opt: Optimizer, host: bool) -> None:
    """Move ``opt``'s per-weight state tensors to host memory (``host``) or back to each weight's
    device; scalars (step counts) and FSDP2 shards stay. ``Tensor.to`` to the same device is a no-op."""
    import torch

    for p, st in opt.state.items():
        dev = torch.device("cpu") if host else p.device
        for k, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0 and type(v).__name__ != "DTensor" and v.device != dev:
                st[k] = v.to(dev, non_blocking=False)
