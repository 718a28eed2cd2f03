"""The optimizers as the lab's code runs them (issue 27): R-AdaZO's AdaZO, SAM and RS smoothing the
forget term only, gradient clipping, SophiaG's Hessian refresh order; and two bugs (RS noise that
never changed, a hybrid that ignored a parameter group's learning rate)."""

from __future__ import annotations

import pytest
import torch

from unlearning.optim import build_optimizer
from unlearning.optim._common import normal_like, step_seed

torch.set_num_threads(1)
F64 = torch.float64


def _quad(d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=F64)
    return m @ m.T / d + torch.eye(d, dtype=F64), torch.randn(d, generator=g, dtype=F64)


# ---------------------------------------------------------------- bugs ------------------------------------------------
@pytest.mark.slow
def test_rs_noise_differs_from_step_to_step_when_the_first_parameter_has_no_gradient():
    # Before the fix RS took its step count from the first trainable parameter's Adam state, which a
    # parameter that never gets a gradient never creates: every step drew step 1's noise.
    unused = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    w = torch.nn.Parameter(torch.arange(4, dtype=F64))
    seen: list[torch.Tensor] = []

    def closure(backward=True, gnb=False):
        seen.append(w.detach().clone())
        loss = (w ** 2).sum()
        if backward:
            w.grad = None
            loss.backward()
        return loss.detach()

    sigma, seed = 0.5, 3
    opt = build_optimizer([unused, w], {"type": "rs", "lr": 0.0, "sigma": sigma, "n_samples": 1, "seed": seed}, 3)
    w0 = w.detach().clone()
    for _ in range(3):
        opt.step(closure)
    noise = [(s - w0) / sigma for s in seen]
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[1], noise[2])
    for t, z in enumerate(noise, 1):  # step t's draw, over both parameters in order
        want = [zz for _, zz in normal_like([unused, w], step_seed(seed, t, 0))][1]
        assert torch.allclose(z, want, atol=1e-12)


def test_hybrid_group_at_lr_0_stays_put():
    # Before the fix the hybrid rebuilt its groups from the parameters alone: a group at lr 0 moved.
    a = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=F64))
    b = torch.nn.Parameter(torch.tensor([0.3, 0.7], dtype=F64))

    def closure(backward=True, gnb=False):
        loss = (a ** 2).sum() + ((b - 1) ** 2).sum() + (a[:2] * b).sum()
        if backward:
            a.grad = b.grad = None
            loss.backward()
        return loss.detach()

    spec = {"type": "hybrid", "n_fo": 2, "n_zo": 2, "fo": {"type": "adam", "lr": 0.05},
            "zo": {"type": "adazo", "lr": 0.05, "exact_restore": True}}
    opt = build_optimizer([{"params": [a]}, {"params": [b], "lr": 0.0}], spec, 8)
    a0, b0 = a.detach().clone(), b.detach().clone()
    for _ in range(8):
        opt.step(closure)
    assert torch.equal(b.detach(), b0)
    assert (a.detach() - a0).abs().max() > 0.05  # the other group moved (FO and ZO phases)


# ---------------------------------------------------------------- a two-term objective, the loop's closure ---------
class TwoTerms:
    """A stand-in objective: forget f(x) = 0.5 x'A x - b'x, retain r(x) = 0.5 x'C x - c'x over one
    flat parameter (the closure under test is the loop's own, train.loss_closure)."""

    def __init__(self, x: torch.Tensor, d: int):
        self.x = x
        self.A, self.b = _quad(d, 1)
        self.C, self.c = _quad(d, 2)

    def forget_loss(self, model, fb, ref=None):
        return 0.5 * self.x @ self.A @ self.x - self.b @ self.x

    def retain_loss(self, model, rb, ref=None):
        return 0.5 * self.x @ self.C @ self.x - self.c @ self.x

    def loss(self, model, fb, rb, ref=None):
        return self.forget_loss(model, fb) + self.retain_loss(model, rb)

    def grad_f(self, x):
        return self.A @ x - self.b

    def grad_r(self, x):
        return self.C @ x - self.c


