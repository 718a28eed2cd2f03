rule evaluate:
    """Score one unlearned model with no attack, under each quantization (applied at load) and after
    each relearning step count; writes one JSON per attack. Method `none`: the attacks' controls (the
    retrain model and the positive control), under the same attacks."""
    input:
        model=attacked_model,
        relearned=[
            f"{R}/attacked/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}/relearn{s}"
            for s in sorted(config["attacks"]["relearn"]["steps"])
        ],
        target=target_model,
        data=f"{R}/data/{{bench}}",
        code=EVAL_CODE,
    output:
        [f"{R}/eval/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}/{a}.json" for a in attacks_for_unlearned(config)],
    log:
        f"{R}/logs/evaluate/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method=_WC["method_or_controls"],
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        attacks=" ".join(attacks_for_unlearned(config)),
        meta=lambda wc: P.run_meta(wc.bench, wc.method, wc.optimizer, wc.seed),
        evaluation=P.eval_params(),
        subject=lambda wc: mc_subject(bench_cfg(wc)),
        fraction=config["attacks"]["relearn"]["fraction"],
        # The folders holding the relearned checkpoints and receiving the JSON files.
        relearned=lambda wc, input: f"--relearned {parent(input.relearned[0])}" if input.relearned else "",
        out=lambda wc, output: parent(output[0]),
        launch=gpu_launcher,  # `unlearning`, after claiming its GPU on a workstation (gpus.smk)
    shell:
        "{params.launch} --threads {threads} evaluate --model {input.model} --data {input.data} --kind {params.kind}"
        " --attacks {params.attacks} --meta {params.meta:q} --params {params.evaluation:q}"
        " --subject {params.subject:q} --relearn-fraction {params.fraction}"
        " {params.relearned} --reference {input.target} --out {params.out} > {log} 2>&1"


rule evaluate_reference:
    """Score the target model (the Original row), also quantized (the retrain model, a control of the
    attacks, goes through `evaluate` with every attack)."""
    input:
        model=f"{R}/models/{{bench}}/{{role}}/seed{{seed}}",
        target=target_model,
        data=f"{R}/data/{{bench}}",
        code=EVAL_CODE,
    output:
        [f"{R}/eval/{{bench}}/none/{{role}}/seed{{seed}}/{a}.json" for a in attacks_for_reference(config)],
    log:
        f"{R}/logs/evaluate/{{bench}}/none/{{role}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{bench}}/none/{{role}}/seed{{seed}}.tsv"
    wildcard_constraints:
        role="target",
    priority: 10
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        attacks=" ".join(attacks_for_reference(config)),
        meta=lambda wc: as_json(
            {
                "benchmark": wc.bench,
                "method": "none",
                "optimizer": wc.role,
                "grade": "reference",
                "seed": int(wc.seed),
            }
        ),
        evaluation=P.eval_params(),
        subject=lambda wc: mc_subject(bench_cfg(wc)),
        fraction=config["attacks"]["relearn"]["fraction"],
        out=lambda wc, output: parent(output[0]),
        launch=gpu_launcher,  # `unlearning`, after claiming its GPU on a workstation (gpus.smk)
    shell:
        "{params.launch} --threads {threads} evaluate --model {input.model} --data {input.data} --kind {params.kind}"
        " --attacks {params.attacks} --meta {params.meta:q} --params {params.evaluation:q}"
        " --subject {params.subject:q} --relearn-fraction {params.fraction}"
        " --reference {input.target} --out {params.out} > {log} 2>&1"
