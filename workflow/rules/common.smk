# Shared by the workflow's .smk files: the validated config, the study plan (src/unlearning/plan.py: job
# lists and paths, torch-free and tested in-process), wildcard constraints and thin wrappers for the rules'
# `wc` signatures. Rules run the installed console script `unlearning STAGE ...` (src/unlearning/cli.py).
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

# The library is an installed package (scripts/setup.sh: `pip install -e .`); the workflow imports only
# its torch-free modules.
try:
    import unlearning
    from unlearning import calibration as CAL
    from unlearning.config import ConfigError, attacks_for_reference, attacks_for_unlearned, validate
    from unlearning.launch import ranks_of, torchrun_launcher
    from unlearning.plan import EVAL_CODE as _EVAL_MODULES, FIGURE_CATEGORIES, StudyPlan, as_json
    from unlearning.prompts import mc_subject
    from unlearning.report import code_of as report_code  # imports nothing else
except ImportError as err:
    print(
        f"error: the unlearning package is not installed for {sys.executable} ({err}); "
        "run scripts/setup.sh (pip install -e .)",
        file=sys.stderr,
    )
    sys.exit(1)

# Validate before any job runs: one line naming the key, no traceback.
try:
    validate(config)
except ConfigError as err:
    print(f"config error: {err}", file=sys.stderr)
    sys.exit(1)

R = config["results"]  # the study's results folder (schema key `results`)
# The library's sources, listed as inputs so that editing a module replans the jobs that use it.
SRC = Path(workflow.basedir) / "src" / "unlearning"
# The checkout of the package that runs (the one imported here, installed editable); normally this one.
PACKAGE_ROOT = Path(unlearning.__file__).resolve().parents[2]
if not (PACKAGE_ROOT / "pyproject.toml").exists():  # installed as a copy, not editable
    PACKAGE_ROOT = Path(workflow.basedir)
CONDA_ENV = str(Path(workflow.basedir) / "envs" / "unlearning.yaml")
if Path(unlearning.__file__).resolve().parent != SRC.resolve():
    # E.g. a study folder (unlearning.studyfolder) or another checkout's environment: edits of SRC replan
    # jobs, but the jobs run the installed package.
    print(f"note: jobs run the unlearning package in {PACKAGE_ROOT}, not the sources in {SRC}", file=sys.stderr)

# Jobs find `unlearning` on PATH. Under --sdm conda it is the job's env's own: envs/unlearning.yaml
# holds the dependencies and envs/unlearning.post-deploy.sh installs this checkout's package
# (editable) from UNLEARNING_CHECKOUT. Otherwise it is the console script installed next to the
# interpreter running Snakemake (.venv/bin/, activated or not), as for the package imported above.
# (Both variables are set here, not required from the user: no `envvars:` directive.)
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    os.environ.update(UNLEARNING_CHECKOUT=str(PACKAGE_ROOT))
else:
    _BIN = str(Path(sys.executable).parent)
    _PATH = os.environ.get("PATH", "")
    if _PATH.split(os.pathsep)[0] != _BIN:
        os.environ.update(PATH=os.pathsep.join(p for p in (_BIN, _PATH) if p))
    if shutil.which("unlearning", path=_BIN) is None:
        print(f"error: no `unlearning` command in {_BIN}; run scripts/setup.sh (pip install -e .)", file=sys.stderr)
        sys.exit(1)


def chosen_scale(bench, method, optimizer, seed):
    """The calibration's multiplier for this entry and seed (a checkpoint: the DAG below it is planned
    once it ran; under `calibration.seeds: each` the seed's own)."""
    choice = checkpoints.calibrate.get(bench=bench, method=method, optimizer=optimizer).output[0]
    return CAL.tag(CAL.chosen(json.loads(Path(choice).read_text(encoding="utf-8")), seed))


