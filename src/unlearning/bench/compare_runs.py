"""Do two runs of one study agree (e.g. on two CPU float paths)? Their verdicts, and every metric's
means against the 95% intervals; prints one JSON object (or, with --table, the verdicts side by side).

    # the default study twice, once on torch's and oneDNN's AVX2 kernels (as on an AVX2-only CPU), once
    # on the default ones
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/snakemake --cores 2 ...  # in one study folder
    .venv/bin/snakemake --cores 2 ...                             # in another
    unlearning compare-runs --a FOLDER_A/results --b FOLDER_B/results
    unlearning compare-runs --table nominal=DIR calibrated=DIR avx2=DIR   # verdicts side by side

Compares the findings' verdicts (results/README/findings.md) and, for every benchmark, method,
optimizer, attack and metric of the tidy tables, the two runs' means over seeds against their 95%
confidence intervals: ``inside_a`` counts the metrics whose run-B mean lies inside run A's interval
(and ``inside_b`` the converse), ``overlap`` those whose two intervals overlap, also split by whether
the entry's calibration chose the same multipliers in both runs; ``calibration`` counts the choices
(one per entry, or per entry and seed under ``calibration.seeds: each``) that differ. The evaluation
JSON files' recorded CPU capability (``env.torch_cpu_capability``) and oneDNN instruction-set cap
(``env.onednn_max_cpu_isa``, the linear layers' kernels) say which kernels each run used.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pandas as pd

from ..commands import Stage
from ..report.stats import summarise
from . import harness

_VERDICT = re.compile(r"^\| (\w+) \| (.+?) \| \*\*(.+?)\*\* \| (.+?) \|$")
KEYS = ["benchmark", "method", "optimizer", "attack", "metric"]


def verdicts(results: Path) -> dict[str, dict]:
    """Finding id -> verdict and comparison counts (the primary outcomes), from
    ``results/README/verdicts.csv``, or from ``findings.md``'s table where a run predates it."""
    table = results / "README" / "verdicts.csv"
    if table.exists():
        return {r.id: {"verdict": r.verdict, "comparisons": r.outcomes} for r in pd.read_csv(table).itertuples()}
    out = {}
    for line in (results / "README" / "findings.md").read_text(encoding="utf-8").splitlines():
        m = _VERDICT.match(line.strip())
        if m:
            out[m.group(1)] = {"verdict": m.group(3), "comparisons": m.group(4)}
    return out


def capabilities(results: Path) -> list[str]:
    """The distinct CPU kernel choices the run's evaluations recorded: torch's capability, and with
    oneDNN linear layers their instruction-set cap (``AVX512 / onednn default``)."""
    caps = set()
    for path in (results / "eval").rglob("*.json"):
        env = json.loads(path.read_text(encoding="utf-8")).get("env", {})
        cap = env.get("torch_cpu_capability", "?")
        if env.get("cpu_linear") == "onednn":
            cap += f" / onednn {env.get('onednn_max_cpu_isa', '?')}"
        caps.add(cap)
    return sorted(caps)


def choices(results: Path) -> dict[tuple, float]:
    """(benchmark, method, optimizer, seed) -> chosen multiplier, from the run's calibration table
    (seed -1 where one choice served every seed); empty without calibration."""
    path = results / "tables" / "calibration.csv"
    if not path.exists():
        return {}
    df = pd.read_csv(path)
    df = df[df.chosen.astype(bool)]
    seed = df["seed"].fillna(-1).astype(int) if "seed" in df.columns else pd.Series(-1, index=df.index)
    return {(r.benchmark, r.method, r.optimizer, int(s)): float(r.scale)
            for r, s in zip(df.itertuples(index=False), seed)}


def choice_agreement(a: Path, b: Path) -> dict:
    """How many calibration choices the two runs share, and the entries where any differs."""
    ca, cb = choices(a), choices(b)
    keys = sorted(set(ca) & set(cb))
    moved = [k for k in keys if ca[k] != cb[k]]
    return {"choices": len(keys), "differing": len(moved),
            "entries_differing": sorted({"/".join(k[:3]) for k in moved}),
            "differing_choices": [{"entry": "/".join(k[:3]), "seed": k[3], "a": ca[k], "b": cb[k]} for k in moved]}


def _summary(df: pd.DataFrame) -> dict:
    width = df[["ci95_a", "ci95_b"]].fillna(0.0)
    return {
        "metrics": int(len(df)),
        "inside_a": int((df["diff"].abs() <= width.ci95_a).sum()),
        "inside_b": int((df["diff"].abs() <= width.ci95_b).sum()),
        "overlap": int((df["diff"].abs() <= width.ci95_a + width.ci95_b).sum()),
    }


