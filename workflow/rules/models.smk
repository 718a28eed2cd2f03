# Target and retrain models: trained here (train_model, a GPU job at paper scale) or copied byte for
# byte from the hub id / folder that `benchmarks.<bench>.target` / `.retrain` names (copy_model, a
# CPU job: no GPU, little memory). The config decides which rule makes each (bench, role):
# plan.py's model_role_constraint builds each rule's `role` pattern from it, so exactly one rule matches a path.


rule train_model:
    """Target (forget + retain) and retrain (retain only) models, trained from scratch at seed {seed}
    (`training.seed`, or each unlearning seed for the roles of `training.per_seed`)."""
    input:
        data=f"{R}/data/{{bench}}",
        tokenizer=f"{R}/models/{{bench}}/tokenizer",
        code=src("models.py", "train.py", "stages/common.py", "stages/models.py"),
    output:
        directory(f"{R}/models/{{bench}}/{{role}}/seed{{seed}}"),
    log:
        f"{R}/logs/train_model/{{bench}}/{{role}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_model/{{bench}}/{{role}}/seed{{seed}}.tsv"
    wildcard_constraints:
        role=P.model_role_constraint(copied=False),
    # scheduling only: every later job waits for a model, so train them first (no idle core at the end)
    priority: 20
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        arch=as_json(config["model"]),
        training=lambda wc: P.training_params(wc.seed, wc.bench, wc.role),
        check=lambda wc: P.training_check(wc.bench, wc.role),  # levels: what checks them
        launch=gpu_launcher,  # `unlearning`, after claiming its GPU on a workstation (gpus.smk)
    shell:
        "{params.launch} --threads {threads} model --data {input.data} --kind {params.kind} --role {wildcards.role}"
        " --tokenizer {input.tokenizer} --arch {params.arch:q} --training {params.training:q}"
        " {params.check} --out {output} > {log} 2>&1"


rule copy_model:
    """Target / retrain model copied byte for byte from the hub id or folder named by
    `benchmarks.<bench>.<role>` (it brings its own tokenizer; nothing is loaded or converted)."""
    input:
        data=f"{R}/data/{{bench}}",
        code=src("models.py", "stages/models.py"),
    output:
        directory(f"{R}/models/{{bench}}/{{role}}/seed{{seed}}"),
    log:
        f"{R}/logs/copy_model/{{bench}}/{{role}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/copy_model/{{bench}}/{{role}}/seed{{seed}}.tsv"
    wildcard_constraints:
        role=P.model_role_constraint(copied=True),
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        source=lambda wc: P.model_source(wc.bench, wc.role),
    # --arch/--training are {}: a copy reads neither, so editing `model`/`training` does not re-copy.
    shell:
        "unlearning --threads {threads} model --data {input.data} --kind {params.kind} --role {wildcards.role}"
        " --tokenizer {params.source:q} --arch '{{}}' --training '{{}}' --source {params.source:q}"
        " --out {output} > {log} 2>&1"
