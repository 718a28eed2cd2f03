"""Measurements kept with the workflow. The tools a user runs are `unlearning` subcommands
(src/unlearning/bench/); benchmarks/investigations/ holds the one-off measurements behind numbers the
docs quote, and paper_scale_check.json the stored CPU check of the paper-scale cost model."""
