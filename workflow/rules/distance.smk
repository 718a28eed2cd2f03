# Named report_* : a check for the report, rerun whenever any unlearned model changes (as the tables are).


rule report_grade_distance:
    """For each pair of optimizers of different grades (same benchmark, method and seed): how far apart
    their unlearned weights are relative to the target (||w_a - w_b|| / ||w_a - w_target||, update
    cosine, share of bit-identical weights), so a grade that collapses onto another is visible."""
    input:
        models=[r["path"] for r in distance_runs()],
        targets=[f"{R}/models/{b}/target" for b in config["benchmarks"]],
        code=src("weight_distance.py", "models.py", "registry.py", "stages/distance.py"),
    output:
        f"{R}/tables/grade_distance.csv",
    log:
        f"{R}/logs/report_grade_distance.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        runs=lambda wc: as_json(distance_runs()),
        targets=as_json({b: f"{R}/models/{b}/target" for b in config["benchmarks"]}),
    shell:
        "unlearning grade-distance --runs {params.runs:q} --targets {params.targets:q} --out {output} > {log} 2>&1"
