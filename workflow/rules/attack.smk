# Quantization attacks need no rule of their own: evaluation loads the weights through bitsandbytes.


rule relearn:
    """Relearning attack: fine-tune on (part of) the forget set; one model per step count, in one job:
    checkpoints of one run under a constant rate without warmup, else a run per count (temp() unless
    `attacks.relearn.keep_checkpoints`). Method `none`: the attacks' controls, the retrain model (the
    negative control, relearned the same steps on the same data) and the positive control."""
    input:
        model=attacked_model,
        data=f"{R}/data/{{bench}}",
        code=src(
            "attacks/relearn.py",
            "data/chunking.py",
            "train.py",
            "models.py",
            "stages/common.py",
            "stages/relearn.py",
        ),
    output:
        [
            relearned(f"{R}/attacked/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}/relearn{s}")
            for s in sorted(config["attacks"]["relearn"]["steps"])
        ],
    log:
        f"{R}/logs/relearn/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/relearn/{{bench}}/{{method}}/{{optimizer}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method=_WC["method_or_controls"],
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        relearn=P.relearn_params(),
        max_len=config["model"]["max_len"],
        root=lambda wc, output: parent(output[0]),
        # `unlearning`, or torchrun with one rank per GPU when the profile gives the job several
        launch=relearn_launcher,
    shell:
        "{params.launch} --threads {threads} relearn --model {input.model} --data {input.data} --kind {params.kind}"
        " --params {params.relearn:q} --seed {wildcards.seed} --max-len {params.max_len}"
        " --out {params.root} > {log} 2>&1"
