# Learning-rate calibration (config `calibration`; src/unlearning/calibration.py): each entry unlearns at
# every multiplier of its grid (rule unlearn, {scale}), the criterion's metrics are measured without
# attack, and the checkpoint `calibrate` picks the multiplier every seed of the study then runs
# (plan.py's unlearned_model), or under `calibration.seeds: each` one per seed. A grid point of a
# study seed at its chosen multiplier is that seed's run. Under `calibration.early_stop` each run stops
# at the retrain model's level, its last check holds the criterion's metrics (no calibration_point
# job), and the grid is a ladder: `calibrate`'s input climbs it one rung at a time (common.smk's
# rung_status).


rule calibration_point:
    """The criterion's forget and utility metrics of one grid point (no attack, nothing else)."""
    input:
        model=f"{R}/unlearned/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}",
        data=f"{R}/data/{{bench}}",
        code=EVAL_CODE,
    output:
        f"{R}/calibration/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}/none.json",
    log:
        f"{R}/logs/calibration_point/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/calibration_point/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}.tsv"
    # scheduling only: a choice unblocks its entry's seeds, attacks and evaluations
    priority: 5
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        metrics=lambda wc: " ".join(CAL.CRITERION_METRICS[kind(wc)]),
        meta=lambda wc: P.run_meta(wc.bench, wc.method, wc.optimizer, wc.seed),
        evaluation=P.eval_params(),
        subject=lambda wc: mc_subject(bench_cfg(wc)),
        fraction=config["attacks"]["relearn"]["fraction"],
        out=lambda wc, output: parent(output[0]),
        launch=gpu_launcher,  # `unlearning`, after claiming its GPU on a workstation (gpus.smk)
    shell:
        "{params.launch} --threads {threads} evaluate --model {input.model} --data {input.data} --kind {params.kind}"
        " --attacks none --metrics {params.metrics} --meta {params.meta:q} --params {params.evaluation:q}"
        " --subject {params.subject:q} --relearn-fraction {params.fraction} --out {params.out} > {log} 2>&1"


checkpoint calibrate:
    """One entry's choice: every grid point's metrics (mean over the calibration seeds), the criterion's
    ceiling from the retrain model, the chosen multiplier and whether it met the criterion; under
    `calibration.seeds: each` all of that per seed, from the seed's own points and reference models."""
    input:
        points=lambda wc: [
            p for paths in P.calibration_points(wc.bench, wc.method, wc.optimizer).values() for p in paths
        ],
        runs=lambda wc: [
            p for paths in P.calibration_runs(wc.bench, wc.method, wc.optimizer, rung_status).values() for p in paths
        ],
        retrain=lambda wc: P.calibration_reference(wc.bench, wc.method, wc.optimizer, "retrain"),
        target=lambda wc: P.calibration_reference(wc.bench, wc.method, wc.optimizer, "target"),
        code=src("calibration.py", "stages/calibrate.py", "stages/common.py"),
    output:
        f"{R}/calibration/{{bench}}/{{method}}/{{optimizer}}/choice.json",
    log:
        f"{R}/logs/calibrate/{{bench}}/{{method}}/{{optimizer}}.log",
    priority: 5
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        points=lambda wc: P.calibration_args(wc.bench, wc.method, wc.optimizer, rung_status),
        # the criterion only: the grid and seeds enter as the input files, so editing one entry's grid
        # reruns only that entry's choice
        criterion=P.calibration_criterion(),
        meta=lambda wc: P.run_meta(wc.bench, wc.method, wc.optimizer),
    shell:
        "unlearning calibrate {params.points} --retrain {input.retrain} --target {input.target}"
        " --kind {params.kind} --params {params.criterion:q} --meta {params.meta:q} --out {output} > {log} 2>&1"


rule report_calibration_table:
    """results/tables/calibration.csv: every grid point of every entry, the choice marked."""
    input:
        choices=P.calibration_choices(),
        code=src(*report_code("calibration")),
    output:
        f"{R}/tables/calibration.csv",
    log:
        f"{R}/logs/report_calibration_table.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning calibration-report --choices {input.choices} --csv {output} > {log} 2>&1"


rule report_calibration_figure:
    """Tuning curves of one benchmark: forget against utility per optimizer, the choice marked."""
    input:
        choices=lambda wc: P.calibration_choices(wc.bench),
        code=src(*report_code("calibration")),
    output:
        png=report(
            f"{R}/figures/{{bench}}/calibration.png",
            caption="../report/calibration.rst",
            category="0. Calibration",
            subcategory="{bench}",
        ),
        svg=f"{R}/figures/{{bench}}/calibration.svg",
    log:
        f"{R}/logs/report_calibration_figure/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning calibration-report --choices {input.choices}"
        " --figures {wildcards.bench}={output.png} > {log} 2>&1"
