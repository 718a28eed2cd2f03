# The paper's evidence from the tidy tables: main tables with 95% CIs, quantization and relearning
# views, utility/forgetting trade-off, linear mode connectivity (LMC), the hybrid ablation, and
# results/README/findings.md (each finding judged by paired tests over the seeds). Every output here
# is marked for `snakemake --report results/report.html` with a caption in workflow/report/.


report: "../report/workflow.rst"


rule report_tables:
    """Main table (CSV + markdown, mean and 95% CI over seeds), quantization and relearning tables."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        calibration=P.calibration_table(),
        code=src(*report_code("tables")),
    output:
        main=report(
            f"{R}/tables/main/{{bench}}.csv",
            caption="../report/main_table.rst",
            category="1. Main tables",
            subcategory="{bench}",
        ),
        md=f"{R}/tables/main/{{bench}}.md",
        quant=report(
            f"{R}/tables/quantization/{{bench}}.csv",
            caption="../report/quantization_table.rst",
            category="2. Quantization",
            subcategory="{bench}",
        ),
        relearn=report(
            f"{R}/tables/relearning/{{bench}}.csv",
            caption="../report/relearning_table.rst",
            category="3. Relearning",
            subcategory="{bench}",
        ),
    log:
        f"{R}/logs/report_tables/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        calibration=lambda wc, input: f"--calibration {input.calibration}" if input.calibration else "",
    shell:
        "unlearning report-tables --table {input.table} --main-csv {output.main} --main-md {output.md}"
        " --quantization {output.quant} --relearning {output.relearn} {params.calibration} > {log} 2>&1"


rule report_tofu_table:
    """The paper's TOFU table: Original, Retrain, then each method / optimizer; forget probability,
    forget ROUGE-L, model utility and Forget Quality, mean and 95% CI over seeds (no attack)."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        code=src(*report_code("tofu_table")),
    output:
        csv=report(
            f"{R}/tables/tofu/{{bench}}.csv",
            caption="../report/tofu_table.rst",
            category="1. Main tables",
            subcategory="{bench}",
        ),
        md=f"{R}/tables/tofu/{{bench}}.md",
    log:
        f"{R}/logs/report_tofu_table/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning tofu-table --table {input.table} --csv {output.csv} --md {output.md} > {log} 2>&1"


rule lmc:
    """Loss on forget and retain data along (1-a) theta_ref + a theta_other, from the reference
    optimizer's solution to every other optimizer's of the same benchmark, method and seed."""
    input:
        models=lambda wc: P.lmc_models(wc.bench, wc.method, wc.seed),
        data=f"{R}/data/{{bench}}",
        code=src("lmc.py", "models.py", "train.py", "data/io.py"),
    output:
        f"{R}/lmc/{{bench}}/{{method}}/seed{{seed}}.csv",
    log:
        f"{R}/logs/lmc/{{bench}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/lmc/{{bench}}/{{method}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        kind=kind,
        models=lambda wc, input: " ".join(
            f"{o}={p}" for o, p in zip(P.lmc_optimizers(wc.bench, wc.method, wc.seed), input.models)
        ),
        meta=lambda wc: P.lmc_meta(wc.bench, wc.method, wc.seed),
        ref=REF_OPT,
        points=REPORT.get("lmc_points", 11),
        max_texts=REPORT.get("lmc_max_texts", 64),
        batch=REPORT.get("lmc_batch_size", 16),
        max_len=config["model"]["max_len"],
        launch=gpu_launcher,  # `unlearning`, after claiming its GPU on a workstation (gpus.smk)
    shell:
        "{params.launch} --threads {threads} lmc --models {params.models} --reference {params.ref}"
        " --data {input.data} --kind {params.kind} --meta {params.meta:q} --points {params.points}"
        " --max-texts {params.max_texts} --batch-size {params.batch} --max-len {params.max_len}"
        " --out {output} > {log} 2>&1"


