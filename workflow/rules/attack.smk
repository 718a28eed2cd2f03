# Quantization attacks need no rule of their own: evaluation loads the weights through bitsandbytes.


rule relearn:
    """Relearning attack: fine-tune on part of the forget set; one checkpoint per step count."""
    input:
        model=f"{R}/unlearned/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}",
        data=f"{R}/data/{{bench}}",
        code=src("attacks/relearn.py", "train.py", "models.py", "stages/common.py", "stages/relearn.py"),
    output:
        [
            directory(f"{R}/attacked/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}/relearn{s}")
            for s in sorted(config["attacks"]["relearn"]["steps"])
        ],
    params:
        kind=kind,
        relearn=as_json(config["attacks"]["relearn"]),
        max_len=config["model"]["max_len"],
        root=f"{R}/attacked/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}",
    log:
        f"{R}/logs/relearn/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/relearn/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} --threads {threads} relearn --model {input.model} --data {input.data} --kind {params.kind}"
        " --params {params.relearn:q} --seed {wildcards.seed} --max-len {params.max_len}"
        " --out {params.root} > {log} 2>&1"
