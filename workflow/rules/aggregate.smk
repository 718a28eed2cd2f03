rule aggregate:
    """Tidy table: one row per benchmark, method, optimizer, grade, seed, attack, metric."""
    input:
        evals=lambda wc: [*reference_evals(wc.bench), *unlearned_evals(wc.bench)],
        code=src("report.py"),
    output:
        f"{R}/tables/{{bench}}.csv",
    log:
        f"{R}/logs/aggregate/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        auc=lambda wc: auc_retrain_arg(wc.bench),
    shell:
        "unlearning aggregate --inputs {input.evals} {params.auc} --out {output} > {log} 2>&1"


rule figures:
    """Per benchmark: forget knowledge before/after quantization, relearning curves, and utility vs
    forgetting (PNG + SVG; mean and 95% CI over seeds; one colour per optimizer in every figure)."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        code=src("report.py"),
    output:
        quant=report(
            f"{R}/figures/{{bench}}/quantization.png",
            caption="../report/quantization.rst",
            category="2. Quantization",
            subcategory="{bench}",
        ),
        relearn=report(
            f"{R}/figures/{{bench}}/relearning.png",
            caption="../report/relearning.rst",
            category="3. Relearning",
            subcategory="{bench}",
        ),
        tradeoff=report(
            f"{R}/figures/{{bench}}/tradeoff.png",
            caption="../report/tradeoff.rst",
            category="6. Utility vs forgetting",
            subcategory="{bench}",
        ),
        svg=[f"{R}/figures/{{bench}}/{n}.svg" for n in ("quantization", "relearning", "tradeoff")],
    log:
        f"{R}/logs/figures/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        out=lambda wc, output: parent(output.quant),
    shell:
        "unlearning figures --table {input.table} --out {params.out} > {log} 2>&1"


rule summary:
    """Markdown summary of every table (mean ± standard deviation over seeds)."""
    input:
        tables=[f"{R}/tables/{b}.csv" for b in config["benchmarks"]],
        code=src("report.py"),
    output:
        f"{R}/summary.md",
    log:
        f"{R}/logs/summary.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning summary --tables {input.tables} --out {output} > {log} 2>&1"
