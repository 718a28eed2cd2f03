"""``python -m unlearning``: the same as the ``unlearning`` command (unlearning.cli.run)."""

import sys

from .cli import run

sys.exit(run())
