"""What every synthetic benchmark generator shares: invented names drawn from a seeded
``random.Random`` and the manifest written once the files validate. The generators (synthetic.py for
MUSE and WMDP, synthetic_tofu.py for TOFU) import it; it imports neither."""

from __future__ import annotations

import json
import random
from pathlib import Path

from .io import validate_benchmark

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "st", "tr", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "x"]


def name(rng: random.Random, syllables: int) -> str:
    """An invented capitalised name of ``syllables`` syllables."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def unique_names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    """``n`` names of more than three letters not in ``taken`` (which receives them)."""
    out: list[str] = []
    while len(out) < n:
        drawn = name(rng, rng.randint(*syllables))
        if drawn not in taken and len(drawn) > 3:
            taken.add(drawn)
            out.append(drawn)
    return out


def finish(out: Path, kind: str, subject: str, seed: int, shape: dict) -> dict[str, int]:
    """Validate the benchmark written in ``out`` and write its manifest.json; returns the split counts."""
    counts = validate_benchmark(out, kind)
    manifest = {"kind": kind, "source": "synthetic", "subject": subject, "seed": seed,
                "shape": shape, "counts": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return counts
