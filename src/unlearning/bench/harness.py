"""What every benchmark shares: its argument parser, its JSON output, the device it measures on, a
timer and the /proc memory readers.

A benchmark prints JSON on stdout, either one object per line (``emit(obj)``: streamed results, one
per measurement) or one indented object (``emit(obj, indent=1)``: a summary); ``out=`` also writes
that object to a file. Its ``main(argv)`` parses ``argv`` (``None``: the command line), so that it can
be called in-process, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def parser(doc: str | None, *, full: bool = True) -> argparse.ArgumentParser:
    """A benchmark's parser, described by its module docstring (``full``: the whole docstring with its
    usage lines, kept as written; otherwise its first line)."""
    doc = doc or ""
    if full:
        return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)


def add_study(p: argparse.ArgumentParser, root: Path) -> None:
    """``--configfile``, ``--results``, ``--bench``, ``--method``: which finished study (under the
    repository ``root``) and which benchmark and method of it a script reads."""
    p.add_argument("--configfile", default=str(root / "config.yaml"))
    p.add_argument("--results", default=str(root / "results"))
    p.add_argument("--bench", default="muse")
    p.add_argument("--method", default="graddiff")


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``: where to measure (``device`` resolves the default)."""
    p.add_argument("--device", default=None, help="cuda or cpu (default: CUDA when present)")


def device(name: str | None = None):
    """The torch device to measure on: ``name`` when given, else the workflow's own choice
    (models.device: CUDA when present, else the CPU; ``UNLEARNING_DEVICE=cpu`` forces the CPU)."""
    import torch

    if name:
        return torch.device(name)
    from ..models import device as workflow_device

    return workflow_device()


def emit(obj: Any, *, indent: int | None = None, out: str | Path | None = None, **dumps: Any) -> str:
    """Print ``obj`` as JSON on stdout (flushed: a long run shows each result as it comes) and, with
    ``out``, write the same JSON to that file; returns the text. ``dumps``: json.dumps options."""
    text = json.dumps(obj, indent=indent, **dumps)
    print(text, flush=True)
    if out is not None:
        Path(out).write_text(text + "\n", encoding="utf-8")
    return text


@contextmanager
def timer(clock=time.perf_counter) -> Iterator[dict]:
    """``with timer() as t: ...`` then ``t["s"]``: the seconds the block took (``clock``: e.g.
    time.process_time for CPU seconds, which other processes' load leaves alone)."""
    t: dict = {}
    t0 = clock()
    try:
        yield t
    finally:
        t["s"] = clock() - t0


def rss_kb(field: str) -> int:
    """A /proc/self/status memory field (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_bytes() -> int:
    """This process's resident memory now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
