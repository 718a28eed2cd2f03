"""Mean and confidence interval over seeds, and claims judged from two confidence intervals."""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

LEVEL = 0.95
REPRODUCES, DOES_NOT, INCONCLUSIVE = "reproduces", "does not", "inconclusive at this scale"


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, int]:
    """Mean, half-width of the ``level`` confidence interval (Student t, n - 1 degrees of freedom)
    and n. With one value there is no interval: the half-width is NaN."""
    import numpy as np
    from scipy import stats

    v = np.asarray([float(x) for x in values], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    m = float(v.mean())
    if n < 2:
        return m, math.nan, n
    hw = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return m, hw, n


def summarise(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean, 95% CI half-width and number of seeds of ``value`` per ``keys``."""
    rows = []
    for k, g in df.groupby(list(keys), sort=False, dropna=False):
        m, h, n = mean_ci(g.value)
        rows.append({**dict(zip(keys, k if isinstance(k, tuple) else (k,))), "mean": m, "ci95": h, "n": n})
    return pd.DataFrame(rows, columns=[*keys, "mean", "ci95", "n"])


def fmt(m: float, h: float, digits: int = 1) -> str:
    """``mean ± half-width`` (the mean alone without an interval; empty for a missing mean)."""
    if m != m:
        return ""
    return f"{m:.{digits}f}" + (f" ± {h:.{digits}f}" if h == h else "")


def compare(lower: Sequence[float], higher: Sequence[float], level: float = LEVEL) -> dict:
    """Judge the claim mean(lower) < mean(higher) from the two ``level`` confidence intervals:
    disjoint in the claim's direction = reproduces, disjoint against it = does not, overlapping (or
    fewer than two seeds on a side, so no interval) = inconclusive."""
    lm, lh, ln = mean_ci(lower, level)
    hm, hh, hn = mean_ci(higher, level)
    if ln < 2 or hn < 2:
        verdict = INCONCLUSIVE
    elif lm + lh < hm - hh:
        verdict = REPRODUCES
    elif lm - lh > hm + hh:
        verdict = DOES_NOT
    else:
        verdict = INCONCLUSIVE
    return {"lower_mean": lm, "lower_ci95": lh, "lower_n": ln, "higher_mean": hm, "higher_ci95": hh,
            "higher_n": hn, "verdict": verdict}


def overlap(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """Judge a claim of no difference: overlapping intervals = reproduces, disjoint = does not."""
    r = compare(a, b, level)
    if r["lower_n"] >= 2 and r["higher_n"] >= 2:
        r["verdict"] = REPRODUCES if r["verdict"] == INCONCLUSIVE else DOES_NOT
    return r


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a finding from its comparisons: reproduces when none goes against the claim and
    at least half reproduce it; does not when none supports it and at least half go against it;
    otherwise inconclusive."""
    n = len(verdicts)
    rep = sum(v == REPRODUCES for v in verdicts)
    no = sum(v == DOES_NOT for v in verdicts)
    if n and not no and 2 * rep >= n:
        return REPRODUCES
    if n and not rep and 2 * no >= n:
        return DOES_NOT
    return INCONCLUSIVE
