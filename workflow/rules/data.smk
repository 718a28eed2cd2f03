rule prepare_data:
    """Generate the synthetic benchmark (or fetch the hub one) in the hub datasets' layouts."""
    input:
        code=src(
            "data/io.py",
            "data/synthetic.py",
            "data/synthetic_common.py",
            "data/synthetic_tofu.py",
            "data/tofu.py",
            "data/sources.py",
            "data/adapters.py",
            "data/muse.py",
            "data/wmdp.py",
            "data/mmlu.py",
            "prompts.py",
            "stages/data.py",
        ),
    output:
        directory(f"{R}/data/{{bench}}"),
    log:
        f"{R}/logs/prepare_data/{{bench}}.log",
    benchmark:
        f"{R}/benchmarks/prepare_data/{{bench}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        bench=lambda wc: as_json(bench_cfg(wc)),
    shell:
        "unlearning data --bench {params.bench:q} --name {wildcards.bench} --out {output} > {log} 2>&1"


rule train_tokenizer:
    """Byte-level BPE tokenizer trained on every text of the benchmark."""
    input:
        data=f"{R}/data/{{bench}}",
        code=src("models.py", "stages/data.py"),
    output:
        directory(f"{R}/models/{{bench}}/tokenizer"),
    log:
        f"{R}/logs/train_tokenizer/{{bench}}.log",
    benchmark:
        f"{R}/benchmarks/train_tokenizer/{{bench}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        vocab=config["tokenizer"]["vocab_size"],
    shell:
        "unlearning --threads {threads} tokenizer --data {input.data} --kind {params.kind}"
        " --vocab-size {params.vocab} --out {output} > {log} 2>&1"
