"""``python -m unlearning``: see unlearning.cli (and unlearning.forkserver for UNLEARNING_FORKSERVER)."""

import os
import sys

_server = os.environ.get("UNLEARNING_FORKSERVER")
if _server:
    from .forkserver import delegate

    code = delegate(_server, sys.argv[1:])
    if code is not None:
        sys.exit(code)

from .cli import main  # noqa: E402  (no server, or none answered: run the stage here)

sys.exit(main())
