rule unlearn:
    """Unlearn the forget set from the target with one method, one optimizer entry and one seed, at
    {scale} times the entry's learning rate(s) (a calibration grid point, or 1 without calibration)."""
    input:
        target=lambda wc: model_dir(wc.bench, "target", wc.seed),
        data=f"{R}/data/{{bench}}",
        code=lambda wc: [
            *src(
                "data/chunking.py",
                "train.py",
                "lr_schedule.py",
                "models.py",
                "stages/common.py",
                "stages/unlearn.py",
            ),
            *objective_code(wc),
            *optimizer_code(wc),
        ],
    output:
        directory(f"{R}/unlearned/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}"),
    log:
        f"{R}/logs/unlearn/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/unlearn/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        method=lambda wc: as_json(config["methods"][wc.method]),
        optimizer=lambda wc: as_json(config["optimizers"][wc.optimizer]),
        run=lambda wc: as_json(
            {
                **config["unlearning"],
                "seed": int(wc.seed),
                "max_len": config["model"]["max_len"],
                "lr_multiplier": float(wc.scale),
            }
        ),
        # Not passed to the stage (it reads the registry itself): recorded so that editing the registry
        # entry of a type this entry uses reruns its branches.
        registry=registry_entries,
        # `unlearning`, or torchrun with one rank per GPU when the profile gives the job several
        launch=unlearn_launcher,
    shell:
        "{params.launch} --threads {threads} unlearn --target {input.target} --data {input.data}"
        " --kind {params.kind} --method {params.method:q} --optimizer {params.optimizer:q}"
        " --run {params.run:q} --out {output} > {log} 2>&1"
