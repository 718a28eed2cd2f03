"""Zeroth-order grade: ZO-SGD and AdaZO with the randomized gradient estimate (RGE).

Estimate, from function values only (central differences over ``q`` random directions):

    g_hat = (phi / q) * sum_i [f(x + mu u_i) - f(x - mu u_i)] / (2 mu) * u_i

``direction="gaussian"``: u_i ~ N(0, I), phi = 1 (MeZO). ``direction="sphere"``: u_i uniform on the
unit sphere of R^d (a normalised Gaussian), phi = d (number of parameters) when ``unbiased`` else 1
(the paper's RGE; phi is then folded into lr). ``direction="rademacher"``: u_i with independent +-1
entries (SPSA's), phi = 1 (E[u u^T] = I); about 7x cheaper to draw than a Gaussian on the CPU.

Scaling (the ``unbiased`` config value, sphere only). Expectations (tests/test_optim.py checks each on
f(x) = sum x^4 / 4, where grad f = x^3):
- gaussian: E g_hat = grad f_mu, f_mu(x) = E f(x + mu v), v ~ N(0, I) (Stein): x^3 + 3 mu^2 x.
- sphere, unbiased (phi = d): E g_hat = grad f_mu with v uniform in the unit ball: x^3 + 3 mu^2 x/(d+2).
- sphere, ``unbiased: false`` (phi = 1): that gradient divided by d (lr absorbs the factor d).
- rademacher: E g_hat = x^3 + mu^2 x, the gradient up to O(mu^2) but *not* the gradient of the
  Rademacher-smoothed loss (that would be x^3 + 3 mu^2 x); exact for quadratics, like the others.
Note the scale: a sphere direction has norm 1, so each coordinate is perturbed by about
mu / sqrt(d); ``mu_sphere = mu_gaussian * sqrt(d)`` perturbs the weights as much as MeZO does.
``sphere_radius: mu_sqrt_d`` does that for any d: the sphere's perturbation is mu sqrt(d) u (each
weight moves by about mu, as with Gaussian or Rademacher directions) and the projection is divided by
that radius, so g_hat keeps its scale (phi as above) and the smoothing radius becomes mu sqrt(d).
Needed in bf16: at 7B (d = 6.7e9) mu = 1e-3 on the unit sphere moves each weight by 1.2e-8, below
the bf16 rounding of any weight, so the perturbed forward (FSDP2 casts the shards to bf16, autocast
the fp32 weights) sees the unperturbed model and the projection is noise (tests/test_zo_bf16.py: a
correlation of ~0 with fp32's at d = 2048 already; >= 0.99 with mu_sqrt_d). ``mu`` (default) keeps the
unit-sphere perturbation.

bf16/fp16 weights (``master_weights``, default on). A ZO update of about lr * |g_hat| ~ 1e-6 per weight
is below half a bf16 ulp of a typical weight (|w| ~ 1e-2 has ulp 6e-5), so rounding to the nearest
bf16 discards it and the run does not move (tests/test_optim.py measures it). With master weights the
optimizer keeps an fp32 copy of every trainable weight (state ``master``): the perturbations are
written as round(master +- mu u) (the restore is then exact, round(master), and needs no snapshot),
the update is applied to the master in fp32 and the weights are rewritten from it. Extra memory: 4
bytes per trainable weight (twice the bf16 weights: 27 GB for Llama-2-7B's 6.74e9), no gradient
memory; AdaZO's moments are then fp32 too (8 bytes per weight). No effect on fp32 weights. Caveat:
``Optimizer.load_state_dict`` casts state to the weights' dtype, so a resumed state loses the masters'
extra bits (the unlearning loop never resumes). The hybrid reloads the masters from the weights after
each first-order phase (``sync_master``).

Memory (MeZO): one seed per direction per step; the weights are perturbed in place (+mu u, evaluate,
-2 mu u, evaluate, +mu u restores), and the direction is regenerated from its seed to apply the
update, never stored. Draws are made in chunks of ``_common.CHUNK`` elements into small reusable
buffers, so a ZO-SGD step needs inference memory plus a few MiB (AdaZO adds its two moment buffers)
and never allocates a parameter-sized temporary. With q > 1 the q projected-gradient scalars are
kept and all q directions are regenerated in the single update pass (one generator per direction,
advanced chunk by chunk in lockstep). The restore of the last direction is fused into the
update pass.

In-place restore is exact only up to floating-point rounding: fl(fl(fl(p + a) - 2a) + a) differs
from p by about one ulp in many coordinates (the map p -> fl(p + a) is not injective, so no
storage-free scheme can be exact). ``exact_restore=True`` instead snapshots the weights once per
step and copies them back bit-for-bit, at the cost of one extra copy of the weights.

Seeds: direction i of step t (t counts from 0) uses ``step_seed(seed, t, i)``; a step is therefore
deterministic given ``seed`` and the step count. The closure is called as ``closure(backward=False)``
under ``torch.no_grad()``. ``mu``, ``q``, ``direction``, ``unbiased``, ``seed`` and
``exact_restore`` are global (taken from the constructor); ``lr``, ``weight_decay`` (and AdaZO's
``betas``, ``zeta``) may differ per parameter group.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim import Optimizer

from ._common import (
    DirectionStream,
    _is_dtensor,
    check_betas,
    check_nonneg,
    direction_norm,
    local_flat,
    require_closure,
    step_seed,
    trainable,
)

_DIRECTIONS = ("gaussian", "sphere", "rademacher")
SPHERE_RADII = ("mu", "mu_sqrt_d")
_LOW_PRECISION = (torch.bfloat16, torch.float16)


class _ZerothOrder(Optimizer):
    """Shared RGE machinery; subclasses implement ``_update_param``."""

    def __init__(self, params, defaults: dict, mu: float, q: int, direction: str, unbiased: bool,
                 seed: int, exact_restore: bool, master_weights: bool = True, sphere_radius: str = "mu"):
        if sphere_radius not in SPHERE_RADII:
            raise ValueError(f"sphere_radius must be one of {SPHERE_RADII}, got {sphere_radius!r}")
        if direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
        if not float(mu) > 0:
            raise ValueError(f"mu must be > 0, got {mu!r}")
        if int(q) != q or q < 1:
            raise ValueError(f"q must be a positive integer, got {q!r}")
        super().__init__(params, defaults)
        self.mu = float(mu)
        self.q = int(q)
        self.direction = direction
        self.kind = "rademacher" if direction == "rademacher" else "normal"
        self.unbiased = bool(unbiased)
        self.seed = int(seed)
        self.exact_restore = bool(exact_restore)
        self.master_weights = bool(master_weights)
        self.sphere_radius = sphere_radius
        self.last_projections: list[float] = []  # for inspection/tests: [f+ - f-]/(2 mu) per direction
        # CHUNK-sized draw buffers per (device, dtype), kept across steps (a few MiB; reallocating them
        # every step fragmented the heap between the two forwards). Direction i of the update pass
        # uses set i; the perturbation passes use set 0.
        self._buffer_sets: list[dict] = [{} for _ in range(self.q)]

    # -- helpers -----------------------------------------------------------------------------
    def _phi(self, d: int) -> float:
        """Scale of the sphere estimate (module docstring); AdaZO overrides it."""
        return float(d) if self.unbiased else 1.0

    def _step_count(self, params) -> int:
        return self.state[params[0]].get("step", 0) if params else 0

    def _stream(self, seed: int, buffers: dict) -> DirectionStream:
        return DirectionStream(seed, buffers, kind=self.kind)

    def uses_master(self, params=None) -> bool:
        """True when fp32 master weights are kept: ``master_weights`` and some trainable weight is
        bf16/fp16 (then every trainable weight gets one, so all draws come from one fp32 stream)."""
        params = trainable(self.param_groups) if params is None else params
        return self.master_weights and any(p.dtype in _LOW_PRECISION for p in params)

    def _ensure_masters(self, params) -> None:
        for p in params:
            st = self.state[p]
            if "master" not in st:
                st["master"] = p.detach().to(torch.float32, memory_format=torch.contiguous_format, copy=True)

    @torch.no_grad()
    def sync_master(self) -> None:
        """Reload the fp32 master weights from the weights, after something else changed them (the
        hybrid's first-order phase); a no-op without master weights."""
        for p in trainable(self.param_groups):
            st = self.state.get(p)
            if st and "master" in st:
                st["master"].copy_(p.detach())

    def _perturb(self, params, seed: int, alpha: float) -> None:
        """Without master weights: p += alpha z, in place (cumulative)."""
        stream = self._stream(seed, self._buffer_sets[0])
        for p in params:
            stream.add_to(p, alpha)

    def _place(self, params, seed: int, alpha: float) -> None:
        """With master weights: p = round(master + alpha z), z drawn in fp32 (absolute, not cumulative)."""
        stream = self._stream(seed, self._buffer_sets[0])
        for p in params:
            master = self.state[p]["master"]
            flat, mflat = local_flat(p), local_flat(master)
            for a, b, z in stream.chunks(master):
                flat[a:b].copy_(z.mul_(alpha).add_(mflat[a:b]))

    # -- the step ------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        closure = require_closure(closure, type(self).__name__)
        params = trainable(self.param_groups)
        if not params:
            return None
        master = self.uses_master(params)
        if master:
            self._ensure_masters(params)
        t = self._step_count(params)
        d = sum(p.numel() for p in params)
        seeds = [step_seed(self.seed, t, i) for i in range(self.q)]
        if self.direction == "sphere":
            drawn = [self.state[p]["master"] for p in params] if master else params  # the draw dtype
            norms = [direction_norm(drawn, s) for s in seeds]
            phi = self._phi(d)
        else:
            norms = [1.0] * self.q
            phi = 1.0
        # the perturbation's radius along each unit direction (sphere_radius, module docstring)
        radius = self.mu * math.sqrt(d) if self.direction == "sphere" and self.sphere_radius == "mu_sqrt_d" else self.mu
        snapshot = [p.detach().clone() for p in params] if self.exact_restore and not master else None

        projections, losses = [], []
        for i, (s, n) in enumerate(zip(seeds, norms)):
            scale = radius / n  # perturbation mu * u_i = (mu / ||z||) z for the sphere
            if master:  # the weights are rewritten from the masters: exact restore for free
                self._place(params, s, scale)
                f_plus = float(closure(backward=False))
                self._place(params, s, -scale)
                f_minus = float(closure(backward=False))
            else:
                self._perturb(params, s, scale)
                f_plus = float(closure(backward=False))
                self._perturb(params, s, -2.0 * scale)
                f_minus = float(closure(backward=False))
                if snapshot is not None:
                    for p, p0 in zip(params, snapshot):
                        p.copy_(p0)
                elif i < self.q - 1:
                    self._perturb(params, s, scale)
                # else: the last direction is restored inside the update pass
            projections.append((f_plus - f_minus) / (2.0 * radius))
            losses.append(0.5 * (f_plus + f_minus))
        del snapshot
        self.last_projections = projections

        # g_hat = sum_i c_i z_i with c_i = phi/q * proj_i / ||z_i|| (||z_i|| = 1 for gaussian). One pass
        # over the parameters regenerates every z_i chunk by chunk: q generators advanced in lockstep,
        # each with its own CHUNK-sized buffer. With master weights the update acts on the fp32 master
        # and the weights are rewritten from it (which also restores them).
        coefs = [phi / self.q * pr / n for pr, n in zip(projections, norms)]
        restore_scale = 0.0 if (self.exact_restore or master) else radius / norms[-1]
        streams = [self._stream(s, bufs) for s, bufs in zip(seeds, self._buffer_sets)]
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                st = self.state[p]
                work = st["master"] if master else p
                self._begin_param(work, st)
                flat, pflat = local_flat(work), local_flat(p)
                for parts in zip(*(stream.chunks(work) for stream in streams)):
                    a, b = parts[0][0], parts[0][1]
                    pc = flat[a:b]
                    if restore_scale:
                        pc.add_(parts[-1][2], alpha=restore_scale)
                    self._chunk_update(pc, a, b, [(z, c) for (_, _, z), c in zip(parts, coefs)], group, st)
                    if master:
                        pflat[a:b].copy_(pc)
                st["step"] = st.get("step", 0) + 1
        return torch.tensor(sum(losses) / len(losses))

    def _begin_param(self, p, st) -> None:
        pass

    def _chunk_update(self, pc, a, b, zc, group, st) -> None:  # pragma: no cover
        """Update ``pc = p.view(-1)[a:b]`` (already restored) given ``[(z_i chunk, c_i), ...]``."""
        raise NotImplementedError


class ZOSGD(_ZerothOrder):
    """ZO-SGD: theta <- theta - lr * g_hat (RGE above); optional decoupled weight decay.

    Defaults: ``lr=1e-6`` ours (MeZO's range 1e-7..1e-5); ``mu=1e-3``, ``q=1`` MeZO's (the paper
    does not publish them); ``direction="gaussian"`` ours (MeZO; the paper's RGE uses the sphere,
    available as ``"sphere"``); ``unbiased=True`` ours (phi = d for the sphere, which gives the same
    step scale as Gaussian directions); ``weight_decay=0``, ``seed=0``, ``exact_restore=False`` ours.
    """

    def __init__(self, params, lr: float = 1e-6, mu: float = 1e-3, q: int = 1, direction: str = "gaussian",
                 unbiased: bool = True, weight_decay: float = 0.0, seed: int = 0, exact_restore: bool = False,
                 master_weights: bool = True, sphere_radius: str = "mu"):
        check_nonneg(lr=lr, weight_decay=weight_decay)
        super().__init__(params, dict(lr=float(lr), weight_decay=float(weight_decay)),
                         mu, q, direction, unbiased, seed, exact_restore, master_weights, sphere_radius)

    def _chunk_update(self, pc, a, b, zc, group, st):
        lr, wd = group["lr"], group["weight_decay"]
        if wd:
            pc.mul_(1.0 - lr * wd)
        if lr:
            for z, c in zc:
                if c:
                    pc.add_(z, alpha=-lr * c)


class AdaZO(_ZerothOrder):
    """AdaZO (R-AdaZO, Shu et al. 2025): Adam-like normalisation of the RGE with a momentum-based
    second moment, optionally bias-corrected.

        m = b1 m + (1-b1) g_hat
        bias_correction=False (R-AdaZO's code):      v = b2 v + (1-b2) m^2;   d = m / (sqrt(v) + zeta)
        bias_correction=True  (default):             mh = m / (1-b1^t);  v = b2 v + (1-b2) mh^2;
                                                     d = mh / (sqrt(v / (1-b2^t)) + zeta)
        theta -= lr * d

    Step size. Without bias correction the first step moves every weight by lr / sqrt(1-b2) (31.6 lr
    at b2 = 0.999; m and v start at zero and v is built from m^2), and the ratio decays only over
    ~1/(1-b2) steps. Measured (mean |delta theta| / lr, default study's MUSE target, GradDiff, q = 1,
    Gaussian, 50 steps): without correction 31.6 at step 1, 19-23 at steps 2-5, 8.1 on average, 4.9
    at step 50; with correction 1.00 at step 1 and 0.67 on average (0.40-1.11). So with correction lr
    means what it means for Adam, and a hybrid's ZO lr compares with its FO lr. Always
    |d| <= 1/sqrt(1-b2), so zeta is only a guard against 0/0, outside the square root as Adam's eps.

    Scale. AdaZO's update does not depend on a constant factor on g_hat except through zeta, so the
    sphere estimate is always taken with phi = d (the gradient's scale) whatever ``unbiased`` says:
    with phi = 1, g_hat was d times smaller and zeta inside the square root (sqrt(v + zeta), as
    R-AdaZO writes it) became the floor that froze the model (measured before issue 17: 3e-4 lr per
    step on the MUSE target).

    ``last_stats["move_over_lr"]``: mean |delta theta| / lr over all weights in the last step (weight
    decay excluded). State: ``exp_avg`` (m), ``exp_avg_sq`` (v); directions are never stored.

    ``bias_correction=False`` is R-AdaZO's official code (shuyao95/R-AdaZO radazo.py: no bias
    correction, its eps outside the square root, betas (0.9, 0.999) and eps 1e-8 as here), which the
    paper configs run; the paper writes sqrt(v + zeta), followed by neither.

    Defaults: ``lr=1e-5`` ours; ``betas=(0.9, 0.999)`` ours (Adam's, R-AdaZO's); ``bias_correction=True``
    ours (known step size, above); ``zeta=1e-8`` ours (Adam's eps); ``mu=1e-3``, ``q=1`` MeZO's;
    ``direction="gaussian"``, ``weight_decay=0``, ``seed=0``, ``exact_restore=False`` ours.
    """

    def __init__(self, params, lr: float = 1e-5, betas=(0.9, 0.999), zeta: float = 1e-8,
                 bias_correction: bool = True, mu: float = 1e-3, q: int = 1, direction: str = "gaussian",
                 unbiased: bool = True, weight_decay: float = 0.0, seed: int = 0, exact_restore: bool = False,
                 master_weights: bool = True, sphere_radius: str = "mu"):
        check_nonneg(lr=lr, zeta=zeta, weight_decay=weight_decay)
        super().__init__(params, dict(lr=float(lr), betas=check_betas(betas), zeta=float(zeta),
                                      bias_correction=bool(bias_correction), weight_decay=float(weight_decay)),
                         mu, q, direction, unbiased, seed, exact_restore, master_weights, sphere_radius)
        self.last_stats: dict[str, float] = {}
        self._moved: dict = {}  # device -> sum of |d| this step (one sync per step, not per chunk)
        self._count = 0

    def _phi(self, d: int) -> float:
        return float(d) if self.direction == "sphere" else 1.0

    def step(self, closure=None):
        self._moved, self._count = {}, 0
        loss = super().step(closure)
        moved, count = sum(float(v) for v in self._moved.values()), self._count
        if any(_is_dtensor(p) for p in trainable(self.param_groups)):  # sharded: add up every rank's part
            import torch.distributed as dist

            both = torch.tensor([moved, float(count)], dtype=torch.float64,
                                device=next(iter(self._moved)) if self._moved else "cpu")
            dist.all_reduce(both)
            moved, count = float(both[0]), int(both[1])
        if count:
            self.last_stats = {"move_over_lr": moved / count}
        return loss

    def _begin_param(self, p, st):
        if "exp_avg" not in st:
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)

    def _chunk_update(self, pc, a, b, zc, group, st):
        lr, (b1, b2), zeta, wd = group["lr"], group["betas"], group["zeta"], group["weight_decay"]
        m = local_flat(st["exp_avg"])[a:b]
        v = local_flat(st["exp_avg_sq"])[a:b]
        m.mul_(b1)
        for z, c in zc:
            if c:
                m.add_(z, alpha=(1.0 - b1) * c)
        if group["bias_correction"]:
            t = st.get("step", 0) + 1
            mh = m / (1.0 - b1 ** t)
            v.mul_(b2).addcmul_(mh, mh, value=1.0 - b2)
            denom = (v / (1.0 - b2 ** t)).sqrt_().add_(zeta)
        else:
            mh = m
            v.mul_(b2).addcmul_(m, m, value=1.0 - b2)
            denom = v.sqrt().add_(zeta)
        d = torch.where(denom > 0, mh / denom, torch.zeros_like(mh))
        acc = self._moved.get(d.device)
        total = d.abs().sum(dtype=torch.float64)
        self._moved[d.device] = total if acc is None else acc + total
        self._count += d.numel()
        if wd:
            pc.mul_(1.0 - lr * wd)
        if lr:
            pc.add_(d, alpha=-lr)
