"""Optimizer grades and LLM unlearning robustness: library behind the Snakemake study.

Modules are imported lazily by the CLI so that a job pays for torch/transformers only once.
"""

__version__ = "0.1.0"
