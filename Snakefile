# The study "Downgrade to Upgrade" (arXiv 2510.00761) as a DAG:
# data -> tokenizer -> target/retrain -> [calibration grid -> choice] -> unlearn -> relearn -> evaluate -> tables -> figures/summary.
# Stages live in src/unlearning (the installed command `unlearning STAGE`); rules only wire files together.

from snakemake.utils import min_version

min_version("9.0")


# The default study, unless study files are given with --configfile: each study file is complete,
# so it replaces config.yaml instead of being merged into it (Snakemake's default would merge).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/gpus.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/distance.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/forkserver.smk"


rule all:
    default_target: True
    input:
        P.all_outputs(),


# Before any job: no rule asks for more GPUs than the machine has (workflow/rules/gpus.smk).
check_machine_gpus()
