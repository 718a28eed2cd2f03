"""Mean and confidence interval over seeds; paired tests by seed, Holm's correction, TOST equivalence,
the smallest detectable difference and range-respecting intervals (the verdicts' statistics, see
docs/reference/statistics.md); and, labelled legacy, the old rule that judged a claim from two unpaired
intervals (kept only to show the old verdicts beside the new ones)."""

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
    """Legacy rule (README's "old rule" column only; the verdicts use ``paired``). Judge the claim
    mean(lower) < mean(higher) from the two ``level`` confidence intervals:
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
    """Legacy rule (see ``compare``). Judge a claim of no difference: overlapping intervals =
    reproduces, disjoint = does not."""
    r = compare(a, b, level)
    if r["lower_n"] >= 2 and r["higher_n"] >= 2:
        r["verdict"] = REPRODUCES if r["verdict"] == INCONCLUSIVE else DOES_NOT
    return r


def combine(verdicts: Sequence[str]) -> str:
    """Legacy rule (see ``compare``). One verdict for a finding from its comparisons: reproduces when
    none goes against the claim and at least half reproduce it; does not when none supports it and at
    least half go against it; otherwise inconclusive."""
    n = len(verdicts)
    rep = sum(v == REPRODUCES for v in verdicts)
    no = sum(v == DOES_NOT for v in verdicts)
    if n and not no and 2 * rep >= n:
        return REPRODUCES
    if n and not rep and 2 * no >= n:
        return DOES_NOT
    return INCONCLUSIVE


# ---------------------------------------------------------------------------------------------------
# Paired statistics by seed (issue 25). Each seed is a whole replicate (its own target, retrain model,
# calibration and runs), so two optimizers are compared through their per-seed differences.
#
# The test is the paired t-test, not an exact sign-flip permutation test: with n seeds the sign-flip
# test has 2**n equally likely sign patterns, so its smallest two-sided p-value is 2 / 2**n (0.25 at
# the default study's 3 seeds, 0.0625 at 5): it could never reach 5% below 6 seeds, and no finding
# could ever reproduce. The t-test assumes roughly normal per-seed differences, which 3 seeds cannot
# check; the docs (docs/reference/statistics.md) say so. ``sign_flip_p`` is kept for studies with more seeds.

ALPHA = 0.05
POWER = 0.80
FOR, AGAINST, NEITHER, EQUIVALENT, DIFFERENT = "for", "against", "neither", "equivalent", "different"


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """Paired comparison of ``a`` against ``b`` (same length, one value per seed, same seed order):
    mean difference ``effect`` = mean(a - b), its Student-t ``level`` interval (``lo``, ``hi``; the
    interval the t-test inverts), the differences' SD, n and the two-sided paired t-test's p-value.
    Identical differences (SD 0) give p 0 when their mean is not 0, else 1; one seed gives p NaN."""
    import numpy as np
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    if n == 0:
        return {"effect": math.nan, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 0, "p": math.nan}
    m = float(d.mean())
    if n < 2:
        return {"effect": m, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": n, "p": math.nan}
    sd = float(d.std(ddof=1))
    hw = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
    if sd == 0:
        p = 0.0 if m != 0 else 1.0
    else:  # scipy.stats.ttest_rel's statistic, without its warning for nearly identical differences
        p = float(2 * stats.t.sf(abs(m) / (sd / math.sqrt(n)), n - 1))
    return {"effect": m, "lo": m - hw, "hi": m + hw, "sd": sd, "n": n, "p": p}


def sign_flip_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided sign-flip permutation p-value of the mean paired difference (all 2**n sign
    patterns; scipy.stats.permutation_test with ``permutation_type='samples'``). Its smallest value
    is 2 / 2**n, which is why the verdicts use the paired t-test at the default study's 3 seeds."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    res = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                 alternative="two-sided", n_resamples=math.inf)
    return float(res.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order: sorted
    ascending, the i-th smallest (i = 0..m-1) becomes max over j <= i of min(1, (m - j) p_(j)). NaN
    p-values are left NaN and do not count in m. (scipy has no Holm; false_discovery_control is BH.)"""
    idx = [i for i, p in enumerate(pvalues) if p == p]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """Paired TOST (two one-sided t-tests) p-value for |mean(a - b)| < ``margin``: the larger of the
    p-values of H0: mean <= -margin and H0: mean >= +margin. Below alpha: equivalent within the margin
    (the same as the 1 - 2 alpha interval lying inside (-margin, margin)). NaN with one seed."""
    import numpy as np
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    if n < 2:
        return math.nan
    m, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return 0.0 if abs(m) < margin else 1.0
    se = sd / math.sqrt(n)
    p_low = float(stats.t.sf((m + margin) / se, n - 1))
    p_high = float(stats.t.cdf((m - margin) / se, n - 1))
    return max(p_low, p_high)


