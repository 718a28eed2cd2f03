EVAL_CODE = src("eval/__init__.py", "eval/common.py", "eval/muse.py", "eval/mc.py", "prompts.py",
                "attacks/quantization.py", "attacks/relearn.py", "models.py", "stages/common.py", "stages/evaluate.py")


def eval_params(wc):
    return as_json(config["evaluation"])


rule evaluate:
    """Score one unlearned model with no attack, under each quantization (applied at load) and after
    each relearning step count; writes one JSON per attack."""
    input:
        model=f"{R}/unlearned/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}",
        relearned=[
            f"{R}/attacked/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}/relearn{s}"
            for s in sorted(config["attacks"]["relearn"]["steps"])
        ],
        target=f"{R}/models/{{bench}}/target",
        data=f"{R}/data/{{bench}}",
        code=EVAL_CODE,
    output:
        [
            f"{R}/eval/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}/{a}.json"
            for a in attacks_for_unlearned(config)
        ],
    params:
        kind=kind,
        attacks=" ".join(attacks_for_unlearned(config)),
        meta=lambda wc: as_json({
            "benchmark": wc.bench, "method": wc.method, "optimizer": wc.optimizer,
            "grade": GRADE[config["optimizers"][wc.optimizer]["type"]], "seed": int(wc.seed),
        }),
        evaluation=eval_params,
        subject=lambda wc: bench_cfg(wc)["subject"],
        fraction=config["attacks"]["relearn"]["fraction"],
        root=f"{R}/attacked/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}",
        out=f"{R}/eval/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}",
    log:
        f"{R}/logs/evaluate/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} --threads {threads} evaluate --model {input.model} --data {input.data} --kind {params.kind}"
        " --attacks {params.attacks} --meta {params.meta:q} --params {params.evaluation:q}"
        " --subject {params.subject:q} --relearn-fraction {params.fraction}"
        " --relearned {params.root} --reference {input.target} --out {params.out} > {log} 2>&1"


rule evaluate_reference:
    """Score the target and retrain models (the Original and Retrain rows), also quantized."""
    input:
        model=f"{R}/models/{{bench}}/{{role}}",
        target=f"{R}/models/{{bench}}/target",
        data=f"{R}/data/{{bench}}",
        code=EVAL_CODE,
    output:
        [f"{R}/eval/{{bench}}/none/{{role}}/seed{{seed}}/{a}.json" for a in attacks_for_reference(config)],
    params:
        kind=kind,
        attacks=" ".join(attacks_for_reference(config)),
        meta=lambda wc: as_json({
            "benchmark": wc.bench, "method": "none", "optimizer": wc.role, "grade": "reference",
            "seed": int(wc.seed),
        }),
        evaluation=eval_params,
        subject=lambda wc: bench_cfg(wc)["subject"],
        fraction=config["attacks"]["relearn"]["fraction"],
        out=f"{R}/eval/{{bench}}/none/{{role}}/seed{{seed}}",
    log:
        f"{R}/logs/evaluate/{{bench}}/none/{{role}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{bench}}/none/{{role}}/seed{{seed}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} --threads {threads} evaluate --model {input.model} --data {input.data} --kind {params.kind}"
        " --attacks {params.attacks} --meta {params.meta:q} --params {params.evaluation:q}"
        " --subject {params.subject:q} --relearn-fraction {params.fraction}"
        " --reference {input.target} --out {params.out} > {log} 2>&1"