def _closure(obj: TwoTerms, opt, max_grad_norm: float | None = None):
    from unlearning.train import loss_closure

    fb = {"labels": torch.zeros(1, 4, dtype=torch.long)}
    return loss_closure(None, opt, obj, fb, fb, None, max_grad_norm=max_grad_norm)


def _setup(spec: dict, d: int = 6, seed: int = 0):
    x = torch.nn.Parameter(torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=F64))
    obj = TwoTerms(x, d)
    opt = build_optimizer([x], spec, 4)
    return x, obj, opt


def _adam1(x, g, lr, eps=1e-8):
    """The first Adam step (bias-corrected): x - lr g / (|g| + eps)."""
    return x - lr * g / (g.abs() + eps)


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_sam_forget_only_equals_hand_computation(base):
    lr, rho = 0.1, 0.3
    x, obj, opt = _setup({"type": "sam", "lr": lr, "rho": rho, "base": base, "smooth_terms": "forget"})
    x0 = x.detach().clone()
    opt.step(_closure(obj, opt))
    gf = obj.grad_f(x0)
    g = obj.grad_f(x0 + rho * gf / gf.norm()) + obj.grad_r(x0)  # retain: plain gradient at x0
    want = x0 - lr * g if base == "sgd" else _adam1(x0, g, lr)
    assert torch.allclose(x.detach(), want, atol=1e-12)
    # the whole-loss form (ours, the default) is another update
    x2, obj2, opt2 = _setup({"type": "sam", "lr": lr, "rho": rho, "base": base})
    opt2.step(_closure(obj2, opt2))
    gw = obj.grad_f(x0) + obj.grad_r(x0)
    xe = x0 + rho * gw / gw.norm()
    g_all = obj.grad_f(xe) + obj.grad_r(xe)
    assert torch.allclose(x2.detach(), x0 - lr * g_all if base == "sgd" else _adam1(x0, g_all, lr), atol=1e-12)
    if base == "sgd":  # (Adam's first step is lr * sign(g) in both)
        assert (x2.detach() - x.detach()).abs().max() > 1e-3


def test_rs_forget_only_equals_hand_computation():
    lr, sigma, n, seed = 0.1, 0.2, 3, 4
    x, obj, opt = _setup({"type": "rs", "lr": lr, "sigma": sigma, "n_samples": n, "seed": seed,
                          "smooth_terms": "forget"})
    x0 = x.detach().clone()
    opt.step(_closure(obj, opt))
    zs = [next(normal_like([x0], step_seed(seed, 1, i)))[1] for i in range(n)]
    g = sum(obj.grad_f(x0 + sigma * z) for z in zs) / n + obj.grad_r(x0)
    assert torch.allclose(x.grad, g, atol=1e-12)
    assert torch.allclose(x.detach(), _adam1(x0, g, lr), atol=1e-12)
    # the whole-loss form smooths the retain term too: a different gradient
    g_all = sum(obj.grad_f(x0 + sigma * z) + obj.grad_r(x0 + sigma * z) for z in zs) / n
    assert (g - g_all).abs().max() > 1e-3


@pytest.mark.parametrize("type_", ["sam", "rs"])
def test_forget_only_needs_the_loops_closure(type_):
    x = torch.nn.Parameter(torch.ones(3, dtype=F64))

    def plain(backward=True, gnb=False):
        loss = (x ** 2).sum()
        loss.backward()
        return loss.detach()

    opt = build_optimizer([x], {"type": type_, "smooth_terms": "forget"}, 1)
    with pytest.raises(ValueError, match="forget and retain"):
        opt.step(plain)
    with pytest.raises(ValueError, match="smooth_terms"):
        build_optimizer([x], {"type": type_, "smooth_terms": "retain"}, 1)