rule lmc_figure:
    """LMC paths of a benchmark (mean and 95% CI over seeds) and their loss barriers."""
    input:
        paths=lambda wc: [f"{R}/lmc/{wc.bench}/{m}/seed{s}.csv" for m, s in P.lmc_jobs(wc.bench)],
        code=src(*report_code("lmc_plot")),
    output:
        png=report(
            f"{R}/figures/{{bench}}/lmc.png",
            caption="../report/lmc.rst",
            category="4. Linear mode connectivity",
            subcategory="{bench}",
        ),
        svg=f"{R}/figures/{{bench}}/lmc.svg",
        barriers=report(
            f"{R}/lmc/{{bench}}/barriers.csv",
            caption="../report/lmc_barriers.rst",
            category="4. Linear mode connectivity",
            subcategory="{bench}",
        ),
    log:
        f"{R}/logs/lmc_figure/{{bench}}.log",
    conda:
        CONDA_ENV
    threads: 1
    shell:
        "unlearning lmc-figure --inputs {input.paths} --png {output.png} --svg {output.svg}"
        " --barriers {output.barriers} > {log} 2>&1"


if ABLATION:

    rule ablation:
        """Hybrid ablation: forget metrics before/after attacks against the FO:ZO ratio and the
        switching interval N (one benchmark and method, see `ablation:` in the config)."""
        input:
            evals=P.ablation_evals(),
            code=src(*report_code("ablation")),
        output:
            table=report(
                f"{R}/ablation/table.csv", caption="../report/ablation_table.rst", category="5. Hybrid ablation"
            ),
            png=report(f"{R}/ablation/ablation.png", caption="../report/ablation.rst", category="5. Hybrid ablation"),
            svg=f"{R}/ablation/ablation.svg",
        log:
            f"{R}/logs/ablation.log",
        conda:
            CONDA_ENV
        threads: 1
        params:
            optimizers=as_json(P.hybrid_entries()),
            auc=P.auc_retrain_arg(ABLATION["benchmark"]),
        shell:
            "unlearning ablation --inputs {input.evals} --optimizers {params.optimizers:q} {params.auc}"
            " --table {output.table} --png {output.png} --svg {output.svg} > {log} 2>&1"


rule report_findings:
    """results/README/: the README's figures, findings.md (summary tables and the paper's findings,
    each judged by paired tests over the seeds, docs/reference/statistics.md), verdicts.csv and comparisons.csv
    (README's generated blocks read them), all generated from the tables."""
    input:
        tables=[f"{R}/tables/{b}.csv" for b in config["benchmarks"]],
        barriers=[f"{R}/lmc/{b}/barriers.csv" for b in config["benchmarks"]],
        ablation=[f"{R}/ablation/table.csv"] if ABLATION else [],
        figures=[p for p, _ in P.readme_figures()],
        provenance=f"{R}/tables/provenance.csv",
        grade_distance=f"{R}/tables/grade_distance.csv",
        calibration=P.calibration_table(),
        code=src(*report_code("findings_report")),
    output:
        md=report(f"{README_DIR}/findings.md", caption="../report/findings.rst", category="0. Findings"),
        verdicts=f"{README_DIR}/verdicts.csv",
        comparisons=f"{README_DIR}/comparisons.csv",
        figures=[f"{README_DIR}/{n}" for _, n in P.readme_figures()],
    log:
        f"{R}/logs/report_findings.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        optimizers=as_json(config["optimizers"]),
        methods=as_json(config["methods"]),
        ref=REF_OPT,
        ablation=f"--ablation {R}/ablation/table.csv" if ABLATION else "",
        names=" ".join(n for _, n in P.readme_figures()),
        relearn_report=P.relearn_report_arg(),
        calibration=lambda wc, input: f"--calibration {input.calibration}" if input.calibration else "",
        stats=as_json(REPORT["stats"]),
    shell:
        "unlearning findings --tables {input.tables} --barriers {input.barriers} {params.ablation}"
        " --optimizers {params.optimizers:q} --methods {params.methods:q} --reference {params.ref}"
        " --figures {input.figures} --figure-names {params.names} --provenance {input.provenance}"
        " --grade-distance {input.grade_distance} {params.relearn_report} {params.calibration}"
        " --stats {params.stats:q} --verdicts-csv {output.verdicts} --comparisons-csv {output.comparisons}"
        " --out {output.md} > {log} 2>&1"
