# Shared by the workflow's .smk files: the validated config, the registry's tables, wildcard constraints and
# the input functions. Rules run the installed console script `unlearning STAGE ...` (src/unlearning/cli.py).
import json
import os
import shutil
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

# The library is an installed package (scripts/setup.sh: `pip install -e .`); the workflow imports only
# its torch-free modules.
try:
    import unlearning
    from unlearning import calibration as CAL
    from unlearning import registry
    from unlearning.config import (
        ConfigError,
        attacks_for_reference,
        attacks_for_unlearned,
        methods_for,
        optimizers_for,
        validate,
    )
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

# Optimizer grade of each type, for the tables (src/unlearning/registry.py).
GRADE = {t: o.grade for t, o in registry.OPTIMIZERS.items()}
# Source modules each optimizer type and objective depends on. Snakemake tracks the code of rules, not
# of the library, so rules list these as inputs: editing optim/zeroth.py replans only the zeroth-order
# and hybrid branches (tests/test_reruns.py; tests/test_registry.py checks the registry's modules).
OPTIM_MODULES = {t: f"optim/{o.module}.py" for t, o in registry.OPTIMIZERS.items()}
OBJECTIVE_MODULES = {name: f"objectives/{o.module}.py" for name, o in registry.OBJECTIVES.items()}

# Relearned checkpoints: kept, or deleted once every evaluation of their model has read them
# (`attacks.relearn.keep_checkpoints`; see the schema for what that costs a partial rerun).
KEEP_RELEARNED = config["attacks"]["relearn"]["keep_checkpoints"]

REPORT = config.get("report", {})
REF_OPT = REPORT.get("reference_optimizer", "adam")
README_DIR = f"{R}/README"
# The per-benchmark figures (one job each; report/{name}_plot.py) and their report categories.
FIGURE_CATEGORIES = {
    "quantization": "2. Quantization",
    "relearning": "3. Relearning",
    "tradeoff": "6. Utility vs forgetting",
}
# `ablation:` names one benchmark and method and holds extra hybrid entries (FO:ZO ratio, switching
# interval N). They run there only: unlearning.config.validate adds the entries to
# config["optimizers"] (so the wildcard-generic rules find them) and optimizers_for leaves them out.
ABLATION = config.get("ablation") or {}
ABLATION_OPTS = dict(ABLATION.get("optimizers", {}))


# {bench} is one of the study's benchmarks, so results/tables/{bench}.csv never claims the study-wide
# tables beside it (provenance.csv, grade_distance.csv).
wildcard_constraints:
    bench="|".join(sorted(config["benchmarks"])),
    method="(?!none/)[a-z][a-z0-9_]*",
    optimizer="[a-z][a-z0-9_]*",
    role="target|retrain",
    scale=r"[0-9][0-9.e+-]*",
    seed=r"\d+",


# ------------------------------------------------------------------------------------ inputs, params


def src(*names):
    """Library modules as inputs, so that editing one replans the jobs that use it. Relative to the
    working directory when the library lies below it (a study folder can then be copied whole)."""
    out = []
    for n in names:
        path = os.path.relpath(SRC / n)
        out.append(path if not path.startswith("..") else str(SRC / n))
    return out


EVAL_CODE = src(
    "eval/__init__.py",
    "eval/common.py",
    "eval/muse.py",
    "eval/mc.py",
    "eval/tofu.py",
    "tofu_metrics.py",
    "prompts.py",
    "attacks/quantization.py",
    "attacks/relearn.py",
    "models.py",
    "stages/common.py",
    "stages/evaluate.py",
    "provenance.py",
)


def bench_cfg(wc):
    return config["benchmarks"][wc.bench]


def kind(wc):
    return bench_cfg(wc)["kind"]


def optimizer_code(wc):
    spec = config["optimizers"][wc.optimizer]
    mods = {OPTIM_MODULES[t] for t in registry.types_used(spec)}
    return src("optim/__init__.py", "optim/build.py", "optim/_common.py", *sorted(mods))


def objective_code(wc):
    obj = config["methods"][wc.method]["objective"]
    return src("objectives/__init__.py", "objectives/base.py", OBJECTIVE_MODULES[obj])


