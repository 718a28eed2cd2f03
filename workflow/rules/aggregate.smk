from unlearning.report import code_of as report_code  # noqa: E402  (imports nothing else)


rule aggregate:
    """Tidy table: one row per benchmark, method, optimizer, grade, seed, attack, metric."""
    input:
        evals=lambda wc: [*reference_evals(wc.bench), *unlearned_evals(wc.bench)],
        code=src(*report_code("tidy")),
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


# One job per benchmark and figure, each listing only the report modules it runs: editing one
# figure's module replans that figure alone (tests/test_report_rerun.py).
FIGURE_CATEGORIES = {"quantization": "2. Quantization", "relearning": "3. Relearning",
                     "tradeoff": "6. Utility vs forgetting"}


rule figures:
    """Per benchmark, one figure: forget knowledge before/after quantization, relearning curves, or
    utility vs forgetting (PNG + SVG; mean and 95% CI over seeds; one colour per optimizer in every
    figure)."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        code=lambda wc: src(*report_code("figures"), *report_code(f"{wc.figure}_plot")),
    output:
        png=report(f"{R}/figures/{{bench}}/{{figure}}.png", caption="../report/figure.rst",
                   category=lambda wc: FIGURE_CATEGORIES[wc.figure], subcategory="{bench}"),
        svg=f"{R}/figures/{{bench}}/{{figure}}.svg",
    params:
        out=f"{R}/figures/{{bench}}",
    wildcard_constraints:
        figure="|".join(FIGURE_CATEGORIES),
    log:
        f"{R}/logs/figures/{{bench}}/{{figure}}.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} figures --table {input.table} --only {wildcards.figure} --out {params.out} > {log} 2>&1"


rule summary:
    """Markdown summary of every table (mean ± standard deviation over seeds)."""
    input:
        tables=[f"{R}/tables/{b}.csv" for b in config["benchmarks"]],
        code=src(*report_code("tables")),
    output:
        f"{R}/summary.md",
    log:
        f"{R}/logs/summary.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} summary --tables {input.tables} --out {output} > {log} 2>&1"
