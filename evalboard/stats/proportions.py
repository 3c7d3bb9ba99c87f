"""Proportions with score intervals, and the difference of two independent proportions.

Every rate evalboard shows (fail rate of a round, a judge's TPR/TNR, a mode's share) is k
successes out of n and comes with a Wilson score interval. Wilson is used instead of the
textbook Wald interval ``p +- z sqrt(p(1-p)/n)`` because Wald collapses to a zero-width interval at
k = 0 or k = n and covers far less than its nominal level for small n; Wilson stays inside
[0, 1] and keeps close to nominal coverage down to n of about 10.

What these intervals account for: binomial sampling of the n labelled items, assumed to be an
independent random sample from the population you care about. What they do not account for:
label errors, annotators who disagree, traces that are not a random sample (e.g. only the
traces a user flagged), or drift between the sample and later traffic.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from scipy.stats import norm


def z_for(confidence: float) -> float:
    """Two-sided normal quantile: z such that P(-z < Z < z) = confidence."""
    if not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be a number strictly between 0 and 1, got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def check_count(name: str, value: object, *, at_most: int | None = None, at_most_name: str = "") -> int:
    """Return `value` as an int after checking it is a whole number >= 0 (and <= at_most).

    Accepts Python and numpy integers and integral floats (3.0); rejects bools, 2.5, "3", None.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    try:
        as_int = operator.index(value)  # int and numpy integers
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            as_int = int(value)
        else:
            raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if as_int < 0:
        raise ValueError(f"{name} must be >= 0, got {as_int}")
    if at_most is not None and as_int > at_most:
        raise ValueError(f"{name} ({as_int}) cannot exceed {at_most_name} ({at_most})")
    return as_int


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With p = k/n and z the two-sided normal quantile, the interval is the set of true values
    pi for which the score test |p - pi| <= z sqrt(pi(1-pi)/n) does not reject:

        centre    = (p + z^2/(2n)) / (1 + z^2/n)
        half      = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4n^2))
        interval  = (centre - half, centre + half)

    n = 0 carries no information and returns (0.0, 1.0). Examples: 8/10 -> (0.490, 0.943),
    0/10 -> (0.0, 0.278).
    """
    n = check_count("n", n)
    k = check_count("successes", successes, at_most=n, at_most_name="n")
    z = z_for(confidence)
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At k = 0 (k = n) the bound is exactly 0 (1); round-off must not push it past.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Proportion:
    """k out of n with its Wilson interval. `p` is NaN when n = 0 (nothing observed)."""

    k: int
    n: int
    p: float
    low: float
    high: float


def proportion(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """k/n with its Wilson score interval (see `wilson_interval`)."""
    low, high = wilson_interval(k, n, confidence)
    n_int, k_int = check_count("n", n), check_count("k", k)
    return Proportion(k=k_int, n=n_int, p=k_int / n_int if n_int else math.nan, low=low, high=high)


@dataclass(frozen=True)
class Difference:
    """p1 - p2 with its interval; `low`/`high` lie in [-1, 1]."""

    diff: float
    low: float
    high: float
    first: Proportion
    second: Proportion


def diff_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> Difference:
    """Interval for p1 - p2 of two independent proportions (Newcombe's hybrid score method).

    Built from the two Wilson intervals (l1, u1) and (l2, u2):

        d     = p1 - p2
        low   = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
        high  = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)

    Like Wilson it behaves well at 0 or n successes, where the Wald difference interval
    collapses. Used to compare rounds: the two samples must be independent (different traces);
    for the same traces labelled twice use a paired method instead. Both n must be > 0.
    """
    if check_count("n1", n1) == 0 or check_count("n2", n2) == 0:
        raise ValueError(f"diff_interval needs n1 > 0 and n2 > 0, got n1={n1}, n2={n2}")
    a = proportion(k1, n1, confidence)
    b = proportion(k2, n2, confidence)
    d = a.p - b.p
    low = d - math.sqrt((a.p - a.low) ** 2 + (b.high - b.p) ** 2)
    high = d + math.sqrt((a.high - a.p) ** 2 + (b.p - b.low) ** 2)
    return Difference(diff=d, low=max(-1.0, low), high=min(1.0, high), first=a, second=b)