def registry_entries(wc):
    """The registry entries an optimizer entry uses (a param of its jobs: editing one, e.g. whether a
    type is seeded, reruns only the branches that use it)."""
    spec = config["optimizers"][wc.optimizer]
    return as_json({t: vars(registry.optimizer(t)) for t in registry.types_used(spec)})


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def eval_params(wc):
    return as_json(config["evaluation"])


def relearn_params():
    """What the relearning stage reads (not keep_checkpoints or report: they change no model) and
    the chunking it shares with unlearning."""
    skip = ("keep_checkpoints", "report")
    params = {k: v for k, v in config["attacks"]["relearn"].items() if k not in skip}
    return as_json({**params, "chunking": config["unlearning"]["chunking"]})


def relearn_report_arg():
    """The findings' `--relearn-report` (config `attacks.relearn.report`), or nothing (the longest)."""
    judged = config["attacks"]["relearn"].get("report")
    return f"--relearn-report {judged}" if judged is not None else ""


def relearned(path):
    """A relearned checkpoint folder as an output: temp() unless `attacks.relearn.keep_checkpoints`."""
    return directory(path) if KEEP_RELEARNED else temp(directory(path))


def parent(path):
    return str(Path(path).parent)


def auc_retrain_arg(bench):
    auc = config["evaluation"]["auc_retrain"]
    return f"--auc-retrain {auc[bench]}" if bench in auc else ""


def model_dir(bench, role, seed):
    """Folder of the ``role`` model (target/retrain) that the unlearning runs of ``seed`` start from
    or are compared with: one per seed for the roles of `training.per_seed`, else one for all."""
    return f"{R}/models/{bench}/{role}/seed{CAL.model_seed(config, role, seed)}"


def training_params(wc):
    """What training a model reads: `training` at the model's seed (`per_seed` only picks the models)."""
    training = {k: v for k, v in config["training"].items() if k != "per_seed"}
    return as_json({**training, "seed": int(wc.seed)})


def model_source(bench, role):
    """Hub id or folder the target/retrain model is copied from; None when trained here."""
    value = config["benchmarks"][bench].get(role)
    return value if isinstance(value, str) else None


def grade_of(optimizer):
    return GRADE[config["optimizers"][optimizer]["type"]]


# ------------------------------------------------------------------------------------ the study's runs


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


def reference_roles(bench):
    """Reference models of a benchmark: the target, and the retrain model unless `retrain: false`."""
    return ["target"] + ([] if config["benchmarks"][bench].get("retrain") is False else ["retrain"])


def reference_evals(bench):
    """The reference models' evaluations: every target and retrain model the study's runs use."""
    return [
        f"{R}/eval/{bench}/none/{role}/seed{ms}/{a}.json"
        for role in reference_roles(bench)
        for ms in CAL.model_seeds(config, role, config["seeds"])
        for a in attacks_for_reference(config)
    ]


# ------------------------------------------------------------------------------------ calibration


def chosen_scale(bench, method, optimizer, seed):
    """The learning-rate multiplier the study runs for this entry and seed: the calibration's choice (a
    checkpoint: the DAG below it is planned once it ran; under `calibration.seeds: each` the seed's
    own), or 1 when calibration is off."""
    if not CAL.enabled(config):
        return CAL.tag(1)
    choice = checkpoints.calibrate.get(bench=bench, method=method, optimizer=optimizer).output[0]
    return CAL.tag(CAL.chosen(json.loads(Path(choice).read_text(encoding="utf-8")), seed))


def unlearned_model(bench, method, optimizer, seed):
    """The study's unlearned model of one run: the unlearning at the chosen multiplier. With
    calibration, the grid point of a calibration seed at the chosen multiplier is that seed's run."""
    return f"{R}/unlearned/{bench}/{method}/{optimizer}/x{chosen_scale(bench, method, optimizer, seed)}/seed{seed}"


def study_model(wc):
    return unlearned_model(wc.bench, wc.method, wc.optimizer, wc.seed)


def calibration_combos():
    """(bench, method, optimizer) of every calibrated entry: the study's and the ablation's."""
    combos = [
        (b, m, o) for b in config["benchmarks"] for m in methods_for(config, b) for o in optimizers_for(config, b)
    ]
    if ABLATION:
        combos += [(ABLATION["benchmark"], ABLATION["method"], o) for o in ABLATION_OPTS]
    return combos


