# A checkpoint: under `calibration.early_stop` the calibrate checkpoint's input walks an entry's ladder
# (common.smk's rung_status), reading each rung's record to decide whether the next one runs.
checkpoint unlearn:
    """Unlearn the forget set from the target with one method, one optimizer entry and one seed, at
    {scale} times the entry's learning rate(s) (a calibration grid point, or 1 without calibration).
    Under `calibration.early_stop` it stops at the first check matching the retrain model.
    Method `none`, optimizer `control`: the attacks' positive control (config `controls.positive`)."""
    input:
        target=target_model,
        data=f"{R}/data/{{bench}}",
        stop_reference=lambda wc: P.stop_reference(wc.bench, wc.method, wc.optimizer, wc.seed),
        code=lambda wc: [
            *src(
                "data/chunking.py",
                "train.py",
                "lr_schedule.py",
                "models.py",
                "stages/common.py",
                "stages/unlearn.py",
            ),
            *src(*P.objective_code(wc.method)),
            *src(*P.optimizer_code(wc.optimizer)),
            *src(*P.stop_code(wc.bench, wc.method, wc.optimizer)),
        ],
    output:
        directory(f"{R}/unlearned/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}"),
    log:
        f"{R}/logs/unlearn/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/unlearn/{{bench}}/{{method}}/{{optimizer}}/x{{scale}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method=_WC["method_or_control"],
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        method=lambda wc: P.method_json(wc.method),
        optimizer=lambda wc: P.optimizer_json(wc.optimizer),
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
        registry=lambda wc: P.registry_entries(wc.optimizer),
        stop=stop_args,
        # `unlearning`, or torchrun with one rank per GPU when the profile gives the job several
        launch=unlearn_launcher,
    shell:
        "{params.launch} --threads {threads} unlearn --target {input.target} --data {input.data}"
        " --kind {params.kind} --method {params.method:q} --optimizer {params.optimizer:q}"
        " --run {params.run:q} {params.stop} --out {output} > {log} 2>&1"
