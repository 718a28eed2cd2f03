"""Data-parallel, sharded unlearning (FSDP2 under torchrun, gloo on the CPU) computes what one process
computes with the whole batch.

Two ranks run STEPS NPO unlearning steps of every grade on a tiny Llama, each rank taking half of
every batch and holding half of every weight, gradient and optimizer state; the single-process run
takes the whole batch. Every example has the same length (tests/fsdp_worker.py), so the halves'
losses average to the whole batch's. Tolerance: losses within 1e-6 relative (2e-6 absolute), final weights within
1e-5 absolute (measured: at most 2e-6, float summation order). Zeroth-order steps divide a loss
difference by 2 mu, so the halves' rounding (~1e-7 of the loss) grows by 1/mu: the ZO entries
perturb each weight by ~1e-2 (mu 1e-2; the unit sphere's mu 1 over sqrt(d) ~ 200: 5e-3), where it stays
below 1e-5 (at the unit sphere's 1e-3 / sqrt(d) per weight the weights differ by 5e-3 after 3 steps:
the perturbation is lost in rounding, as in bf16, tests/test_zo_bf16.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unlearning import distributed

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "fsdp_worker.py"
# Adam's eps 1e-6 (torch's 1e-8): Adam's step lr g / (|g| + eps) turns a gradient error into an update
# error lr / eps times larger where g ~ 0, and the halves' summation order changes gradients by ~1e-10
# (measured with eps 1e-8: one weight of 21,000 off by 1.2e-5 after 3 steps).
SPECS = {
    "adam": {"type": "adam", "lr": 1e-3, "eps": 1e-6},
    "signadam": {"type": "signadam", "lr": 1e-3},
    # Sophia's GNB refresh samples labels from the model's softmax: at weights 1e-8 apart a sampled
    # label can differ and move a coordinate's curvature (measured with a refresh every step: one of
    # 31,520 weights 1.3e-4 off), so the GNB entries refresh at the first step only (k 3), where the
    # weights are the same; grad_sq refreshes every step
    "sophia": {"type": "sophia", "lr": 1e-3, "k": 3},
    "sophia_grad_sq": {"type": "sophia", "lr": 1e-3, "k": 1, "hessian": "grad_sq"},
    "adazo": {"type": "adazo", "lr": 1e-3, "seed": 3, "mu": 1e-2},
    "zo_sgd_sphere": {"type": "zo_sgd", "lr": 1e-3, "seed": 3, "direction": "sphere", "mu": 1.0},
    "signsgd": {"type": "signsgd", "lr": 1e-3},
    "nbit_adam": {"type": "nbit_adam", "lr": 1e-3, "bits": 4},
    "hybrid": {"type": "hybrid", "n_fo": 1, "n_zo": 1, "fo": {"type": "adam", "lr": 1e-3, "eps": 1e-6},
               "zo": {"type": "adazo", "lr": 1e-3, "seed": 1, "mu": 1e-2}},
    "sam": {"type": "sam", "lr": 1e-3, "eps": 1e-6, "rho": 0.05},
    "rs": {"type": "rs", "lr": 1e-3, "eps": 1e-6, "sigma": 0.01, "n_samples": 2, "seed": 1},
    # 8-bit states for the matrices (1024 weights and more), 32-bit for the norms' 32 (bitsandbytes'
    # blocks of 256 would split them differently at 16 per shard; at 7B every shard holds whole blocks)
    "adamw8bit": {"type": "adamw8bit", "lr": 1e-3, "eps": 1e-6, "min_8bit_size": 1024},
    "zo_rademacher": {"type": "zo_sgd", "lr": 1e-3, "seed": 3, "direction": "rademacher", "mu": 1e-2},
    "zo_sphere_sqrt_d": {"type": "zo_sgd", "lr": 1e-3, "seed": 3, "direction": "sphere", "mu": 1e-2,
                         "sphere_radius": "mu_sqrt_d"},
    "adam_clipped": {"type": "adam", "lr": 1e-3, "eps": 1e-6, "max_grad_norm": 0.5},
    "adam_checkpointing": {"type": "adam", "lr": 1e-3, "eps": 1e-6, "_checkpointing": True},
    "adam_batch3": {"type": "adam", "lr": 1e-3, "eps": 1e-6, "_batch": 3},  # shares of 2 and 1 examples
    # lr 1e-4: Sophia's clipped ratio m / (rho h) is as touchy as Adam's where h ~ 0 (one weight 1.2e-5
    # off at lr 1e-3 on GradDiff)
    "sophia_graddiff": {"type": "sophia", "lr": 1e-4, "k": 3, "_objective": "grad_diff"},
    # the lab's SAM and RS: only the forget term perturbed, the retain term's gradient at the weights
    "sam_forget": {"type": "sam", "lr": 1e-3, "eps": 1e-6, "rho": 0.05, "smooth_terms": "forget"},
    "rs_forget": {"type": "rs", "lr": 1e-3, "eps": 1e-6, "sigma": 0.01, "n_samples": 2, "seed": 1,
                  "smooth_terms": "forget"},
}


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))


pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun not found next to the test interpreter")
    one, two = tmp / "one.pt", tmp / "two.pt"
    # the single process and the two ranks run side by side (three processes, each one thread)
    single = subprocess.Popen([sys.executable, str(WORKER), str(one), json.dumps(SPECS)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(WORKER), str(two),
                           json.dumps(SPECS)], env=_env(), capture_output=True, text=True, timeout=600)
    _, err = single.communicate(timeout=600)
    assert single.returncode == 0, err[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(one), torch.load(two)


@pytest.mark.parametrize("name", list(SPECS))
def test_data_parallel_halves_match_one_process(runs, name):
    one, two = runs[0][name], runs[1][name]
    l1 = [t["loss"] for t in one["trace"]]
    l2 = [t["loss"] for t in two["trace"]]
    assert len(l1) == len(l2) == 3
    assert l1 == pytest.approx(l2, rel=1e-6, abs=2e-6)  # GradDiff's loss is a difference near 0
    # Sophia's and AdaZO's statistics cover every shard. Sophia's is a share of coordinates: one that
    # sits on the clip's edge may fall either side (measured: 1 of 31,520 at one step)
    for key, tol in (("unclipped", {"abs": 1e-4}), ("move_over_lr", {"rel": 1e-4})):
        s1, s2 = [t.get(key, -1.0) for t in one["trace"]], [t.get(key, -1.0) for t in two["trace"]]
        assert s1 == pytest.approx(s2, **tol), key
    assert sorted(one["state"]) == sorted(two["state"])
    if name == "adamw8bit":
        # 8-bit states: a gradient that differs in its 7th digit (the halves' summation order) can
        # land a state on the next quantization level. Measured: 4 of 21,000 weights beyond 1e-7,
        # the largest 1.2e-5.
        diffs = torch.cat([(two["state"][k] - w).abs().view(-1) for k, w in one["state"].items()])
        assert (diffs > 1e-5).float().mean() < 1e-3 and diffs.max() < 1e-4, diffs.max()
    else:
        for key, w in one["state"].items():
            assert two["state"][key].shape == w.shape
            torch.testing.assert_close(two["state"][key], w, atol=1e-5, rtol=0)
    # not a vacuous match: the loss moved, and each optimizer ends elsewhere than Adam
    assert l1[-1] != l1[0]
    adam = runs[0]["adam"]["state"]
    if name == "adam_checkpointing":  # activation checkpointing changes memory and time, not results
        assert all(torch.equal(w, adam[k]) for k, w in one["state"].items())
    elif name != "adam":
        assert any(not torch.equal(w, adam[k]) for k, w in one["state"].items())


def test_every_paper_optimizer_shards(monkeypatch):
    """No grade is refused sharded any more; the refusal stays for a type that may need it."""
    import yaml

    for cfg in sorted((ROOT / "configs").glob("paper-*.yaml")):
        for name, spec in yaml.safe_load(cfg.read_text()).get("optimizers", {}).items():
            distributed.check_shardable(spec, name)
    monkeypatch.setitem(distributed.UNSHARDABLE, "adamw8bit", "a reason")
    with pytest.raises(ValueError, match=r"optimizers\.h\.fo: type 'adamw8bit' cannot run sharded: a reason"):
        distributed.check_shardable({"type": "hybrid", "fo": {"type": "adamw8bit"}}, "h")


def test_data_share_blocks_cover_the_batch_once():
    for b in (1, 3, 4, 8):
        for world in (1, 2, 3, 8):
            shares = [distributed.DataShare(r, world).split(list(range(b))) for r in range(world)]
            got = [x for part, w in shares if w for x in part]
            assert got == list(range(b))
            assert sum(w for _, w in shares) == pytest.approx(world)  # the weights average to 1
            assert all(part == [0] for part, w in shares if not w)  # an idle rank runs one example at 0


def test_snakemake_rule_runs_two_ranks_when_the_profile_asks(smoke_copy):
    """`--set-resources unlearn:ranks=2`: the unlearn rule starts torchrun, and the sharded stage writes
    the model the single-process stage wrote (NPO with Adam and with AdaZO). The smoke study's runs stop
    early (calibration.early_stop), which scores the whole model on one process and so is refused on
    several ranks: a copy without calibration runs the two x1 jobs in one process, then on two ranks."""
    import yaml
    from safetensors.torch import load_file

    from conftest import snakemake

    cfg_path = smoke_copy / "configs" / "smoke.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["calibration"] = False
    cfg_path.write_text(yaml.safe_dump(cfg))
    targets = ["results/unlearned/wmdp/npo/adam/x1/seed0", "results/unlearned/wmdp/npo/zo/x1/seed0"]
    snakemake(smoke_copy, "--cores", "2", "--configfile", "configs/smoke.yaml", "--", *targets, configfile=None)
    one = {}
    for t in targets:  # one process each (the fork server's worker)
        log = (smoke_copy / t.replace("results/unlearned", "results/logs/unlearn")).with_suffix(".log")
        assert "forkserver: worker" in log.read_text() and "torchrun" not in log.read_text()
        one[t] = ({k: v.clone() for k, v in load_file(str(smoke_copy / t / "model.safetensors")).items()},
                  json.loads((smoke_copy / t / "unlearning.json").read_text())["trace"])
    two = snakemake(smoke_copy, "--cores", "2", "-p", "--configfile", "configs/smoke.yaml", "--forcerun", "unlearn",
                    "--set-resources", "unlearn:ranks=2", "--", *targets, configfile=None)
    out = two.stdout + two.stderr
    assert out.count("torchrun --standalone --nproc-per-node 2 --no-python -- unlearning") == 2, out[-3000:]
    for t in targets:
        a, la = one[t]
        b = load_file(str(smoke_copy / t / "model.safetensors"))
        assert sorted(a) == sorted(b)
        for k in a:
            torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
        lb = json.loads((smoke_copy / t / "unlearning.json").read_text())["trace"]
        assert [s["loss"] for s in la] == pytest.approx([s["loss"] for s in lb], rel=1e-6)


@pytest.mark.parametrize("warmup", [0.0, 0.5], ids=["checkpoints_of_one_run", "a_run_per_step_count"])
def test_two_ranks_relearn_what_one_process_relearns(smoke_run, tmp_path, warmup):
    """The relearning stage under torchrun with 2 ranks (FSDP2, AdamW on shards) writes the models one
    process writes, both when one run's checkpoints serve every step count and when each count is a
    run of its own (weights within 1e-6; measured: identical)."""
    from safetensors.torch import load_file

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    scale = json.loads((smoke_run / "results/calibration/wmdp/npo/adam/choice.json").read_text())["scale"]
    model = smoke_run / "results" / "unlearned" / "wmdp" / "npo" / "adam" / f"x{scale:g}" / "seed0"  # the study's run
    params = {"steps": [1, 3], "lr": 1e-3, "batch_size": 2, "fraction": 1.0, "warmup": warmup,
              "schedule": "constant", "chunking": "truncate"}
    stage = [str(Path(sys.executable).parent / "unlearning"), "--threads", "1", "relearn", "--model", str(model),
             "--data", str(smoke_run / "results" / "data" / "wmdp"), "--kind", "wmdp", "--params",
             json.dumps(params), "--seed", "0", "--max-len", "256", "--out"]
    from conftest import session_forkserver

    env = {k: v for k, v in _env().items() if k != "UNLEARNING_FORKSERVER"}
    # the one-process reference through the test process's fork server (no torch import of its own)
    one = subprocess.run([*stage, str(tmp_path / "one")], env={**env, "UNLEARNING_FORKSERVER": session_forkserver()},
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "--no-python", "--", *stage,
                          str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "relearning sharded over 2 ranks" in two.stderr and "sharded" not in one.stderr
    start = load_file(str(model / "model.safetensors"))
    for steps in (1, 3):
        a = load_file(str(tmp_path / "one" / f"relearn{steps}" / "model.safetensors"))
        b = load_file(str(tmp_path / "two" / f"relearn{steps}" / "model.safetensors"))
        assert sorted(a) == sorted(b) == sorted(start)
        for k in a:
            torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
        assert any(not torch.equal(a[k], start[k]) for k in a)  # relearning moved the weights


def test_host_memory_of_two_ranks_grows_like_one_model():
    """Rank 0 reads the weights once and broadcasts them into the shards (distributed.load_sharded):
    rank 1 holds its shards of the model and the NPO reference (one model's worth on the CPU, on the
    GPUs of a GPU node) and no copy. Measured at 33.7M weights (benchmarks/investigations/host_memory.py): rank 1
    1.24 models, the host's own copies 1.31 models; before, each rank 2.56 (3.11 copies on 2 ranks)."""
    from benchmarks.investigations.host_memory import measure

    got = measure(ranks=2, hidden=512, layers=4, ways=("new",))["new"]  # 21M weights
    rank0, rank1 = got["per_rank_increment_models"]
    assert rank1 < 1.8, got  # its shards (1 model) and one whole tensor at a time, not a model + a copy
    assert got["host_copies"] < 2.2, got  # one model on the host (rank 0's), not 2 per rank