def entry_seeds(bench, method, optimizer):
    """The seeds the study runs an entry at (the ablation's seeds for its entries)."""
    return sorted({s for b, m, o, s in (*runs(), *ablation_runs()) if (b, m, o) == (bench, method, optimizer)})


def calibration_seeds(wc):
    """An entry's calibration seeds: `calibration.seeds`, or under `each` the seeds its study runs use."""
    return CAL.seeds(config, entry_seeds(wc.bench, wc.method, wc.optimizer))


def calibration_points(wc):
    """SCALE -> [unattacked criterion evaluation per calibration seed] of one entry's grid."""
    return {
        CAL.tag(x): [
            f"{R}/calibration/{wc.bench}/{wc.method}/{wc.optimizer}/x{CAL.tag(x)}/seed{s}/none.json"
            for s in calibration_seeds(wc)
        ]
        for x in CAL.grid(config, wc.optimizer)
    }


def calibration_reference(wc, role):
    """The ``role`` model's unattacked evaluations at the calibration seeds (the criterion's levels)."""
    if role not in reference_roles(wc.bench):
        return []
    return [
        f"{R}/eval/{wc.bench}/none/{role}/seed{ms}/none.json"
        for ms in CAL.model_seeds(config, role, calibration_seeds(wc))
    ]


def calibration_choices(bench=None):
    return [f"{R}/calibration/{b}/{m}/{o}/choice.json" for b, m, o in calibration_combos() if bench in (None, b)]


def calibration_table():
    """The calibration table as an input of the reports that mark its choices (none without calibration)."""
    return [f"{R}/tables/calibration.csv"] if CAL.enabled(config) else []


def calibration_outputs():
    if not CAL.enabled(config):
        return []
    return [f"{R}/tables/calibration.csv", *(f"{R}/figures/{b}/calibration.png" for b in config["benchmarks"])]


def all_outputs():
    return [
        *(f"{R}/tables/{b}.csv" for b in config["benchmarks"]),
        *calibration_outputs(),
        f"{R}/summary.md",
        f"{R}/tables/grade_distance.csv",  # workflow/rules/distance.smk
        *report_outputs(),
    ]


# ------------------------------------------------------------------------------------ report


def distance_runs(models=None):
    """Every unlearning run with its grade, model folder and target folder (the grade-distance stage's
    --runs). ``models``: the runs' model folders in runs() order (the rule's input; read from the
    calibration's choices when not given)."""
    models = models or [unlearned_model(b, m, o, s) for b, m, o, s in runs()]
    return [
        {
            "benchmark": b,
            "method": m,
            "optimizer": o,
            "grade": GRADE[config["optimizers"][o]["type"]],
            "seed": int(s),
            "path": str(path),
            "target": model_dir(b, "target", s),
        }
        for (b, m, o, s), path in zip(runs(), models)
    ]


def ablation_runs():
    """(bench, method, optimizer, seed) of every ablation-only unlearning run."""
    if not ABLATION:
        return
    for opt in ABLATION_OPTS:
        for seed in ABLATION.get("seeds") or config["seeds"]:
            yield ABLATION["benchmark"], ABLATION["method"], opt, seed


def ablation_evals():
    """Evaluations the ablation table reads: its own runs, the study's hybrid runs of the same
    benchmark and method (the baseline entry), and the reference models (for PrivLeak)."""
    b, m = ABLATION["benchmark"], ABLATION["method"]
    hybrids = [
        (b, m, o, s) for bb, mm, o, s in runs() if (bb, mm) == (b, m) and config["optimizers"][o]["type"] == "hybrid"
    ]
    return [
        *reference_evals(b),
        *(
            f"{R}/eval/{rb}/{rm}/{ro}/seed{rs}/{a}.json"
            for rb, rm, ro, rs in [*hybrids, *ablation_runs()]
            for a in attacks_for_unlearned(config)
        ),
    ]


def hybrid_entries():
    return {o: s for o, s in config["optimizers"].items() if s["type"] == "hybrid"}


def lmc_jobs(bench):
    """(method, seed) of the LMC paths of ``bench``: where the reference optimizer ran with others."""
    opts = optimizers_for(config, bench)
    if REF_OPT not in opts or len(opts) < 2:
        return []
    return [(m, s) for m in methods_for(config, bench) for s in config["seeds"]]


