rule aggregate:
    """Tidy table: one row per benchmark, method, optimizer, grade, seed, attack, metric."""
    input:
        evals=lambda wc: [*P.reference_evals(wc.bench), *P.unlearned_evals(wc.bench)],
        code=src(*report_code("tidy")),
    output:
        f"{R}/tables/{{bench}}.csv",
    log:
        f"{R}/logs/aggregate/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        auc=lambda wc: P.auc_retrain_arg(wc.bench),
    shell:
        "unlearning aggregate --inputs {input.evals} {params.auc} --out {output} > {log} 2>&1"


rule figures:
    """Per benchmark, one figure: forget knowledge before/after quantization, relearning curves, or
    utility vs forgetting (PNG + SVG; mean and 95% CI over seeds; one colour per optimizer in every
    figure). One job per figure, each listing only the report modules it runs: editing one figure's
    module replans that figure alone (tests/test_report_rerun.py)."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        code=lambda wc: src(*report_code("figures"), *report_code(f"{wc.figure}_plot")),
    output:
        png=report(
            f"{R}/figures/{{bench}}/{{figure}}.png",
            caption="../report/figure.rst",
            category=lambda wc: FIGURE_CATEGORIES[wc.figure],
            subcategory="{bench}",
        ),
        svg=f"{R}/figures/{{bench}}/{{figure}}.svg",
    log:
        f"{R}/logs/figures/{{bench}}/{{figure}}.log",
    wildcard_constraints:
        figure="|".join(FIGURE_CATEGORIES),
    conda:
        CONDA_ENV
    threads: 1
    params:
        out=lambda wc, output: parent(output.png),
    shell:
        "unlearning figures --table {input.table} --only {wildcards.figure} --out {params.out} > {log} 2>&1"


rule report_provenance:
    """Where the study's numbers were made: the distinct environments (library versions, device, CPU
    capability, 4-bit CPU path) recorded by its evaluations, with their counts."""
    input:
        evals=lambda wc: P.all_evals(),
        code=src(*report_code("provenance")),
    output:
        f"{R}/tables/provenance.csv",
    log:
        f"{R}/logs/report_provenance.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning provenance --inputs {input.evals} --out {output} > {log} 2>&1"


rule summary:
    """Markdown summary of every table (mean ± standard deviation over seeds), and where the numbers
    were made."""
    input:
        tables=[f"{R}/tables/{b}.csv" for b in config["benchmarks"]],
        provenance=f"{R}/tables/provenance.csv",
        code=src(*report_code("tables")),
    output:
        f"{R}/summary.md",
    log:
        f"{R}/logs/summary.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning summary --tables {input.tables} --provenance {input.provenance} --out {output} > {log} 2>&1"
