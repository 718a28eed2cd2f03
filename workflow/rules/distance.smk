# Named report_* : a check for the report, rerun whenever any unlearned model changes (as the tables are).


rule report_grade_distance:
    """For each pair of optimizers of different grades (same benchmark, method and seed): how far apart
    their unlearned weights are relative to the target (||w_a - w_b|| / ||w_a - w_target||, update
    cosine, share of bit-identical weights), so a grade that collapses onto another is visible."""
    input:
        models=lambda wc: [r["path"] for r in P.distance_runs()],
        targets=lambda wc: sorted({r["target"] for r in P.distance_runs()}),
        code=src("weight_distance.py", "models.py", "registry.py", "stages/distance.py"),
    output:
        f"{R}/tables/grade_distance.csv",
    log:
        f"{R}/logs/report_grade_distance.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        runs=lambda wc, input: as_json(P.distance_runs(input.models)),
        # on a GPU when the profile gives the rule one (profiles/slurm: 7B in minutes, not hours)
        device=lambda wc, resources: "cuda" if int(resources.get("gpu", 0) or 0) else "cpu",
        launch=gpu_launcher,  # `unlearning`, after claiming its GPU on a workstation (gpus.smk)
    shell:
        "{params.launch} --threads {threads} grade-distance --runs {params.runs:q} --out {output} --device {params.device}"
        " > {log} 2>&1"