def test_the_closure_splits_the_objective_into_its_terms():
    x, obj, opt = _setup({"type": "adam"})
    closure = _closure(obj, opt)
    x0 = x.detach().clone()
    parts = {}
    for part in ("all", "forget", "retain"):
        parts[part] = float(closure(part=part))
        assert torch.allclose(x.grad, {"all": obj.grad_f(x0) + obj.grad_r(x0), "forget": obj.grad_f(x0),
                                       "retain": obj.grad_r(x0)}[part], atol=1e-12)
    assert parts["all"] == pytest.approx(parts["forget"] + parts["retain"], abs=1e-12)


# ---------------------------------------------------------------- gradient clipping -----------------------------------
def _clipped(g: torch.Tensor, c: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_'s result: g * min(1, c / (||g|| + 1e-6))."""
    return g * min(1.0, c / (float(g.norm()) + 1e-6))


def test_the_closure_clips_to_the_norm_after_backward():
    x, obj, opt = _setup({"type": "adam", "max_grad_norm": 0.5})
    assert opt.max_grad_norm == 0.5
    g = obj.grad_f(x.detach()) + obj.grad_r(x.detach())
    assert float(g.norm()) > 0.5
    closure = _closure(obj, opt, opt.max_grad_norm)
    closure()
    assert float(x.grad.norm()) == pytest.approx(0.5, rel=1e-5)
    assert torch.allclose(x.grad, _clipped(g, 0.5), atol=1e-12)  # the direction is kept
    closure(clip=False)
    assert torch.allclose(x.grad, g, atol=1e-12)
    _closure(obj, opt, 1e6)()  # a norm above the gradient's leaves it alone
    assert torch.allclose(x.grad, g, atol=1e-12)
    _closure(obj, opt, 0.0)()  # 0: off (the default study)
    assert torch.allclose(x.grad, g, atol=1e-12)


def test_every_gradient_optimizer_steps_on_the_clipped_gradient():
    # signSGD would hide it (sign of a scaled gradient); SGD-based SAM and Sophia's momentum show it
    c, lr = 0.3, 0.1
    x, obj, opt = _setup({"type": "sam", "lr": lr, "rho": 0.2, "base": "sgd", "max_grad_norm": c})
    x0 = x.detach().clone()
    opt.step(_closure(obj, opt, opt.max_grad_norm))
    g = obj.grad_f(x0) + obj.grad_r(x0)
    xe = x0 + 0.2 * g / g.norm()
    gs = obj.grad_f(xe) + obj.grad_r(xe)
    assert torch.allclose(x.detach(), x0 - lr * _clipped(gs, c), atol=1e-12)  # the final gradient, clipped

    x, obj, opt = _setup({"type": "sam", "lr": lr, "rho": 0.2, "base": "sgd", "max_grad_norm": c,
                          "smooth_terms": "forget"})
    opt.step(_closure(obj, opt, opt.max_grad_norm))
    gf = obj.grad_f(x0)
    gs = obj.grad_f(x0 + 0.2 * gf / gf.norm()) + obj.grad_r(x0)
    assert torch.allclose(x.detach(), x0 - lr * _clipped(gs, c), atol=1e-12)  # the sum clipped, not each term

    n, sigma, seed = 3, 0.2, 1
    x, obj, opt = _setup({"type": "rs", "lr": lr, "sigma": sigma, "n_samples": n, "seed": seed, "max_grad_norm": c})
    opt.step(_closure(obj, opt, opt.max_grad_norm))
    zs = [next(normal_like([x0], step_seed(seed, 1, i)))[1] for i in range(n)]
    g_rs = sum(obj.grad_f(x0 + sigma * z) + obj.grad_r(x0 + sigma * z) for z in zs) / n
    assert torch.allclose(x.grad, _clipped(g_rs, c), atol=1e-12)  # the average clipped, not each sample

    x, obj, opt = _setup({"type": "sophia", "lr": lr, "hessian": "grad_sq", "hess_scale": 1.0, "max_grad_norm": c})
    opt.step(_closure(obj, opt, opt.max_grad_norm))
    assert torch.allclose(opt.state[x]["exp_avg"], 0.1 * _clipped(g, c), atol=1e-12)  # (1 - b1) g, b1 0.9


def test_clipping_is_a_first_order_setting():
    x = torch.nn.Parameter(torch.ones(2, dtype=F64))
    assert build_optimizer([x], {"type": "adam"}, 1).max_grad_norm == 0.0  # off unless asked
    hyb = build_optimizer([x], {"type": "hybrid", "fo": {"type": "adam", "max_grad_norm": 1.0}}, 4)
    assert hyb.max_grad_norm == 1.0  # the hybrid clips its first-order phase
    with pytest.raises(ValueError, match="no gradient"):
        build_optimizer([x], {"type": "adazo", "max_grad_norm": 1.0}, 1)
    with pytest.raises(ValueError, match="fo"):
        build_optimizer([x], {"type": "hybrid", "max_grad_norm": 1.0}, 4)
    with pytest.raises(ValueError, match="max_grad_norm"):
        build_optimizer([x], {"type": "adam", "max_grad_norm": -1.0}, 1)


# ---------------------------------------------------------------- AdaZO as R-AdaZO's code runs it ---------------------
def _paper_configs() -> dict[str, dict]:
    import yaml

    from unlearning.config import validate

    from conftest import ROOT

    return {p.name: validate(yaml.safe_load(p.read_text())) for p in sorted((ROOT / "configs").glob("paper-*.yaml"))}


def _entries(cfg: dict):
    """Every optimizer spec of a config, a hybrid's phases and the ablation's included."""
    entries = dict(cfg["optimizers"])
    entries.update((cfg.get("ablation") or {}).get("optimizers", {}))
    for name, spec in list(entries.items()):
        if spec["type"] == "hybrid":
            entries[f"{name}.fo"], entries[f"{name}.zo"] = spec["fo"], spec["zo"]
    return entries


def test_paper_config_adazo_moves_as_radazo_code():
    # R-AdaZO's radazo.py: m = b1 m + (1-b1) g; v = b2 v + (1-b2) m^2; x -= lr m / (sqrt(v) + eps), no
    # bias correction. The paper-config entry (sphere directions: g = d proj u, u = z / ||z||) on a quadratic.
    spec = dict(_paper_configs()["paper-muse-news.yaml"]["optimizers"]["adazo"], lr=1e-3, seed=7)
    assert spec["bias_correction"] is False
    A, b = _quad(5, 3)
    x = torch.nn.Parameter(torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=F64))

    def closure(backward=False, gnb=False):
        return (0.5 * x @ A @ x - b @ x).detach()

    opt = build_optimizer([x], spec, 10)
    (b1, b2), eps, lr, d = spec["betas"], spec["zeta"], spec["lr"], x.numel()
    m = v = torch.zeros(5, dtype=F64)
    want = x.detach().clone()
    for t in range(6):
        opt.step(closure)
        z = next(normal_like([x], step_seed(7, t, 0)))[1]
        g = d * opt.last_projections[0] * z / z.norm()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * m * m
        step = lr * m / (v.sqrt() + eps)
        if t == 0:  # R-AdaZO's first move: lr / sqrt(1 - b2) per weight (31.6 lr)
            assert torch.allclose(step.abs(), torch.full_like(step, lr / (1 - b2) ** 0.5), rtol=1e-4)
        want = want - step
        assert torch.allclose(x.detach(), want, atol=1e-12)


