"""Small exact statistics for the parity gate: Wilson intervals, the exact McNemar test, power.

Pure Python (``math`` only) so the export side needs no scipy; tests check it against scipy where
scipy happens to be installed.

The paired test is one-sided: the gate asks only "is int8 worse than fp32?". Under the null
hypothesis (int8 exactly as good), each discordant crop is equally likely to be ``b`` (int8 wrong
where fp32 was right) or ``c`` (the reverse), so ``b ~ Binomial(b + c, 1/2)`` and the p-value is
``P(X >= b)``. A better int8 can never fail, and the one-sided test at ``alpha`` has the power of
a two-sided test at ``2 * alpha``.
"""

from __future__ import annotations

import math
from functools import lru_cache

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (95 % by default); (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact at the edges (rounding would otherwise leave 1e-17 off 0 or 1)
    return (0.0 if k == 0 else lo, 1.0 if k == n else hi)


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    lg = math.lgamma
    return lg(n + 1) - lg(k + 1) - lg(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binom_sf(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, exact up to float rounding."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.5 and n <= 1000:  # the McNemar case: exact integer arithmetic
        return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
    terms = [_log_pmf(i, n, p) for i in range(k, n + 1)]
    top = max(terms)
    if top == -math.inf:
        return 0.0
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


@lru_cache(maxsize=65536)
def mcnemar_p(b: int, c: int) -> float:
    """One-sided exact McNemar p-value: P(int8 loses >= b of the b + c discordant crops | no
    difference). 1.0 when there is no discordant crop."""
    return binom_sf(b, b + c, 0.5) if b + c else 1.0


def paired_fails(b: int, c: int, n: int, alpha: float, budget: float, hard: float) -> bool:
    """The gate's rule for one paired figure: the drop ``(b - c) / n`` fails when it is both
    significant (one-sided exact McNemar p < alpha) and larger than ``budget``, or when it is
    larger than the hard cap ``hard`` whatever the p-value."""
    drop = (b - c) / n if n else 0.0
    return drop > hard + 1e-12 or (drop > budget + 1e-12 and mcnemar_p(b, c) < alpha)


def _pmf_table(n: int, p: float, tail: float = 1e-9) -> list[tuple[int, float]]:
    """(k, P(X = k)) for X ~ Binomial(n, p), from 0 until all but ``tail`` of the mass is covered."""
    out, total = [], 0.0
    for k in range(n + 1):
        w = math.exp(_log_pmf(k, n, p))
        out.append((k, w))
        total += w
        if total >= 1 - tail and k >= n * p:
            break
    return out


MAX_PLANNED_CROPS = 1 << 14
# Above this disagreement with fp32 the int8 file is broken, not under-tested: power and the crop
# count that would catch a small drop say nothing then (and cost minutes to compute at large n).
MAX_PLANNING_NOISE = 0.05


@lru_cache(maxsize=4096)
def paired_power(
    n: int, noise: float, drop: float, alpha: float, budget: float, hard: float
) -> float:
    """Probability that the rule of :func:`paired_fails` fails a group of ``n`` crops whose int8
    recall is truly ``drop`` below fp32, with symmetric discordance ``noise`` per side on top
    (b ~ Bin(n, noise + drop), c ~ Bin(n, noise), independent)."""
    if n <= 0:
        return 0.0
    bs = _pmf_table(n, min(1.0, noise + drop))
    cs = _pmf_table(n, noise)
    return sum(
        pb * pc for b, pb in bs for c, pc in cs if paired_fails(b, c, n, alpha, budget, hard)
    )


@lru_cache(maxsize=1024)
def crops_needed(
    noise: float, drop: float, alpha: float, budget: float, hard: float, power: float
) -> int:
    """About how many crops a group needs for the rule to catch a true ``drop`` with probability
    ``power`` (power is saw-toothed in n because the test is discrete: the smallest n found by
    doubling then bisection, a close upper estimate)."""
    lo, hi = 1, 16
    while paired_power(hi, noise, drop, alpha, budget, hard) < power:
        lo, hi = hi, hi * 2
        if (
            hi > MAX_PLANNED_CROPS
        ):  # power costs ~n^1.5 here; beyond this, "more than" is the answer
            return hi
    while hi - lo > max(1, lo // 100):
        mid = (lo + hi) // 2
        if paired_power(mid, noise, drop, alpha, budget, hard) >= power:
            hi = mid
        else:
            lo = mid
    return hi
