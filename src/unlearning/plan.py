"""The study plan: which jobs a validated config asks for, and the files they read and write.

Torch-free and free of Snakemake: the rule files (workflow/rules/*.smk) call a ``StudyPlan`` built in
common.smk, and tests call the same functions in-process (tests/test_plan.py) instead of starting
``snakemake -n``. Paths lie under the study's results folder (config key ``results``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from unlearning import calibration as CAL
from unlearning import registry
from unlearning.config import attacks_for_reference, attacks_for_unlearned, methods_for, optimizers_for

Run = tuple[str, str, str, int]  # (bench, method, optimizer, seed) of one unlearning run

# The attacks' controls (docs/reference/statistics.md, "Attack presence"): under method `none`, the
# positive control (the target after the thin unlearning update of config `controls.positive`) and the
# negative one (the retrain model). Both go through every attack the unlearned models go through.
CONTROL = "control"
NEGATIVE = "retrain"

# The per-benchmark figures (one job each; report/{name}_plot.py) and their report categories.
FIGURE_CATEGORIES = {
    "quantization": "2. Quantization",
    "relearning": "3. Relearning",
    "tradeoff": "6. Utility vs forgetting",
}

# Library modules (relative to src/unlearning) that evaluation runs: inputs of the evaluation rules, so
# that editing one replans the evaluations and nothing upstream.
EVAL_CODE = [
    "eval/__init__.py",
    "eval/common.py",
    "eval/muse.py",
    "eval/mc.py",
    "eval/tofu.py",
    "eval/scorers.py",
    "tofu_metrics.py",
    "prompts.py",
    "attacks/quantization.py",
    "attacks/lowbit.py",
    "attacks/relearn.py",
    "models.py",
    "stages/common.py",
    "stages/evaluate.py",
    "provenance.py",
]


def as_json(obj) -> str:
    """Canonical JSON of a job parameter (sorted keys, no spaces): equal values give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class StudyPlan:
    """The jobs of one study. ``config`` is validated (unlearning.config.validate). ``chosen``: the
    calibration's multiplier tag of (bench, method, optimizer, seed), read from the `calibrate`
    checkpoint by the workflow; needed only for the unlearned models of a calibrated study."""

    def __init__(self, config: dict, chosen: Callable[[str, str, str, int | str], str] | None = None):
        self.config = config
        self.root = config["results"]
        self.chosen = chosen
        self.ablation = config.get("ablation") or {}
        self.ablation_opts = dict(self.ablation.get("optimizers", {}))
        self.report = config.get("report", {})
        self.ref_opt = self.report.get("reference_optimizer", "adam")
        self.readme_dir = f"{self.root}/README"

    # ------------------------------------------------------------------------------ wildcards

    def wildcard_constraints(self) -> dict[str, str]:
        """Global wildcard patterns. {bench} is one of the study's benchmarks, so results/tables/{bench}.csv
        never claims the study-wide tables beside it (provenance.csv, grade_distance.csv)."""
        return {
            "bench": "|".join(sorted(self.config["benchmarks"])),
            "method": "(?!none/)[a-z][a-z0-9_]*",
            # the unlearn rule also makes the positive control (method none); relearn and evaluate
            # also take the negative control (the retrain model)
            "method_or_control": f"(?!none/)[a-z][a-z0-9_]*|none(?=/{CONTROL}/)",
            "method_or_controls": f"(?!none/)[a-z][a-z0-9_]*|none(?=/(?:{CONTROL}|{NEGATIVE})/)",
            "optimizer": "[a-z][a-z0-9_]*",
            "role": "target|retrain",
            "scale": r"[0-9][0-9.e+-]*",
            "seed": r"\d+",
        }

    def model_role_constraint(self, copied: bool) -> str:
        """The `role` pattern of copy_model (copied=True) or train_model: the roles the config copies
        from a hub id / folder, or trains, each tied to its benchmark by a lookbehind on the path
        (`.../models/<bench>/<role>/seed<N>`), so that exactly one of the two rules makes each model."""
        pairs = [
            (bench, role)
            for bench in sorted(self.config["benchmarks"])
            for role in ("target", "retrain")
            if self.config["benchmarks"][bench].get(role) is not False  # no retrain model (WMDP at paper scale)
            and (self.model_source(bench, role) is not None) == copied
        ]
        # (?!) matches nothing: no model of that kind in this study.
        return "|".join(f"(?<=/{re.escape(b)}/){role}" for b, role in pairs) or "(?!)"

    # ------------------------------------------------------------------------------ code inputs

    def optimizer_code(self, optimizer: str) -> list[str]:
        """Modules an optimizer entry runs: editing optim/zeroth.py replans only the zeroth-order and
        hybrid branches (tests/test_registry.py checks the registry's modules)."""
        types = registry.types_used(self.optimizer_spec(optimizer))
        mods = {f"optim/{registry.optimizer(t).module}.py" for t in types}
        return ["optim/__init__.py", "optim/build.py", "optim/_common.py", *sorted(mods)]

    def objective_code(self, method: str) -> list[str]:
        """Modules a method's objective runs."""
        module = registry.OBJECTIVES[self.method_spec(method)["objective"]].module
        return ["objectives/__init__.py", "objectives/base.py", f"objectives/{module}.py"]

    # ------------------------------------------------------------------------------ job parameters

    def method_spec(self, method: str) -> dict:
        """A method's config entry; for ``none`` the positive control's (`controls.positive.method`)."""
        return self.config["controls"]["positive"]["method"] if method == "none" else self.config["methods"][method]

    def optimizer_spec(self, optimizer: str) -> dict:
        """An optimizer's config entry; for the positive control its entry with its own step count."""
        if optimizer == CONTROL:
            positive = self.config["controls"]["positive"]
            return {**positive["optimizer"], "steps": positive["steps"]}
        return self.config["optimizers"][optimizer]

    def kind(self, bench: str) -> str:
        return self.config["benchmarks"][bench]["kind"]

    def grade_of(self, optimizer: str) -> str:
        return registry.OPTIMIZERS[self.config["optimizers"][optimizer]["type"]].grade

    def method_json(self, method: str) -> str:
        return as_json(self.method_spec(method))

    def optimizer_json(self, optimizer: str) -> str:
        return as_json(self.optimizer_spec(optimizer))

    def registry_entries(self, optimizer: str) -> str:
        """The registry entries an optimizer entry uses (a param of its jobs: editing one, e.g. whether a
        type is seeded, reruns only the branches that use it)."""
        spec = self.optimizer_spec(optimizer)
        return as_json({t: vars(registry.optimizer(t)) for t in registry.types_used(spec)})

    def eval_params(self) -> str:
        return as_json(self.config["evaluation"])

    def relearn_params(self) -> str:
        """What the relearning stage reads (not keep_checkpoints or report: they change no model) and
        the chunking it shares with unlearning."""
        skip = ("keep_checkpoints", "report")
        params = {k: v for k, v in self.config["attacks"]["relearn"].items() if k not in skip}
        return as_json({**params, "chunking": self.config["unlearning"]["chunking"]})

    def relearn_report_arg(self) -> str:
        """The findings' `--relearn-report` (config `attacks.relearn.report`), or nothing (the longest)."""
        judged = self.config["attacks"]["relearn"].get("report")
        return f"--relearn-report {judged}" if judged is not None else ""

    def keep_relearned(self) -> bool:
        """Whether relearned checkpoints are kept, or deleted once every evaluation of their model read
        them (`attacks.relearn.keep_checkpoints`)."""
        return self.config["attacks"]["relearn"]["keep_checkpoints"]

    def auc_retrain_arg(self, bench: str) -> str:
        auc = self.config["evaluation"]["auc_retrain"]
        return f"--auc-retrain {auc[bench]}" if bench in auc else ""

    def training_params(self, seed: int | str, bench: str | None = None, role: str | None = None) -> str:
        """What training a model reads: `training` at the model's seed (`per_seed` only picks the models).
        With ``bench`` and ``role``, `until` narrowed to the levels that model must meet
        (stages.models.levels_for) and dropped where none applies, so a study without levels runs the
        jobs it ran before and editing one kind's level retrains only the models it checks."""
        from .stages.models import levels_for

        training = {k: v for k, v in self.config["training"].items() if k not in ("per_seed", "until")}
        until = self.config["training"].get("until") or {}
        levels = levels_for(self.kind(bench), role, until.get("levels") or {}) if bench and role else {}
        return as_json({**training, "seed": int(seed), **({"until": {**until, "levels": levels}} if levels else {})})

    def training_check(self, bench: str, role: str) -> str:
        """The train_model options the knowledge levels are checked with (the `evaluation` entry and the
        multiple-choice subject); empty where no level applies, so editing `evaluation` retrains nothing."""
        import shlex

        from .prompts import mc_subject

        if "until" not in json.loads(self.training_params(0, bench, role)):
            return ""
        subject = mc_subject(self.config["benchmarks"][bench])
        return f"--evaluation {shlex.quote(self.eval_params())} --subject {shlex.quote(subject)}"

    def calibration_criterion(self) -> str:
        """The calibrate job's criterion (the grid and seeds enter as its input files, so editing one
        entry's grid reruns only that entry's choice)."""
        cal = self.config["calibration"] or {}
        return as_json(
            {
                **{k: v for k, v in cal.items() if k in ("criterion", "margin", "threshold")},
                **({"per_seed": True} if CAL.per_seed(self.config) else {}),
            }
        )

    def run_meta(self, bench: str, method: str, optimizer: str, seed: int | str | None = None) -> str:
        """The --meta of an unlearned model's evaluation (and, without a seed, of its calibration); a
        reference model's or control's (method ``none``) has grade ``reference``."""
        grade = "reference" if method == "none" else self.grade_of(optimizer)
        meta = {"benchmark": bench, "method": method, "optimizer": optimizer, "grade": grade}
        return as_json(meta if seed is None else {**meta, "seed": int(seed)})

    # ------------------------------------------------------------------------------ models

    def model_dir(self, bench: str, role: str, seed: int | str) -> str:
        """Folder of the ``role`` model (target/retrain) that the unlearning runs of ``seed`` start from
        or are compared with: one per seed for the roles of `training.per_seed`, else one for all."""
        return f"{self.root}/models/{bench}/{role}/seed{CAL.model_seed(self.config, role, seed)}"

    def model_source(self, bench: str, role: str) -> str | None:
        """Hub id or folder the target/retrain model is copied from; None when trained here."""
        value = self.config["benchmarks"][bench].get(role)
        return value if isinstance(value, str) else None

    def reference_roles(self, bench: str) -> list[str]:
        """Reference models of a benchmark: the target, and the retrain model unless `retrain: false`."""
        return ["target"] + ([] if self.config["benchmarks"][bench].get("retrain") is False else ["retrain"])

    # ------------------------------------------------------------------------------ the study's runs

    def runs(self) -> Iterator[Run]:
        """(bench, method, optimizer, seed) of every unlearning run."""
        for bench in self.config["benchmarks"]:
            for method in methods_for(self.config, bench):
                for opt in optimizers_for(self.config, bench):
                    for seed in self.config["seeds"]:
                        yield bench, method, opt, seed

    def eval_files(self, run: Run) -> list[str]:
        """The evaluation JSONs of one unlearning run, one per attack."""
        b, m, o, s = run
        return [f"{self.root}/eval/{b}/{m}/{o}/seed{s}/{a}.json" for a in attacks_for_unlearned(self.config)]

    def unlearned_evals(self, bench: str) -> list[str]:
        return [f for run in self.runs() if run[0] == bench for f in self.eval_files(run)]

    def reference_evals(self, bench: str) -> list[str]:
        """The reference models' evaluations: every target model the study's runs use (unattacked and
        quantized), then the attacks' controls under every attack (``control_runs``)."""
        targets = [
            f"{self.root}/eval/{bench}/none/target/seed{ms}/{a}.json"
            for ms in CAL.model_seeds(self.config, "target", self.config["seeds"])
            for a in attacks_for_reference(self.config)
        ]
        return targets + [f for run in self.control_runs(bench) for f in self.eval_files(run)]

    def control_runs(self, bench: str) -> list[Run]:
        """(bench, "none", role, seed) of the attacks' controls: the retrain model of every model seed
        the runs use (the negative control; none under `retrain: false`), then the positive control of
        every seed. Each is relearned and evaluated under every attack like an unlearning run; the
        target is not (it holds the knowledge already: nothing to restore)."""
        negative = [
            (bench, "none", NEGATIVE, ms)
            for ms in CAL.model_seeds(self.config, NEGATIVE, self.config["seeds"])
            if NEGATIVE in self.reference_roles(bench)
        ]
        return negative + [(bench, "none", CONTROL, s) for s in self.config["seeds"]]

    def control_model(self, bench: str, seed: int | str) -> str:
        """The positive control of one seed: the seed's target after `controls.positive`'s unlearning
        (made by the unlearn rule, method ``none``, optimizer ``control``, at x1: never calibrated)."""
        return f"{self.root}/unlearned/{bench}/none/{CONTROL}/x{CAL.tag(1)}/seed{seed}"

    def attacked_model(self, bench: str, method: str, optimizer: str, seed: int | str) -> str:
        """The model an attack starts from: the study's unlearned model of a run, or a control."""
        if method != "none":
            return self.unlearned_model(bench, method, optimizer, seed)
        if optimizer == CONTROL:
            return self.control_model(bench, seed)
        return f"{self.root}/models/{bench}/{optimizer}/seed{seed}"  # a control's seed is its model's

    def all_evals(self) -> list[str]:
        """Every evaluation of the study's benchmarks (reference models, then unlearned ones)."""
        return [e for b in self.config["benchmarks"] for e in (*self.reference_evals(b), *self.unlearned_evals(b))]

    def unlearned_model(self, bench: str, method: str, optimizer: str, seed: int | str) -> str:
        """The study's unlearned model of one run: the unlearning at the chosen multiplier (1 without
        calibration). With calibration, the grid point of a calibration seed at the chosen multiplier is
        that seed's run."""
        if not CAL.enabled(self.config):
            scale = CAL.tag(1)
        elif self.chosen is None:
            raise ValueError("a calibrated study's unlearned models need the calibration's choices (chosen=)")
        else:
            scale = self.chosen(bench, method, optimizer, seed)
        return f"{self.root}/unlearned/{bench}/{method}/{optimizer}/x{scale}/seed{seed}"

    # ------------------------------------------------------------------------------ calibration

    def calibration_combos(self) -> list[tuple[str, str, str]]:
        """(bench, method, optimizer) of every calibrated entry: the study's and the ablation's."""
        cfg = self.config
        combos = [(b, m, o) for b in cfg["benchmarks"] for m in methods_for(cfg, b) for o in optimizers_for(cfg, b)]
        if self.ablation:
            combos += [(self.ablation["benchmark"], self.ablation["method"], o) for o in self.ablation_opts]
        return combos

    def entry_seeds(self, bench: str, method: str, optimizer: str) -> list[int]:
        """The seeds the study runs an entry at (the ablation's seeds for its entries)."""
        entry = (bench, method, optimizer)
        return sorted({s for b, m, o, s in (*self.runs(), *self.ablation_runs()) if (b, m, o) == entry})

    def calibration_seeds(self, bench: str, method: str, optimizer: str) -> list[int]:
        """An entry's calibration seeds: `calibration.seeds`, or under `each` the seeds its study runs use."""
        return CAL.seeds(self.config, self.entry_seeds(bench, method, optimizer))

    def calibration_points(self, bench: str, method: str, optimizer: str) -> dict[str, list[str]]:
        """SCALE -> [unattacked criterion evaluation per calibration seed] of one entry's grid (none
        under early stopping: each run's last check holds the criterion's metrics)."""
        if CAL.early_stop(self.config):
            return {}
        seeds = self.calibration_seeds(bench, method, optimizer)
        return {
            CAL.tag(x): [
                f"{self.root}/calibration/{bench}/{method}/{optimizer}/x{CAL.tag(x)}/seed{s}/none.json" for s in seeds
            ]
            for x in CAL.grid(self.config, optimizer)
        }

    def run_dir(self, bench: str, method: str, optimizer: str, scale: float | str, seed: int | str) -> str:
        """The unlearned model of one entry at multiplier ``scale`` and ``seed`` (rule unlearn)."""
        return f"{self.root}/unlearned/{bench}/{method}/{optimizer}/x{CAL.tag(scale)}/seed{seed}"

    def calibration_runs(self, bench: str, method: str, optimizer: str,
                         status: Callable[[str, str, str, str, int], str | None]) -> dict[str, list[str]]:
        """Under early stopping, SCALE -> [run folders] of the entry's ladder as far as it is walked
        (calibration.walk): each seed (or the calibration seeds together) climbs while its run never
        reached the level, and steps below the first rung (`early_stop.below`) while it overshoots there.
        ``status(bench, method, optimizer, scale_tag, seed)`` reads a finished run (calibration.run_status);
        in the workflow it returns None until the run exists (the unlearn checkpoint), so Snakemake runs
        one rung at a time. Empty without early stopping (``calibration_points`` then)."""
        if not CAL.early_stop(self.config):
            return {}
        walked = CAL.walk(CAL.grid(self.config, optimizer), self.calibration_seeds(bench, method, optimizer),
                          lambda x, s: status(bench, method, optimizer, CAL.tag(x), s), CAL.per_seed(self.config),
                          below=CAL.below(self.config))
        out: dict[str, list[str]] = {}
        for x, s in walked:
            out.setdefault(CAL.tag(x), []).append(self.run_dir(bench, method, optimizer, x, s))
        return out

    def calibration_args(self, bench: str, method: str, optimizer: str,
                         status: Callable[[str, str, str, str, int], str | None]) -> str:
        """The calibrate job's SCALE=PATH arguments: ``--points`` (evaluations) of the fixed grid, or
        under early stopping ``--runs`` (run folders) of the walked ladder and ``--top``, its highest rung."""
        runs = self.calibration_runs(bench, method, optimizer, status)
        if runs:
            top = CAL.tag(max(CAL.grid(self.config, optimizer)))
            return "--runs " + " ".join(f"{x}={p}" for x, ps in runs.items() for p in ps) + f" --top {top}"
        points = self.calibration_points(bench, method, optimizer)
        return "--points " + " ".join(f"{x}={p}" for x, ps in points.items() for p in ps)

    def calibrated(self, bench: str, method: str, optimizer: str) -> bool:
        """Whether an entry's runs are calibrated (the study's and the ablation's; not the controls)."""
        return CAL.enabled(self.config) and (bench, method, optimizer) in self.calibration_combos()

    def stop_reference(self, bench: str, method: str, optimizer: str, seed: int | str) -> list[str]:
        """The retrain evaluations an early-stopped run's checks compare with: its own seed's retrain
        model under `calibration.seeds: each`, else the calibration seeds' (the ceiling their choice is
        judged by); none without early stopping, for a control, or under `forget_at_most`."""
        if not (CAL.early_stop(self.config) and self.calibrated(bench, method, optimizer)):
            return []
        if self.config["calibration"]["criterion"] != "match_retrain":
            return []
        if CAL.per_seed(self.config):
            ms = CAL.model_seed(self.config, "retrain", seed)
            return [f"{self.root}/eval/{bench}/none/retrain/seed{ms}/none.json"]
        return self.calibration_reference(bench, method, optimizer, "retrain")

    def stop_params(self, bench: str, method: str, optimizer: str) -> str:
        """The unlearn job's early-stopping settings (stages.unlearn.EarlyStop) as JSON, or "" for a
        run of fixed steps: the check interval, the budget, the criterion and the evaluation settings
        the checks score with."""
        stop = CAL.early_stop(self.config)
        if not (stop and self.calibrated(bench, method, optimizer)):
            return ""
        from .prompts import mc_subject

        cal = self.config["calibration"]
        return as_json({
            "every": int(stop["every"]), "budget": CAL.budget(self.config),
            **{k: cal[k] for k in ("criterion", "margin", "threshold") if k in cal},
            "evaluation": self.config["evaluation"], "subject": mc_subject(self.config["benchmarks"][bench]),
        })

    def stop_code(self, bench: str, method: str, optimizer: str) -> list[str]:
        """The evaluation modules an early-stopped run's checks run (inputs of its unlearn job)."""
        return ["calibration.py", *EVAL_CODE] if self.stop_params(bench, method, optimizer) else []

    def calibration_reference(self, bench: str, method: str, optimizer: str, role: str) -> list[str]:
        """The ``role`` model's unattacked evaluations at the calibration seeds (the criterion's levels)."""
        if role not in self.reference_roles(bench):
            return []
        seeds = CAL.model_seeds(self.config, role, self.calibration_seeds(bench, method, optimizer))
        return [f"{self.root}/eval/{bench}/none/{role}/seed{ms}/none.json" for ms in seeds]

    def choice_file(self, bench: str, method: str, optimizer: str) -> str:
        return f"{self.root}/calibration/{bench}/{method}/{optimizer}/choice.json"

    def calibration_choices(self, bench: str | None = None) -> list[str]:
        return [self.choice_file(b, m, o) for b, m, o in self.calibration_combos() if bench in (None, b)]

    def calibration_table(self) -> list[str]:
        """The calibration table as an input of the reports that mark its choices (none without calibration)."""
        return [f"{self.root}/tables/calibration.csv"] if CAL.enabled(self.config) else []

    def calibration_outputs(self) -> list[str]:
        if not CAL.enabled(self.config):
            return []
        figures = [f"{self.root}/figures/{b}/calibration.png" for b in self.config["benchmarks"]]
        return [f"{self.root}/tables/calibration.csv", *figures]

    # ------------------------------------------------------------------------------ distance, ablation, LMC

    def distance_runs(self, models: list[str] | None = None) -> list[dict]:
        """Every unlearning run with its grade, model folder and target folder (the grade-distance stage's
        --runs). ``models``: the runs' model folders in runs() order (the rule's input; from the
        calibration's choices when not given)."""
        runs = list(self.runs())
        models = models or [self.unlearned_model(*run) for run in runs]
        return [
            {
                "benchmark": b,
                "method": m,
                "optimizer": o,
                "grade": self.grade_of(o),
                "seed": int(s),
                "path": str(path),
                "target": self.model_dir(b, "target", s),
            }
            for (b, m, o, s), path in zip(runs, models)
        ]

    def ablation_runs(self) -> Iterator[Run]:
        """(bench, method, optimizer, seed) of every ablation-only unlearning run."""
        if not self.ablation:
            return
        for opt in self.ablation_opts:
            for seed in self.ablation.get("seeds") or self.config["seeds"]:
                yield self.ablation["benchmark"], self.ablation["method"], opt, seed

    def ablation_evals(self) -> list[str]:
        """Evaluations the ablation table reads: its own runs, the study's hybrid runs of the same
        benchmark and method (the baseline entry), and the reference models (for PrivLeak)."""
        b, m = self.ablation["benchmark"], self.ablation["method"]
        hybrid = self.hybrid_entries()
        hybrids = [run for run in self.runs() if run[:2] == (b, m) and run[2] in hybrid]
        runs = [*hybrids, *self.ablation_runs()]
        return [*self.reference_evals(b), *(f for run in runs for f in self.eval_files(run))]

    def hybrid_entries(self) -> dict[str, dict]:
        return {o: s for o, s in self.config["optimizers"].items() if s["type"] == "hybrid"}

    def lmc_jobs(self, bench: str) -> list[tuple[str, int]]:
        """(method, seed) of the LMC paths of ``bench``: where the reference optimizer ran with others."""
        opts = optimizers_for(self.config, bench)
        if self.ref_opt not in opts or len(opts) < 2:
            return []
        return [(m, s) for m in methods_for(self.config, bench) for s in self.config["seeds"]]

    def lmc_optimizers(self, bench: str, method: str, seed: int | str) -> list[str]:
        """The optimizers on the LMC paths of one benchmark, method and seed."""
        return [o for b, m, o, s in self.runs() if (b, m, str(s)) == (bench, method, str(seed))]

    def lmc_models(self, bench: str, method: str, seed: int | str) -> list[str]:
        return [self.unlearned_model(bench, method, o, seed) for o in self.lmc_optimizers(bench, method, seed)]

    def lmc_meta(self, bench: str, method: str, seed: int | str) -> str:
        grades = {o: self.grade_of(o) for o in self.lmc_optimizers(bench, method, seed)}
        return as_json({"benchmark": bench, "method": method, "seed": int(seed), "grades": grades})

    # ------------------------------------------------------------------------------ report

    def report_figures(self, bench: str) -> list[str]:
        return [f"{self.root}/figures/{bench}/{n}.png" for n in ("quantization", "relearning", "tradeoff", "lmc")]

    def readme_figures(self) -> list[tuple[str, str]]:
        """(source PNG, name in results/README/) of the figures shown in the README."""
        benches = self.config["benchmarks"]
        figs = [(p, f"{b}_{Path(p).name}") for b in benches for p in self.report_figures(b)]
        if CAL.enabled(self.config):
            figs += [(f"{self.root}/figures/{b}/calibration.png", f"{b}_calibration.png") for b in benches]
        if self.ablation:
            figs.append((f"{self.root}/ablation/ablation.png", "ablation.png"))
        return figs

    def tofu_tables(self, bench: str) -> list[str]:
        """The paper's TOFU table (CSV + markdown) of a TOFU-kind benchmark; none for other kinds."""
        if self.kind(bench) != "tofu":
            return []
        return [f"{self.root}/tables/tofu/{bench}.csv", f"{self.root}/tables/tofu/{bench}.md"]

    def report_outputs(self) -> list[str]:
        """Everything workflow/rules/report.smk produces: figures, main tables, LMC, ablation, findings."""
        out = []
        for b in self.config["benchmarks"]:
            out += [
                f"{self.root}/tables/main/{b}.csv",
                f"{self.root}/tables/main/{b}.md",
                *self.report_figures(b),
                f"{self.root}/lmc/{b}/barriers.csv",
                *self.tofu_tables(b),
            ]
        if self.ablation:
            out += [f"{self.root}/ablation/table.csv", f"{self.root}/ablation/ablation.png"]
        return out + [f"{self.readme_dir}/findings.md"]

    def all_outputs(self) -> list[str]:
        """The default target's inputs: every table, figure and report of the study."""
        return [
            *(f"{self.root}/tables/{b}.csv" for b in self.config["benchmarks"]),
            *self.calibration_outputs(),
            f"{self.root}/summary.md",
            f"{self.root}/tables/grade_distance.csv",  # workflow/rules/distance.smk
            *self.report_outputs(),
        ]