# ---------------------------------------------------------------- Sophia's refresh order ------------------------------
def _sophia_run(refresh: str, hessian: str, steps: int = 4, k: int = 2):
    A, b = _quad(4, 5)
    x = torch.nn.Parameter(torch.randn(4, generator=torch.Generator().manual_seed(2), dtype=F64))
    at_gnb: list[torch.Tensor] = []

    def closure(backward=True, gnb=False):
        if gnb:
            at_gnb.append(x.detach().clone())
        loss = 0.5 * x @ A @ x - b @ x
        x.grad = None
        loss.backward()
        return loss.detach()

    opt = build_optimizer([x], {"type": "sophia", "lr": 0.01, "k": k, "hessian": hessian, "hess_scale": 1.0,
                                "rho": 10.0,
                                "hessian_refresh": refresh}, steps)
    xs, hs = [x.detach().clone()], []
    for _ in range(steps):
        opt.step(closure)
        xs.append(x.detach().clone())
        hs.append(opt.state[x]["hessian"].clone())
    return xs, hs, at_gnb


@pytest.mark.parametrize("hessian", ["gnb", "grad_sq"])
def test_sophia_refresh_after_the_update_as_sophiag_loop(hessian):
    xs, hs, at_gnb = _sophia_run("after_update", hessian)
    # steps 0 and 1 (k = 2) run on h = 0: every coordinate moves exactly lr (sign descent)
    assert torch.equal(hs[0], torch.zeros(4, dtype=F64))
    for t in (0, 1):
        assert torch.allclose((xs[t + 1] - xs[t]).abs(), torch.full((4,), 0.01, dtype=F64), atol=1e-15)
    assert (hs[1] > 0).all() and torch.equal(hs[2], hs[1]) and not torch.equal(hs[3], hs[2])  # after steps 1, 3
    if hessian == "gnb":  # the GNB pass sees the updated weights
        assert len(at_gnb) == 2 and torch.equal(at_gnb[0], xs[2]) and torch.equal(at_gnb[1], xs[4])


