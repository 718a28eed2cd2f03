rule train_model:
    """Target (forget + retain) and retrain (retain only) models, trained from scratch at seed {seed}
    (`training.seed`, or each unlearning seed for the roles of `training.per_seed`); or copied from
    the hub id / folder that `benchmarks.<bench>.target` / `.retrain` names."""
    input:
        data=f"{R}/data/{{bench}}",
        # A model copied from the hub brings its own tokenizer; only models trained here need ours.
        tokenizer=lambda wc: [] if model_source(wc.bench, wc.role) else f"{R}/models/{wc.bench}/tokenizer",
        code=src("models.py", "train.py", "stages/common.py", "stages/models.py"),
    output:
        directory(f"{R}/models/{{bench}}/{{role}}/seed{{seed}}"),
    log:
        f"{R}/logs/train_model/{{bench}}/{{role}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_model/{{bench}}/{{role}}/seed{{seed}}.tsv"
    # scheduling only: every later job waits for a model, so train them first (no idle core at the end)
    priority: 20
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        arch=as_json(config["model"]),
        training=training_params,
        source=lambda wc: f"--source {model_source(wc.bench, wc.role)}" if model_source(wc.bench, wc.role) else "",
        tokenizer=lambda wc: model_source(wc.bench, wc.role) or f"{R}/models/{wc.bench}/tokenizer",
    shell:
        "unlearning --threads {threads} model --data {input.data} --kind {params.kind} --role {wildcards.role}"
        " --tokenizer {params.tokenizer} --arch {params.arch:q} --training {params.training:q}"
        " {params.source} --out {output} > {log} 2>&1"
