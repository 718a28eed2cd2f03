# The paper's evidence from the tidy tables: main tables with 95% CIs, quantization and relearning
# views, utility/forgetting trade-off, linear mode connectivity (LMC), the hybrid ablation, and
# results/README/findings.md (each finding judged from the CIs). Every output here is marked for
# `snakemake --report results/report.html` with a caption in workflow/report/.

report: "../report/workflow.rst"

REPORT = config.get("report", {})
REF_OPT = REPORT.get("reference_optimizer", "adam")
README_DIR = f"{R}/README"

# ------------------------------------------------------------------------------------ ablation
# `ablation:` names one benchmark and method and holds extra hybrid entries (FO:ZO ratio, switching
# interval N). They run there only: unlearning.config.validate adds the entries to
# config["optimizers"] (so the wildcard-generic rules find them) and optimizers_for leaves them out.
ABLATION = config.get("ablation") or {}
ABLATION_OPTS = dict(ABLATION.get("optimizers", {}))

def ablation_runs():
    """(bench, method, optimizer, seed) of every ablation-only unlearning run."""
    if not ABLATION:
        return
    for opt in ABLATION_OPTS:
        for seed in ABLATION.get("seeds") or config["seeds"]:
            yield ABLATION["benchmark"], ABLATION["method"], opt, seed


def ablation_evals():
    """Evaluations the ablation table reads: its own runs, the study's hybrid runs of the same
    benchmark and method (the baseline entry), and the reference models (for PrivLeak)."""
    b, m = ABLATION["benchmark"], ABLATION["method"]
    hybrids = [(b, m, o, s) for bb, mm, o, s in runs()
               if (bb, mm) == (b, m) and config["optimizers"][o]["type"] == "hybrid"]
    return [*reference_evals(b),
            *(f"{R}/eval/{rb}/{rm}/{ro}/seed{rs}/{a}.json"
              for rb, rm, ro, rs in [*hybrids, *ablation_runs()] for a in attacks_for_unlearned(config))]


# ------------------------------------------------------------------------------------------- LMC

def lmc_jobs(bench):
    """(method, seed) of the LMC paths of ``bench``: where the reference optimizer ran with others."""
    opts = optimizers_for(config, bench)
    if REF_OPT not in opts or len(opts) < 2:
        return []
    return [(m, s) for m in methods_for(config, bench) for s in config["seeds"]]


def lmc_models(wc):
    return {o: f"{R}/unlearned/{wc.bench}/{wc.method}/{o}/seed{wc.seed}"
            for b, m, o, s in runs() if (b, m, str(s)) == (wc.bench, wc.method, wc.seed)}


def report_figures(bench):
    return [f"{R}/figures/{bench}/{n}.png" for n in ("quantization", "relearning", "tradeoff", "lmc")]


def readme_figures():
    """(source PNG, name in results/README/) of the figures shown in the README."""
    figs = [(p, f"{b}_{Path(p).name}") for b in config["benchmarks"] for p in report_figures(b)]
    if ABLATION:
        figs.append((f"{R}/ablation/ablation.png", "ablation.png"))
    return figs


def report_outputs():
    """Everything this file produces (requested by rule all through all_outputs())."""
    out = []
    for b in config["benchmarks"]:
        out += [f"{R}/tables/main/{b}.csv", f"{R}/tables/main/{b}.md", *report_figures(b),
                f"{R}/lmc/{b}/barriers.csv"]
    if ABLATION:
        out += [f"{R}/ablation/table.csv", f"{R}/ablation/ablation.png"]
    return out + [f"{README_DIR}/findings.md"]


rule report_tables:
    """Main table (CSV + markdown, mean and 95% CI over seeds), quantization and relearning tables."""
    input:
        table=f"{R}/tables/{{bench}}.csv",
        code=src(*report_code("tables")),
    output:
        main=report(f"{R}/tables/main/{{bench}}.csv", caption="../report/main_table.rst",
                    category="1. Main tables", subcategory="{bench}"),
        md=f"{R}/tables/main/{{bench}}.md",
        quant=report(f"{R}/tables/quantization/{{bench}}.csv", caption="../report/quantization_table.rst",
                     category="2. Quantization", subcategory="{bench}"),
        relearn=report(f"{R}/tables/relearning/{{bench}}.csv", caption="../report/relearning_table.rst",
                       category="3. Relearning", subcategory="{bench}"),
    log:
        f"{R}/logs/report_tables/{{bench}}.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} report-tables --table {input.table} --main-csv {output.main} --main-md {output.md}"
        " --quantization {output.quant} --relearning {output.relearn} > {log} 2>&1"