@pytest.mark.parametrize("hessian", ["gnb", "grad_sq"])
def test_sophia_refresh_before_the_update_stays_the_default(hessian):
    xs, hs, at_gnb = _sophia_run("before_update", hessian)
    assert (hs[0] > 0).all() and torch.equal(hs[1], hs[0]) and not torch.equal(hs[2], hs[1])  # steps 0, 2
    assert (xs[1] - xs[0]).abs().min() < 0.01  # the first update already Hessian-scaled
    if hessian == "gnb":  # before the update, at the step's starting weights
        assert len(at_gnb) == 2 and torch.equal(at_gnb[0], xs[0]) and torch.equal(at_gnb[1], xs[2])
    from unlearning.optim import Sophia
    assert Sophia([torch.nn.Parameter(torch.ones(1))]).defaults["hessian_refresh"] == "before_update"


# ---------------------------------------------------------------- the configs ----------------------------------------
FIRST_ORDER = {"adam", "adamw", "sophia", "sam", "rs", "signsgd", "signadam", "nbit_adam", "adamw8bit"}


def test_paper_configs_run_the_optimizers_as_the_lab_does():
    for name, cfg in _paper_configs().items():
        for entry, spec in _entries(cfg).items():
            where = f"{name}: {entry}"
            if spec["type"] in FIRST_ORDER:
                assert spec["max_grad_norm"] == 1.0, where  # HF Trainer's and SophiaG's loop's
            if spec["type"] in ("sam", "rs"):
                assert spec["smooth_terms"] == "forget", where
            if spec["type"] == "sophia":
                assert spec["hessian_refresh"] == "after_update", where
            if spec["type"] == "adazo":
                assert spec["bias_correction"] is False, where


def test_default_study_keeps_todays_optimizers():
    import yaml

    from unlearning.config import validate

    from conftest import ROOT

    for path in (ROOT / "config.yaml", ROOT / "configs" / "smoke.yaml"):
        for entry, spec in _entries(validate(yaml.safe_load(path.read_text()))).items():
            where = f"{path.name}: {entry}"
            assert spec.get("max_grad_norm", 0.0) == 0.0, where
            assert spec.get("smooth_terms", "all") == "all", where
            assert spec.get("hessian_refresh", "before_update") == "before_update", where
            assert spec.get("bias_correction", True) is True, where