def directional(effect: float, p_adjusted: float, sign: int, alpha: float = ALPHA) -> str:
    """A directional comparison's outcome: ``for`` when significant (adjusted p < alpha) with the
    effect's sign equal to the claim's ``sign`` (-1: subject below other, +1: above), ``against``
    when significant the other way, else ``neither``."""
    if not p_adjusted < alpha:
        return NEITHER
    return FOR if effect * sign > 0 else AGAINST


def equivalence(p_tost_adjusted: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    """A no-difference comparison's outcome: ``equivalent`` (TOST significant), ``different`` (the
    paired t-test significant), else ``neither`` (overlapping but not shown equivalent)."""
    if p_tost_adjusted < alpha:
        return EQUIVALENT
    if p_adjusted < alpha:
        return DIFFERENT
    return NEITHER


def detectable(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean paired difference a two-sided paired t-test at ``alpha`` detects with
    probability ``power`` from ``n`` seeds whose differences have SD ``sd`` (noncentral t, exact).
    NaN below 2 seeds or for an unknown SD."""
    from scipy import optimize, stats

    if n < 2 or not sd == sd:
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def short(delta: float) -> float:
        nc = delta * math.sqrt(n) / sd
        wrong_way = stats.nct.cdf(-crit, df, nc)  # negligible where scipy's series gives NaN
        return stats.nct.sf(crit, df, nc) + (wrong_way if wrong_way == wrong_way else 0.0) - power

    hi = sd
    while short(hi) < 0:
        hi *= 2
    return float(optimize.brentq(short, 0.0, hi, xtol=1e-6 * sd))


def seeds_for(target: float, sd: float, alpha: float = ALPHA, power: float = POWER, most: int = 100) -> int | None:
    """The fewest seeds whose paired t-test detects a mean difference of ``target`` (see
    ``detectable``); None when more than ``most`` would be needed or the SD is unknown."""
    if not sd == sd:
        return None
    for n in range(2, most + 1):
        if detectable(sd, n, alpha, power) <= target:
            return n
    return None


# The squeeze that gives a value at the edge of its range a finite logit: values closer than this
# share of the range to an edge are moved to it (0.5 points on a 0-100 metric). Ours.
EDGE = 0.005


def bounded_ci(values: Sequence[float], lo: float = 0.0, hi: float = 100.0,
               level: float = LEVEL) -> tuple[float, float]:
    """A ``level`` interval for the typical value of a metric bounded to [``lo``, ``hi``] that never
    leaves the range: the Student-t interval of the mean of logit((v - lo) / (hi - lo)) (values within
    ``EDGE`` of an edge moved to it), mapped back. Near the middle of the range it is close to the
    ordinary interval; near an edge it is asymmetric, as the range demands, and a bound within ``EDGE``
    of an edge is the edge. (lo, hi) of the interval; NaN with fewer than two values."""
    import numpy as np
    from scipy import stats
    from scipy.special import expit, logit

    v = np.asarray([float(x) for x in values], dtype=float)
    if len(v) < 2:
        return math.nan, math.nan
    if np.ptp(v) == 0:  # identical values: no spread to widen the interval
        return float(v[0]), float(v[0])
    u = np.clip((v - lo) / (hi - lo), EDGE, 1 - EDGE)
    z = logit(u)
    hw = float(stats.t.ppf(0.5 + level / 2, len(z) - 1) * z.std(ddof=1) / math.sqrt(len(z)))
    a, b = float(expit(z.mean() - hw)), float(expit(z.mean() + hw))
    # within EDGE of an edge the squeezed logit cannot tell values apart: a bound there reaches the edge
    a = 0.0 if a <= EDGE * (1 + 1e-9) else a
    b = 1.0 if b >= 1 - EDGE * (1 + 1e-9) else b
    return lo + a * (hi - lo), lo + b * (hi - lo)


def fmt_interval(m: float, a: float, b: float, digits: int = 1) -> str:
    """``mean [lo, hi]`` (the mean alone without an interval; empty for a missing mean)."""
    if m != m:
        return ""
    return f"{m:.{digits}f}" + (f" [{a:.{digits}f}, {b:.{digits}f}]" if a == a and b == b else "")