rule lmc:
    """Loss on forget and retain data along (1-a) theta_ref + a theta_other, from the reference
    optimizer's solution to every other optimizer's of the same benchmark, method and seed."""
    input:
        models=lambda wc: list(lmc_models(wc).values()),
        data=f"{R}/data/{{bench}}",
        code=src("lmc.py", "models.py", "train.py", "data/io.py"),
    output:
        f"{R}/lmc/{{bench}}/{{method}}/seed{{seed}}.csv",
    params:
        kind=kind,
        models=lambda wc: " ".join(f"{o}={p}" for o, p in lmc_models(wc).items()),
        meta=lambda wc: as_json({
            "benchmark": wc.bench, "method": wc.method, "seed": int(wc.seed),
            "grades": {o: GRADE[config["optimizers"][o]["type"]] for o in lmc_models(wc)},
        }),
        ref=REF_OPT,
        points=REPORT.get("lmc_points", 11),
        max_texts=REPORT.get("lmc_max_texts", 64),
        batch=REPORT.get("lmc_batch_size", 16),
        max_len=config["model"]["max_len"],
    log:
        f"{R}/logs/lmc/{{bench}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/lmc/{{bench}}/{{method}}/seed{{seed}}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} --threads {threads} lmc --models {params.models} --reference {params.ref}"
        " --data {input.data} --kind {params.kind} --meta {params.meta:q} --points {params.points}"
        " --max-texts {params.max_texts} --batch-size {params.batch} --max-len {params.max_len}"
        " --out {output} > {log} 2>&1"


rule lmc_figure:
    """LMC paths of a benchmark (mean and 95% CI over seeds) and their loss barriers."""
    input:
        paths=lambda wc: [f"{R}/lmc/{wc.bench}/{m}/seed{s}.csv" for m, s in lmc_jobs(wc.bench)],
        code=src(*report_code("lmc_plot")),
    output:
        png=report(f"{R}/figures/{{bench}}/lmc.png", caption="../report/lmc.rst",
                   category="4. Linear mode connectivity", subcategory="{bench}"),
        svg=f"{R}/figures/{{bench}}/lmc.svg",
        barriers=report(f"{R}/lmc/{{bench}}/barriers.csv", caption="../report/lmc_barriers.rst",
                        category="4. Linear mode connectivity", subcategory="{bench}"),
    log:
        f"{R}/logs/lmc_figure/{{bench}}.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} lmc-figure --inputs {input.paths} --png {output.png} --svg {output.svg}"
        " --barriers {output.barriers} > {log} 2>&1"


if ABLATION:

    rule ablation:
        """Hybrid ablation: forget metrics before/after attacks against the FO:ZO ratio and the
        switching interval N (one benchmark and method, see `ablation:` in the config)."""
        input:
            evals=ablation_evals(),
            code=src(*report_code("ablation")),
        output:
            table=report(f"{R}/ablation/table.csv", caption="../report/ablation_table.rst",
                         category="5. Hybrid ablation"),
            png=report(f"{R}/ablation/ablation.png", caption="../report/ablation.rst",
                       category="5. Hybrid ablation"),
            svg=f"{R}/ablation/ablation.svg",
        params:
            optimizers=as_json({o: config["optimizers"][o] for o in config["optimizers"]
                                if config["optimizers"][o]["type"] == "hybrid"}),
            auc=(f"--auc-retrain {config['evaluation']['auc_retrain'][ABLATION['benchmark']]}"
                 if ABLATION["benchmark"] in config["evaluation"]["auc_retrain"] else ""),
        log:
            f"{R}/logs/ablation.log",
        threads: 1
        conda:
            CONDA_ENV
        shell:
            "{PY} ablation --inputs {input.evals} --optimizers {params.optimizers:q} {params.auc}"
            " --table {output.table} --png {output.png} --svg {output.svg} > {log} 2>&1"


rule report_findings:
    """results/README/: the README's figures and findings.md (summary tables and the paper's findings,
    each judged from the 95% CIs), all generated from the tables."""
    input:
        tables=[f"{R}/tables/{b}.csv" for b in config["benchmarks"]],
        barriers=[f"{R}/lmc/{b}/barriers.csv" for b in config["benchmarks"]],
        ablation=[f"{R}/ablation/table.csv"] if ABLATION else [],
        figures=[p for p, _ in readme_figures()],
        code=src(*report_code("findings")),
    output:
        md=report(f"{README_DIR}/findings.md", caption="../report/findings.rst", category="0. Findings"),
        figures=[f"{README_DIR}/{n}" for _, n in readme_figures()],
    params:
        optimizers=as_json(config["optimizers"]),
        methods=as_json(config["methods"]),
        ref=REF_OPT,
        ablation=f"--ablation {R}/ablation/table.csv" if ABLATION else "",
        names=" ".join(n for _, n in readme_figures()),
    log:
        f"{R}/logs/report_findings.log",
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "{PY} findings --tables {input.tables} --barriers {input.barriers} {params.ablation}"
        " --optimizers {params.optimizers:q} --methods {params.methods:q} --reference {params.ref}"
        " --figures {input.figures} --figure-names {params.names} --out {output.md} > {log} 2>&1"