def metric_agreement(a: Path, b: Path, moved: set[str] = frozenset()) -> dict:
    """Per-metric means and intervals of the two runs' tidy tables, and how often they agree (also
    split by whether the entry, ``bench/method/optimizer``, is one of ``moved``: its calibration chose
    differently in the two runs)."""
    rows = []
    for table in sorted((a / "tables").glob("*.csv")):
        other = b / "tables" / table.name
        df_a = pd.read_csv(table)
        if not {*KEYS, "value"} <= set(df_a.columns) or not other.exists():  # the benchmarks' tidy tables only
            continue
        sa = summarise(df_a, KEYS).set_index(KEYS)
        sb = summarise(pd.read_csv(other), KEYS).set_index(KEYS)
        for key in sa.index.intersection(sb.index):
            ma, ha, mb, hb = sa.loc[key, "mean"], sa.loc[key, "ci95"], sb.loc[key, "mean"], sb.loc[key, "ci95"]
            rows.append({**dict(zip(KEYS, key)), "mean_a": ma, "ci95_a": ha, "mean_b": mb, "ci95_b": hb,
                         "diff": mb - ma})
    df = pd.DataFrame(rows)
    if df.empty:
        return {"metrics": 0}
    width = df[["ci95_a", "ci95_b"]].fillna(0.0)
    worst = df.assign(excess=df["diff"].abs() - (width.ci95_a + width.ci95_b)).sort_values("excess")
    outside = worst[worst.excess > 0]
    entry = df.benchmark + "/" + df.method + "/" + df.optimizer
    split = ({"same_choices": _summary(df[~entry.isin(moved)]), "choice_differs": _summary(df[entry.isin(moved)])}
             if moved else {})
    return {
        **_summary(df),
        **split,
        "identical": int((df["diff"] == 0).sum()),
        "largest_abs_diff": float(df["diff"].abs().max()),
        "outside_both_intervals": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in outside.tail(20).to_dict("records")
        ],
    }


def valid_interval_rates(n_seeds: int, draws: int = 200_000, seed: int = 0) -> dict:
    """What two runs agree on when each interval is exactly what it claims: for two independent
    samples of ``n_seeds`` normal values, how often one mean lies inside the other's 95% t-interval
    (``inside``; 0.907 for 3 seeds) and how often the two intervals overlap (``overlap``; 0.995).
    The measured shares are read against these, not against 100%."""
    import numpy as np
    from scipy import stats

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(2, draws, n_seeds))
    t = stats.t.ppf(0.975, n_seeds - 1) / np.sqrt(n_seeds)
    hx, hy = t * x.std(1, ddof=1), t * y.std(1, ddof=1)
    d = np.abs(x.mean(1) - y.mean(1))
    return {"n_seeds": n_seeds, "inside": round(float((d <= hx).mean()), 3),
            "overlap": round(float((d <= hx + hy).mean()), 3)}


def compare(a: Path, b: Path) -> dict:
    va, vb = verdicts(a), verdicts(b)
    calibration = choice_agreement(a, b)
    agree = {k: va[k]["verdict"] == vb.get(k, {}).get("verdict") for k in va}
    return {
        "a": str(a), "b": str(b),
        "cpu_capability": {"a": capabilities(a), "b": capabilities(b)},
        "verdicts": {k: {"a": va[k], "b": vb.get(k)} for k in va},
        "verdicts_agree": all(agree.values()) and set(va) == set(vb),
        "verdicts_differing": sorted(k for k, ok in agree.items() if not ok),
        "calibration": calibration,
        "per_metric": metric_agreement(a, b, set(calibration["entries_differing"])),
        "valid_interval_rates": valid_interval_rates(seeds(a)),
    }


def seeds(results: Path) -> int:
    """The number of seeds of the run's tidy tables (the most of any benchmark)."""
    tables = [t for t in (results / "tables").glob("*.csv") if "seed" in pd.read_csv(t, nrows=0).columns]
    return max((pd.read_csv(t, usecols=["seed"]).seed.nunique() for t in tables), default=1)


def verdict_table(runs: dict[str, Path]) -> str:
    """Markdown: one row per finding, one verdict column per labelled run."""
    found = {label: verdicts(path) for label, path in runs.items()}
    ids = list(next(iter(found.values())))
    lines = ["| finding | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for i in ids:
        lines.append(f"| {i} | " + " | ".join(found[label].get(i, {}).get("verdict", "–") for label in runs) + " |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``unlearning compare-runs``."""
    p.add_argument("--a", type=Path, help="results folder of the first run")
    p.add_argument("--b", type=Path, help="results folder of the second run")
    p.add_argument("--table", nargs="+", metavar="LABEL=RESULTS",
                   help="print the findings' verdicts of these runs side by side (markdown) instead")


def report(a: argparse.Namespace) -> None:
    """Print the comparison of ``--a`` and ``--b`` (JSON), or ``--table``'s verdicts (markdown)."""
    if a.table:
        print(verdict_table({k: Path(v) for k, _, v in (t.rpartition("=") for t in a.table)}))
        return
    if not (a.a and a.b):
        raise ValueError("give --a and --b, or --table")
    harness.emit(compare(a.a, a.b), indent=2, default=float)


STAGE = Stage(add_arguments, report, needs_torch=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m unlearning.bench.compare_runs``: the same as ``unlearning compare-runs``."""
    p = harness.parser(__doc__)
    add_arguments(p)
    a = p.parse_args(argv)
    if not (a.table or (a.a and a.b)):
        p.error("give --a and --b, or --table")
    report(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
