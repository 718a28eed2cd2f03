"""Measurements quoted in docs/: each a JSON file under docs/measurements/data/ that names the command
that made it, the commit, the CPU and whether the machine was shared, with the command's JSON output;
and the renderers of the docs' generated blocks that quote them.

    python scripts/record_measurement.py NAME [--shared] [--note TEXT] -- python benchmarks/investigations/X.py ...

writes ``docs/measurements/data/NAME.json`` (``record``). The blocks here (``RENDERERS``) are rewritten
by scripts/update_readme_results.py with the results blocks and checked by its ``--check``; a block
whose file is missing says so and names the command that makes it. The paper-config blocks are
computed from configs/paper-*.yaml by the cost model (unlearning.bench.paper_scale), not measured.
"""

from __future__ import annotations

import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

DATA = Path("docs") / "measurements" / "data"  # relative to the repository root
COMMAND_CHARS = 200  # a longer command is shown cut, with " ..." (the file holds all of it)


def parse_output(text: str) -> list[dict]:
    """A benchmark's stdout as a list of objects: one indented JSON object, or one object per line
    (lines that are not JSON, e.g. a library's warning, are skipped)."""
    text = text.strip()
    try:
        whole = json.loads(text)
        return whole if isinstance(whole, list) else [whole]
    except json.JSONDecodeError:
        pass
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def code_commit(root: Path) -> str:
    """The repository's commit (short), with ``+changes`` when the work tree's code differs from it
    (README, docs/ and results/README/, which the scripts write themselves, do not count)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        # the files this script writes itself do not count as changes to the code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results/README",
                                ":!README.md", ":!docs"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def record(root: Path, name: str, argv: list[str], shared: bool = False, note: str = "") -> Path:
    """Run ``argv`` in ``root`` and write its JSON output with the facts a reader needs (command,
    commit, CPU, shared machine, date) to ``root/DATA/name.json``; the file written. Raises
    RuntimeError when the command fails or prints no JSON."""
    from .summaries import cpu_model

    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    output = parse_output(proc.stdout)
    if not output:
        raise RuntimeError(f"{shlex.join(argv)} printed no JSON")
    shown = [a.replace(f"{root.resolve()}/", "") for a in argv]
    if shown and Path(shown[0]).name.startswith("python"):
        shown[0] = "python"
    facts = {"name": name, "command": shlex.join(shown), "commit": code_commit(root), "cpu": cpu_model(),
             "shared": shared, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
             "note": note, "output": output}
    path = root / DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load(root: Path, name: str) -> dict | None:
    """The recorded measurement ``name``, or None when it was never recorded."""
    path = root / DATA / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def provenance(m: dict, timed: bool = True) -> str:
    """Where a measurement comes from, in one sentence part: file, command, commit, date, CPU and
    whether other work shared the machine (``timed``: the block quotes times, then upper bounds)."""
    if m.get("shared"):
        load_note = "a shared machine: times are upper bounds" if timed else "a shared machine"
    else:
        load_note = "nothing else running"
    note = f"; {m['note']}" if m.get("note") else ""
    command = m["command"]
    if len(command) > COMMAND_CHARS:  # long --spec JSON: the whole command is in the file
        words = shlex.split(command)
        while len(shlex.join(words)) > COMMAND_CHARS and len(words) > 1:
            words.pop()
        command = shlex.join(words) + " ..."
    return (f"`{DATA / m['name']}.json` (`{command}`; commit {m['commit']}, {m['date']}, {m['cpu']}, "
            f"{load_note}{note})")


def _missing(names: list[str], command: str) -> str:
    files = ", ".join(f"`{DATA / name}.json`" for name in names)
    return f"Not recorded yet ({files} missing): `python scripts/record_measurement.py NAME -- {command}`."


def _pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage; two significant digits below 1% (``digits`` decimals above)."""
    if x is None:
        return ""
    return f"{100 * x:.2g}%" if 100 * abs(x) < 1 else f"{100 * x:.{digits}f}%"


# -------------------------------------------------------------------------------- Sophia's clipped share
SOPHIA_RUNS = [("sophia_clipping_graddiff_after", "GradDiff", "after update (paper configs)"),
               ("sophia_clipping_graddiff_before", "GradDiff", "before update (default)"),
               ("sophia_clipping_npo_after", "NPO", "after update (paper configs)")]