def rung_status(bench, method, optimizer, scale, seed):
    """What an early-stopped run did (calibration.run_status: reached, overshot, not reached), read from
    its record, else None while the run is not made. The rung is then a plain input of `calibrate`, so
    every seed's rung runs at once, and because `unlearn` is a checkpoint, Snakemake evaluates
    `calibrate`'s input again when the rung finishes and the walk goes on; should an edit rerun a rung,
    its new record is read then. The record, not checkpoints.unlearn.get(): get() counts a run as made
    only once this invocation has seen its checkpoint finish, and Snakemake re-evaluates this input only
    after a checkpoint finishes, so replanning a finished study walked two rungs deep and planned
    calibrate again over a cut ladder (an entry that climbed to x10 chose among x1 and x3); get()'s
    exception, let through, kept an old choice when an edit made a rung stop reaching (Snakemake 9.27)."""
    record = Path(P.run_dir(bench, method, optimizer, scale, seed)) / "unlearning.json"
    if not record.exists():
        return None
    return CAL.run_status(json.loads(record.read_text(encoding="utf-8")), str(record))


def stop_args(wc, input):
    """The early-stopping arguments of a calibrated run under `calibration.early_stop` (else none): the
    settings (plan.StudyPlan.stop_params) and the retrain evaluations its checks compare with."""
    stop = P.stop_params(wc.bench, wc.method, wc.optimizer)
    if not stop:
        return ""
    return f"--stop {shlex.quote(stop)} --stop-reference {' '.join(map(shlex.quote, input.stop_reference))}"


P = StudyPlan(config, chosen=chosen_scale)
REF_OPT = P.ref_opt
REPORT = P.report
README_DIR = P.readme_dir
ABLATION = P.ablation

_WC = P.wildcard_constraints()


wildcard_constraints:
    bench=_WC["bench"],
    method=_WC["method"],
    optimizer=_WC["optimizer"],
    role=_WC["role"],
    scale=_WC["scale"],
    seed=_WC["seed"],


def src(*names):
    """Library modules as inputs, so that editing one replans the jobs that use it. Relative to the
    working directory when the library lies below it (a study folder can then be copied whole)."""
    out = []
    for n in names:
        path = os.path.relpath(SRC / n)
        out.append(path if not path.startswith("..") else str(SRC / n))
    return out


EVAL_CODE = src(*_EVAL_MODULES)


# Thin wrappers for the rules' `wc` (and `resources`) signatures.
def kind(wc):
    return P.kind(wc.bench)


def bench_cfg(wc):
    return config["benchmarks"][wc.bench]


def study_model(wc):
    return P.unlearned_model(wc.bench, wc.method, wc.optimizer, wc.seed)


def attacked_model(wc):
    """The model relearning and evaluation start from: an unlearned model, or a control (method none)."""
    return P.attacked_model(wc.bench, wc.method, wc.optimizer, wc.seed)


def target_model(wc):
    return P.model_dir(wc.bench, "target", wc.seed)


def parent(path):
    return str(Path(path).parent)


def relearned(path):
    """A relearned checkpoint folder as an output: temp() unless `attacks.relearn.keep_checkpoints`."""
    return directory(path) if P.keep_relearned() else temp(directory(path))


def unlearn_launcher(wildcards, resources):
    """How the unlearn rule starts its stage (unlearning.launch). An optimizer that cannot run sharded
    fails here, before the job."""
    from snakemake.exceptions import WorkflowError

    n = ranks_of(resources)
    if n > 1:
        from unlearning import distributed

        try:
            distributed.check_shardable(P.optimizer_spec(wildcards.optimizer), wildcards.optimizer)
        except ValueError as err:
            raise WorkflowError(f"unlearn with {n} ranks (profile set-resources unlearn gpu/ranks): {err}") from None
    return gpu_claim(resources) + torchrun_launcher(n)


def relearn_launcher(wildcards, resources):
    """How relearning starts its stage; AdamW fine-tuning shards whatever grade unlearned."""
    return gpu_claim(resources) + torchrun_launcher(ranks_of(resources))
