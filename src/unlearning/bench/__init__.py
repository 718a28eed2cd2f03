"""Measurements of the workflow: the shared harness every benchmark uses, and the tools a user runs.

- ``harness``: arguments, JSON output, device choice, timing and memory readers (for these tools and
  for the one-off investigations in benchmarks/investigations/);
- ``study``, ``compare_runs``, ``paper_scale``: the ``unlearning study-time``, ``compare-runs`` and
  ``paper-scale`` commands (commands.STAGES);
- ``llama_style``: a local Llama-2-style tokenizer and snapshot, the stand-in the tests and
  investigations build instead of downloading one.
"""