def sophia_block(root: Path) -> str:
    """docs/reference/optimizers.md: Sophia's unclipped share and its bit-identity with signAdam, per
    method, refresh order and rho, from benchmarks/investigations/sophia_clipping.py."""
    runs = [(load(root, n), method, refresh) for n, method, refresh in SOPHIA_RUNS]
    if any(m is None for m, _, _ in runs):
        return _missing([n for n, _, _ in SOPHIA_RUNS], "python benchmarks/investigations/sophia_clipping.py ...")
    lines = ["From " + "; ".join(provenance(m, timed=False) for m, _, _ in runs) + ".",
             "", "| method | refresh | rho | unclipped (steps with a Hessian) | bit-identical to signAdam |",
              "|---|---|---:|---:|---:|"]
    for m, method, refresh in runs:
        for row in m["output"]:
            if "rho" in row:
                lines.append(f"| {method} | {refresh} | {row['rho']:g} | {_pct(row['unclipped_mean_with_h'])} "
                             f"| {_pct(row['bit_identical_to_signadam'])} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- chunking
def chunking_block(root: Path) -> str:
    """docs/reference/testbed.md: truncate against concat on the default study's MUSE data and target
    (the unlearning's wall seconds only when nothing else ran: on a shared machine they measure the load)."""
    m = load(root, "chunking")
    if m is None:
        return _missing(["chunking"], "python benchmarks/investigations/chunking.py")
    timed = not m.get("shared")
    lines = [f"From {provenance(m, timed=False)}" + ("." if timed else "; its wall times are left out."), "",
             "| chunking | forget examples (tokens) | retain examples (tokens) | steps per epoch | forget tokens "
             "per step | forget NLL after | KnowMem_f / KnowMem_r after |" + (" seconds |" if timed else ""),
             "|---|---:|---:|---:|---:|---:|---|" + ("---:|" if timed else "")]
    for r in m["output"]:
        if r.get("model") == "target":
            lines.append(f"| target (before) | | | | | {r['forget_nll']:.2f} | {r['knowmem_f']:.1f} / "
                         f"{r['knowmem_r']:.1f} |" + (" |" if timed else ""))
        elif "chunking" in r:
            lines.append(f"| {r['chunking']} | {r['forget_examples']} ({r['forget_tokens']}) | {r['retain_examples']} "
                         f"({r['retain_tokens']}) | {r['steps_per_epoch']} | {r['forget_tokens_per_step']:.0f} | "
                         f"{r['forget_nll']:.1f} | {r['knowmem_f']:.1f} / {r['knowmem_r']:.1f} |"
                         + (f" {r['seconds']:.1f} |" if timed else ""))
    return "\n".join(lines)


# -------------------------------------------------------------------------------- KnowMem's trailing space
def knowmem_space_block(root: Path) -> str:
    """docs/reference/testbed.md: KnowMem with and without MUSE's trailing space, Llama-style tokenizer."""
    m = load(root, "knowmem_space")
    if m is None:
        return _missing(["knowmem_space"], "python benchmarks/investigations/knowmem_space.py")
    r = next(o for o in m["output"] if "knowmem_f_space" in o)
    ends = next((o["prompt_ends"] for o in m["output"] if "prompt_ends" in o), {})
    end_text = "; ".join(f"{k} `{v!r}`" for k, v in ends.items())  # repr: a newline token stays visible
    return "\n".join([f"From {provenance(m, timed=False)}: a {r['vocab']}-piece Llama-style tokenizer, "
                      f"{r['steps']} training steps (final loss {r['final_loss']:.3f}). The prompt's last tokens: "
                      f"{end_text}.", "",
                      "| prompt end | KnowMem_f | KnowMem_r |", "|---|---:|---:|",
                      f"| \"Answer: \" (MUSE's) | {r['knowmem_f_space']:.1f} | {r['knowmem_r_space']:.1f} |",
                      f"| \"Answer:\" (`knowmem_answer_space: false`) | {r['knowmem_f_nospace']:.1f} | "
                      f"{r['knowmem_r_nospace']:.1f} |"])


# -------------------------------------------------------------------------------- step time per optimizer
def optimizers_block(root: Path) -> str:
    """docs/measurements/speed-and-memory.md: one unlearning step per optimizer (time, added memory) and
    the zeroth-order ratios, from benchmarks/investigations/optimizers.py."""
    m = load(root, "optimizers")
    if m is None:
        return _missing(["optimizers"], "python benchmarks/investigations/optimizers.py --sizes tiny")
    rows = [r for r in m["output"] if "name" in r and "step_s" in r]
    sums = [r for r in m["output"] if "zo_time_ratio" in r or "zo_mem_ratio" in r]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    def label(size: str) -> str:
        r = next(x for x in rows if x["size"] == size)
        batch = r.get("batch") or ["?", "?"]
        return f"{size} ({r['params'] / 1e6:.2f}M, batch {batch[0]}×{batch[1]})" if "params" in r else size

    head = "| optimizer | grade | " + " | ".join(f"{label(s)}: s/step | MB" for s in sizes) + " |"
    lines = [f"From {provenance(m)}.", "", head, "|---|---|" + "---:|---:|" * len(sizes)]
    for name in dict.fromkeys(r["name"] for r in rows):
        cells, grade = [], ""
        for s in sizes:
            r = next((x for x in rows if x["name"] == name and x["size"] == s), None)
            grade = grade or (r or {}).get("grade", "")
            cells += ["", ""] if r is None else [f"{r['step_s']:.3g}", f"{r['peak_mem_bytes'] / 2**20:.0f}"]
        lines.append(f"| {name} | {grade} | " + " | ".join(cells) + " |")
    if sums:
        lines += ["", "| size | `zo_mem_ratio` (goal ≤ 1.05) | `zo_time_ratio` (goal ≤ 1.3) | by direction | "
                  "`hybrid_time_ratio` (≈ 1) |", "|---|---:|---:|---|---:|"]
        for r in sums:
            by = ", ".join(f"{k} {v:.2f}" for k, v in (r.get("zo_time_ratio_by_direction") or {}).items())
            lines.append(f"| {r.get('size', '')} | {r.get('zo_mem_ratio', float('nan')):.3f} | "
                         f"{r.get('zo_time_ratio', float('nan')):.2f} | {by} | "
                         f"{r.get('hybrid_time_ratio', float('nan')):.2f} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- what each grade does
def grade_behaviour_block(root: Path) -> str:
    """docs/reference/optimizers.md: Sophia's unclipped share per rho and Hessian scale with its distance
    to signAdam, and AdaZO's move per step, on the default study's MUSE target
    (benchmarks/investigations/grade_behaviour.py with extra ``--spec`` entries)."""
    m = load(root, "grade_behaviour")
    if m is None:
        return _missing(["grade_behaviour"], "python benchmarks/investigations/grade_behaviour.py --spec ...")
    entries = {r["entry"]: r for r in m["output"] if "entry" in r}
    pairs = {tuple(r["pair"]): r for r in m["output"] if "pair" in r}

    def to_signadam(name: str) -> dict:
        return pairs.get((name, "signadam")) or pairs.get(("signadam", name)) or {}

    lines = [f"From {provenance(m, timed=False)}. Sophia: the share of coordinates not clipped per step (mean, "
             "lowest and highest over the steps) and how far its unlearned weights are from signAdam's "
             "(||w_sophia - w_signadam|| / ||w_sophia - w_target||, and the share of weights bit-identical).", "",
             "| entry | rho | Hessian scale | unclipped: mean (min-max) | apart from signAdam | bit-identical |",
             "|---|---:|---|---|---:|---:|"]
    for name, r in entries.items():
        if r["spec"].get("type") != "sophia" or "unclipped" not in r:
            continue
        u, d = r["unclipped"], to_signadam(name)
        lines.append(f"| {name} | {r['spec']['rho']:g} | {r['spec'].get('hess_scale')} | {_pct(u['mean'])} "
                     f"({_pct(u['min'])}-{_pct(u['max'])}) | {_pct(d.get('rel_distance'))} | "
                     f"{_pct(d.get('identical_share'))} |")
    lines += ["", "AdaZO: each weight's mean move per step in units of the learning rate.", "",
              "| entry | lr | bias correction | step 1 | steps 2-5 | mean over the steps (min-max) |",
              "|---|---:|---|---:|---|---|"]
    for name, r in entries.items():
        if "move_over_lr" not in r:
            continue
        mv = r["move_over_lr"]
        f5 = mv["first5"]
        lines.append(f"| {name} | {r['spec']['lr']:g} | {'yes' if r['spec'].get('bias_correction', True) else 'no'} "
                     f"| {f5[0]:.2f} | {min(f5[1:]):.2f}-{max(f5[1:]):.2f} | {mv['mean']:.2f} "
                     f"({mv['min']:.2f}-{mv['max']:.2f}) |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- checkpointing, host memory
def checkpointing_block(root: Path) -> str:
    """docs/measurements/speed-and-memory.md: activation checkpointing's memory and CPU time of a step."""
    m = load(root, "checkpointing")
    if m is None:
        return _missing(["checkpointing"], "python benchmarks/investigations/checkpointing.py")
    r = m["output"][-1]
    sh = r["shape"]
    return (f"From {provenance(m)}: {r['parameters'] / 1e6:.1f}M weights (hidden {sh['hidden']}, {sh['layers']} "
            f"layers), batch {sh['batch']} x {sh['tokens']} tokens, one thread, Adam: activations and gradients "
            f"of a step {r['activation_MiB']['off']} MiB without checkpointing, {r['activation_MiB']['on']} MiB "
            f"with; CPU time per step {r['step_cpu_seconds']['off']} s and {r['step_cpu_seconds']['on']} s "
            f"(x{r['time_ratio']:.2f}); {'identical' if r['same_weights'] else 'DIFFERENT'} weights.")


def host_memory_block(root: Path) -> str:
    """docs/guides/clusters.md and speed-and-memory.md: a sharded job's host memory while loading, the
    way the stage loads now (``new``) against before issue 23 (``old``), in models."""
    m = load(root, "host_memory")
    if m is None:
        return _missing(["host_memory"], "python benchmarks/investigations/host_memory.py")
    r = m["output"][-1]
    lines = [f"From {provenance(m, timed=False)}: {r['ranks']} gloo CPU ranks, {r['parameters'] / 1e6:.1f}M weights; "
             "resident memory each rank adds while loading the model and the NPO reference, in models (fp32); "
             "*host copies*: the total less the two models' FSDP2 shards, which a GPU node holds on its GPUs.", "",
             "| loading | " + " | ".join(f"rank {i}" for i in range(r["ranks"])) + " | host copies |",
             "|---|" + "---:|" * (r["ranks"] + 1)]
    label = {"new": "rank 0 reads, broadcasts into shards (now)", "old": "every rank loads and copies (before)"}
    for way in ("new", "old"):
        if way in r:
            w = r[way]
            lines.append(f"| {label[way]} | " + " | ".join(f"{x:.2f}" for x in w["per_rank_increment_models"])
                         + f" | {w['host_copies']:.2f} |")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Path], str]] = {"sophia-clipping": sophia_block, "chunking": chunking_block,
                                                "knowmem-space": knowmem_space_block,
                                                "optimizer-steps": optimizers_block,
                                                "checkpointing": checkpointing_block,
                                                "host-memory": host_memory_block,
                                                "grade-behaviour": grade_behaviour_block}


def main(argv: list[str] | None = None) -> int:
    """``record_measurement.py NAME [--shared] [--note TEXT] -- COMMAND ...``."""
    import argparse

    p = argparse.ArgumentParser(description="Run a benchmark command and record its JSON under docs/measurements/data/")
    p.add_argument("name", help="the file's name (docs/measurements/data/NAME.json)")
    p.add_argument("--shared", action="store_true", help="other work shared the machine while measuring")
    p.add_argument("--note", default="", help="what a reader needs besides the command (e.g. which study's results)")
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        p.error("give the command after --")
    cut = argv.index("--")
    a, cmd = p.parse_args(argv[:cut]), argv[cut + 1:]
    if not cmd:
        p.error("give the command after --")
    root = Path(__file__).resolve().parents[3]
    try:
        print(record(root, a.name, cmd, a.shared, a.note).relative_to(root))
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
