#!/usr/bin/env bash
# Snakemake runs this once in the env it creates from unlearning.yaml (--sdm conda), with the env
# active: it installs this project's package, editable and without dependencies (unlearning.yaml
# lists them), so that the rules' `unlearning STAGE ...` command exists there and runs the checkout's
# code. workflow/rules/common.smk sets UNLEARNING_CHECKOUT to the checkout whose package Snakemake
# imported. Snakemake names an env by the content of its files, not by the checkout: with a
# --conda-prefix shared between checkouts, an env runs the code of the checkout that created it.
set -euo pipefail
python -m pip install --no-deps --editable "${UNLEARNING_CHECKOUT:?set by workflow/rules/common.smk under --sdm conda}"
