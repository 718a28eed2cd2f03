"""Force bitsandbytes' AVX512-BF16 detection in every Python process started with this folder on
PYTHONPATH, so that a whole study or test suite runs as on a CPU with (``on``) or without (``off``) it:

    PYTHONPATH=$PWD/tests/support/bnb_avx512bf16 UNLEARNING_TEST_AVX512BF16=off bash scripts/test.sh

bitsandbytes reads the flag through ``bitsandbytes.functional.has_avx512bf16`` (its 4-bit layers when
built, its CPU kernels when registered), so the function is replaced as soon as that module has run,
before anything imports it by name. Unset or any other value: nothing changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_STATE = os.environ.get("UNLEARNING_TEST_AVX512BF16")


class _ForceFlag(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "bitsandbytes.functional":
            return None
        sys.meta_path.remove(self)  # find the real module, then patch it once it has run
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.has_avx512bf16 = lambda: _STATE == "on"

        spec.loader.exec_module = exec_module
        return spec


if _STATE in ("on", "off"):
    sys.meta_path.insert(0, _ForceFlag())
