rule aggregate:
    """Tidy table: one row per benchmark, method, optimizer, grade, seed, attack, metric."""
    input:
        evals=lambda wc: [*reference_evals(wc.bench), *unlearned_evals(wc.bench)],
        code=src("report.py"),
    output:
        f"{R}/tables/{{bench}}.csv",
    params:
        auc=lambda wc: (
            f"--auc-retrain {config['evaluation']['auc_retrain'][wc.bench]}"
            if wc.bench in config["evaluation"]["auc_retrain"] else ""
        ),
    log:
        f"{R}/logs/aggregate/{{bench}}.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} aggregate --inputs {input.evals} {params.auc} --out {output} > {log} 2>&1"


rule figures:
    """Forget knowledge and utility before and after each attack, per optimizer."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        code=src("report.py"),
    output:
        directory(f"{R}/figures/{{bench}}"),
    log:
        f"{R}/logs/figures/{{bench}}.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} figures --table {input.table} --out {output} > {log} 2>&1"


rule summary:
    """Markdown summary of every table."""
    input:
        tables=[f"{R}/tables/{b}.csv" for b in config["benchmarks"]],
        code=src("report.py"),
    output:
        f"{R}/summary.md",
    log:
        f"{R}/logs/summary.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} summary --tables {input.tables} --out {output} > {log} 2>&1"