def lmc_optimizers(wc):
    """The optimizers on the LMC paths of one benchmark, method and seed."""
    return [o for b, m, o, s in runs() if (b, m, str(s)) == (wc.bench, wc.method, wc.seed)]


def lmc_models(wc):
    return [unlearned_model(wc.bench, wc.method, o, wc.seed) for o in lmc_optimizers(wc)]


def report_figures(bench):
    return [f"{R}/figures/{bench}/{n}.png" for n in ("quantization", "relearning", "tradeoff", "lmc")]


def readme_figures():
    """(source PNG, name in results/README/) of the figures shown in the README."""
    figs = [(p, f"{b}_{Path(p).name}") for b in config["benchmarks"] for p in report_figures(b)]
    if CAL.enabled(config):
        figs += [(p, f"{b}_{Path(p).name}") for b in config["benchmarks"] for p in [f"{R}/figures/{b}/calibration.png"]]
    if ABLATION:
        figs.append((f"{R}/ablation/ablation.png", "ablation.png"))
    return figs


def tofu_tables(bench):
    """The paper's TOFU table (CSV + markdown) of a TOFU-kind benchmark; none for other kinds."""
    if config["benchmarks"][bench]["kind"] != "tofu":
        return []
    return [f"{R}/tables/tofu/{bench}.csv", f"{R}/tables/tofu/{bench}.md"]


def report_outputs():
    """Everything workflow/rules/report.smk produces: figures, main tables, LMC, ablation, findings."""
    out = []
    for b in config["benchmarks"]:
        out += [
            f"{R}/tables/main/{b}.csv",
            f"{R}/tables/main/{b}.md",
            *report_figures(b),
            f"{R}/lmc/{b}/barriers.csv",
            *tofu_tables(b),
        ]
    if ABLATION:
        out += [f"{R}/ablation/table.csv", f"{R}/ablation/ablation.png"]
    return out + [f"{README_DIR}/findings.md"]


# ------------------------------------------------------------------------------------ sharded unlearning


def ranks_of(resources):
    """Processes per unlearning or relearning job: the profile's `ranks` resource, else its GPUs per job (`gpu`)."""
    return int(resources.get("ranks", 0) or resources.get("gpu", 0) or 1)


def torchrun_launcher(n):
    """`unlearning` for one process; for more, torchrun starting one rank per GPU of the job (FSDP2,
    src/unlearning/distributed.py). `--`: the stage's own options (--run ...) must not be parsed as
    torchrun's (--run-path)."""
    return "unlearning" if n <= 1 else f"torchrun --standalone --nproc-per-node {n} --no-python -- unlearning"


def unlearn_launcher(wildcards, resources):
    """How the unlearn rule starts its stage (torchrun_launcher). An optimizer that cannot run sharded
    fails here, before the job."""
    from snakemake.exceptions import WorkflowError

    from unlearning import distributed

    n = ranks_of(resources)
    if n > 1:
        try:
            distributed.check_shardable(config["optimizers"][wildcards.optimizer], wildcards.optimizer)
        except ValueError as err:
            raise WorkflowError(f"unlearn with {n} ranks (profile set-resources unlearn gpu/ranks): {err}") from None
    return gpu_claim(resources) + torchrun_launcher(n)


def relearn_launcher(wildcards, resources):
    """How relearning starts its stage (torchrun_launcher); AdamW fine-tuning shards whatever grade unlearned."""
    return gpu_claim(resources) + torchrun_launcher(ranks_of(resources))


def model_role_constraint(copied: bool) -> str:
    """The `role` wildcard pattern of copy_model (copied=True) or train_model: the roles the config
    copies from a hub id / folder, or trains, each tied to its benchmark by a lookbehind on the path
    (`.../models/<bench>/<role>/seed<N>`), so that exactly one of the two rules makes each model."""
    import re

    pairs = [
        (bench, role)
        for bench in sorted(config["benchmarks"])
        for role in ("target", "retrain")
        if config["benchmarks"][bench].get(role) is not False  # no retrain model (WMDP at paper scale)
        and (model_source(bench, role) is not None) == copied
    ]
    # (?!) matches nothing: no model of that kind in this study.
    return "|".join(f"(?<=/{re.escape(b)}/){role}" for b, role in pairs) or "(?!)"
