import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from unlearning.config import (  # noqa: E402  (torch-free)
    ConfigError,
    attacks_for_reference,
    attacks_for_unlearned,
    methods_for,
    optimizers_for,
    validate,
)

# Validate before any job runs: one line naming the key, no traceback.
try:
    validate(config)
except ConfigError as err:
    print(f"config error: {err}", file=sys.stderr)
    sys.exit(1)

R = "results"
SRC = Path(workflow.basedir) / "src" / "unlearning"
# Stages run with the interpreter running Snakemake, or the env's python under --sdm conda
# (envs/unlearning.yaml); PYTHONPATH makes the library importable without an installed package.
from snakemake.settings.types import DeploymentMethod

_PYTHON = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable
PY = f"env PYTHONPATH={SRC.parent} {_PYTHON} -m unlearning"
CONDA_ENV = str(Path(workflow.basedir) / "envs" / "unlearning.yaml")
GRADE = {
    "sophia": "second", "adam": "first", "adamw": "first", "sam": "first", "rs": "first",
    "signsgd": "compressed", "signadam": "compressed", "nbit_adam": "compressed",
    "adamw8bit": "compressed", "zo_sgd": "zeroth", "adazo": "zeroth", "hybrid": "hybrid",
}
# Source modules each optimizer type and objective depends on. Snakemake tracks rule bodies, not the
# library, so rules list these as inputs: editing optim/zeroth.py replans only the zeroth-order and
# hybrid branches (tests/test_reruns.py checks this table against the registry).
OPTIM_MODULES = {
    "sophia": ["second.py"], "adam": ["first.py"], "adamw": ["first.py"], "sam": ["sam.py"],
    "rs": ["smoothing.py"], "signsgd": ["compressed.py"], "signadam": ["compressed.py"],
    "nbit_adam": ["compressed.py"], "adamw8bit": ["compressed.py"], "zo_sgd": ["zeroth.py"],
    "adazo": ["zeroth.py"], "hybrid": ["hybrid.py"],
}
OBJECTIVE_MODULES = {
    "grad_ascent": "grad_ascent.py", "grad_diff": "grad_diff.py", "npo": "npo.py",
    "simnpo": "simnpo.py", "rmu": "rmu.py",
}


wildcard_constraints:
    bench="[a-z][a-z0-9_]*",
    method="(?!none/)[a-z][a-z0-9_]*",
    optimizer="[a-z][a-z0-9_]*",
    role="target|retrain",
    seed=r"\d+",


def src(*names):
    """Library modules as inputs, so that editing one replans the jobs that use it. Relative to the
    working directory when the library lies below it (a study folder can then be copied whole)."""
    out = []
    for n in names:
        path = os.path.relpath(SRC / n)
        out.append(path if not path.startswith("..") else str(SRC / n))
    return out


def bench_cfg(wc):
    return config["benchmarks"][wc.bench]


def kind(wc):
    return bench_cfg(wc)["kind"]


def optimizer_types(spec):
    """Every optimizer type an entry uses (a hybrid's phases included)."""
    types = [spec["type"]]
    if spec["type"] == "hybrid":
        types += [spec.get("fo", {}).get("type", "adam"), spec.get("zo", {}).get("type", "adazo")]
    return types


def optimizer_code(wc):
    spec = config["optimizers"][wc.optimizer]
    mods = {m for t in optimizer_types(spec) for m in OPTIM_MODULES[t]}
    return src("optim/__init__.py", "optim/_common.py", *(f"optim/{m}" for m in sorted(mods)))


def objective_code(wc):
    obj = config["methods"][wc.method]["objective"]
    return src("objectives/__init__.py", "objectives/base.py", f"objectives/{OBJECTIVE_MODULES[obj]}")


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def runs():
    """(bench, method, optimizer, seed) of every unlearning run."""
    for bench in config["benchmarks"]:
        for method in methods_for(config, bench):
            for opt in optimizers_for(config, bench):
                for seed in config["seeds"]:
                    yield bench, method, opt, seed


def unlearned_evals(bench):
    return [
        f"{R}/eval/{b}/{m}/{o}/seed{s}/{a}.json"
        for b, m, o, s in runs()
        if b == bench
        for a in attacks_for_unlearned(config)
    ]


def model_source(bench, role):
    """Hub id or folder the target/retrain model is copied from; None when trained here."""
    value = config["benchmarks"][bench].get(role)
    return value if isinstance(value, str) else None


def reference_roles(bench):
    """Reference models of a benchmark: the target, and the retrain model unless `retrain: false`."""
    return ["target"] + ([] if config["benchmarks"][bench].get("retrain") is False else ["retrain"])


def reference_evals(bench):
    roles = reference_roles(bench)
    seed = config["training"]["seed"]
    return [
        f"{R}/eval/{bench}/none/{role}/seed{seed}/{a}.json"
        for role in roles
        for a in attacks_for_reference(config)
    ]


def all_outputs():
    return [
        *(f"{R}/tables/{b}.csv" for b in config["benchmarks"]),
        f"{R}/summary.md",
        f"{R}/tables/grade_distance.csv",  # workflow/rules/distance.smk
        *report_outputs(),  # workflow/rules/report.smk: figures, main tables, LMC, ablation, findings
    ]


# Local runs: one fork server imports torch/transformers once and forks a worker per job
# (src/unlearning/forkserver.py); a job that cannot reach it runs by itself. Set
# UNLEARNING_FORKSERVER=off to start every job as its own process.
_FORKSERVER = {}


onstart:
    from unlearning import forkserver

    wanted = not forkserver.turned_off()
    # Only where jobs would run this very interpreter on this machine: not on a cluster, and not
    # under --sdm conda/apptainer (a worker forked here would run outside the job's environment).
    plain = not workflow.deployment_settings.deployment_method
    if wanted and plain and workflow.is_main_process and workflow.local_exec:
        import secrets

        name = f"unlearning-{os.getpid()}-{secrets.token_hex(4)}"
        _FORKSERVER["proc"] = forkserver.start(name, f"{R}/logs/forkserver.log", str(SRC.parent))
        os.environ[forkserver.ENV] = name
    else:
        os.environ.pop(forkserver.ENV, None)


def _stop_forkserver():
    proc = _FORKSERVER.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


onsuccess:
    _stop_forkserver()


onerror:
    _stop_forkserver()
