#!/usr/bin/env python3
"""Run a benchmark command and record its JSON output under docs/measurements/data/NAME.json, with the
command, commit, CPU and whether the machine was shared (unlearning.report.measurements).

    .venv/bin/python scripts/record_measurement.py chunking --shared -- \
        .venv/bin/python benchmarks/investigations/chunking.py
    .venv/bin/python scripts/update_readme_results.py --render-only   # the docs' blocks from the files
"""

import sys

from unlearning.report.measurements import main

if __name__ == "__main__":
    sys.exit(main())
