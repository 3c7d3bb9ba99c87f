"""Bias-corrected prevalence of a failure mode from an imperfect judge, with an honest interval.

Setting. A judge flags k of m production traces as failing. On a human-labelled test split the
same judge caught tp of n1 human-failed traces and cleared tn of n0 human-passed traces, so

    TPR = tp / n1   (sensitivity, positive = fail)      TNR = tn / n0   (specificity).

If the true failure prevalence is theta, the judge flags a trace with probability

    p = theta * TPR + (1 - theta) * (1 - TNR),

which solved for theta gives the Rogan-Gladen estimator

    theta_hat = (p_obs + TNR - 1) / (TPR + TNR - 1),   clipped to [0, 1].

It needs a judge better than chance (TPR + TNR > 1); otherwise `CorrectionNotPossible`.

Three independent binomial samples carry the uncertainty: k ~ Bin(m, p), tp ~ Bin(n1, TPR),
tn ~ Bin(n0, TNR). An interval that bootstraps only the test split (as judgy does) ignores the
production sample, and any plug-in bootstrap collapses when the test split is perfect (tn = n0
makes every resample's TNR exactly 1), which is common for a good judge on a small split. The
default method here accounts for all three samples and for that edge.

Default method, "fiducial_cp" (a Monte Carlo generalized-fiducial interval). Each binomial
proportion x/n has two Clopper-Pearson "confidence distributions", Beta(x, n - x + 1) (leaning
low) and Beta(x + 1, n - x) (leaning high): their 2.5% and 97.5% quantiles are the exact
Clopper-Pearson limits. theta is increasing in p and TNR and decreasing in TPR. So

- for the lower limit draw p ~ Beta(k, m-k+1), TPR ~ Beta(tp+1, n1-tp), TNR ~ Beta(tn, n0-tn+1),
  map every draw through the Rogan-Gladen formula, and take the alpha/2 quantile;
- for the upper limit draw p ~ Beta(k+1, m-k), TPR ~ Beta(tp, n1-tp+1), TNR ~ Beta(tn+1, n0-tn),
  and take the 1 - alpha/2 quantile.

(A Beta with a zero shape is a point mass at 0 or 1.) Draws with TPR + TNR <= 1 identify
nothing about theta and are counted as 0 for the lower limit and 1 for the upper one. Each limit
leans the way an exact interval would, so the interval errs on the wide side. In the benchmark
grid (benchmarks/bench_prevalence.py: 405 cells of prevalence x TPR x TNR x test split size x
production size, 1000 simulated studies each) its 95% interval covered the true prevalence in
0.949 of studies in the worst cell and 0.975 on average; judgy's approach covered 0.40 in its
worst cell and 0.83 on average, with intervals about 0.78 times as wide. Monte Carlo uses a
fixed seed, so equal inputs give equal outputs.

What the interval accounts for: sampling of the production traces, and of the test split's
fails and passes (each treated as a random sample of the human-failed / human-passed traces).
What it does not: human label errors, a test split whose traces differ from production ones
(e.g. other users or another release), a judge that changed since the test split was scored,
and production traces that are not a random sample.

Other methods (for comparison; `method=` picks one):
- "fiducial_mid": as above but each draw uses the low- or high-leaning Beta with probability 1/2
  (Hannig's mid-p fiducial); narrower, coverage near nominal but dips below it in places.
- "jeffreys": p, TPR, TNR from independent Beta(x + 1/2, n - x + 1/2) (Jeffreys posteriors),
  quantiles of the Rogan-Gladen transform. Undercovers for small test splits.
- "bootstrap": parametric percentile bootstrap over all three binomials. Collapses when the test
  split is perfect.
- "lang_reiczigel": Lang & Reiczigel (2014): Agresti-Coull-style adjusted counts (z^2/2 added to
  k and z^2 to m; 1 and 2 to the test counts), a delta-method standard error that includes the
  TPR and TNR variances, and a shift of the centre.
- "wald": delta method on the Rogan-Gladen estimator,
  Var = [p(1-p)/m + theta^2 TPR(1-TPR)/n1 + (1-theta)^2 TNR(1-TNR)/n0] / (TPR + TNR - 1)^2.
- "judgy": judgy's approach (percentile bootstrap of the test split only, production share
  fixed), reimplemented on counts for speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .proportions import check_count, wilson_interval, z_for

DEFAULT_METHOD = "fiducial_cp"
DEFAULT_DRAWS = 20_000
DEFAULT_SEED = 20260  # any fixed value: it only makes the Monte Carlo repeatable


class CorrectionNotPossible(ValueError):
    """The data cannot support a corrected prevalence; `reason` says why in plain words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PrevalenceEstimate:
    """Raw share flagged by the judge and the corrected prevalence, each with an interval."""

    raw: float  # k / m, the judge's flag rate on production traces
    raw_low: float  # Wilson interval of the raw share (ignores judge errors)
    raw_high: float
    corrected: float  # Rogan-Gladen estimate, clipped to [0, 1]
    low: float  # interval for the true prevalence (see the module docstring)
    high: float
    method: str
    tpr: float  # tp / n_fail_test
    tnr: float  # tn / n_pass_test
    confidence: float = 0.95


def rogan_gladen(p_obs: float, tpr: float, tnr: float) -> float:
    """(p_obs + TNR - 1) / (TPR + TNR - 1) clipped to [0, 1]; raises if TPR + TNR <= 1."""
    youden = tpr + tnr - 1.0
    if youden <= 0:
        raise CorrectionNotPossible(_chance_reason(tpr, tnr))
    return min(1.0, max(0.0, (p_obs + tnr - 1.0) / youden))


def _chance_reason(tpr: float, tnr: float) -> str:
    return (
        f"the judge is no better than chance on the test split (TPR {tpr:.2f} + TNR {tnr:.2f} "
        f"= {tpr + tnr:.2f} <= 1), so its flags say nothing about the true prevalence; "
        "improve the judge or check the test labels"
    )


def corrected_prevalence(
    k: int,
    m: int,
    tp: int,
    n_fail_test: int,
    tn: int,
    n_pass_test: int,
    confidence: float = 0.95,
    method: str = DEFAULT_METHOD,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = DEFAULT_SEED,
) -> PrevalenceEstimate:
    """Corrected prevalence of failures among production traces, with an interval.

    k of m production traces were flagged by the judge; on the test split it flagged tp of
    n_fail_test human-failed traces and passed tn of n_pass_test human-passed traces. `method`
    is one of `PREVALENCE_METHODS` (default "fiducial_cp", see the module docstring); `draws`
    and `seed` set the Monte Carlo of the methods that use one, so results are repeatable.

    Raises `CorrectionNotPossible` when m = 0, when the test split lacks fails or passes, or
    when TPR + TNR <= 1 on the test split.
    """
    m = check_count("m (production traces judged)", m)
    k = check_count("k (production traces flagged)", k, at_most=m, at_most_name="m")
    n1 = check_count("n_fail_test", n_fail_test)
    tp = check_count("tp", tp, at_most=n1, at_most_name="n_fail_test")
    n0 = check_count("n_pass_test", n_pass_test)
    tn = check_count("tn", tn, at_most=n0, at_most_name="n_pass_test")
    z_for(confidence)
    _check_method(method)
    if check_count("draws", draws) < 100:
        raise ValueError(f"draws must be at least 100 for a usable Monte Carlo, got {draws}")
    if m == 0:
        raise CorrectionNotPossible("no production traces were judged (m = 0)")
    if n1 == 0:
        raise CorrectionNotPossible(
            "the test split has no human-failed traces, so the judge's TPR is unknown; "
            "add failing traces to the test split")
    if n0 == 0:
        raise CorrectionNotPossible(
            "the test split has no human-passed traces, so the judge's TNR is unknown; "
            "add passing traces to the test split")
    tpr, tnr = tp / n1, tn / n0
    raw = k / m
    corrected = rogan_gladen(raw, tpr, tnr)
    raw_low, raw_high = wilson_interval(k, m, confidence)
    low, high = prevalence_interval_arrays(
        method, np.array([k]), m, np.array([tp]), n1, np.array([tn]), n0,
        confidence=confidence, draws=draws, rng=np.random.default_rng(seed))
    # Monte Carlo can leave the point estimate a hair outside its own interval at the edges.
    low_f, high_f = min(float(low[0]), corrected), max(float(high[0]), corrected)
    return PrevalenceEstimate(raw=raw, raw_low=raw_low, raw_high=raw_high, corrected=corrected,
                              low=low_f, high=high_f, method=method, tpr=tpr, tnr=tnr,
                              confidence=confidence)


# --- vectorised interval methods ------------------------------------------------------------
# Each takes arrays k, tp, tn of equal shape (S,) (one entry per study) and scalars m, n1, n0,
# and returns arrays (low, high). Studies must satisfy tp/n1 + tn/n0 > 1 (callers refuse the
# others). They are used one study at a time by `corrected_prevalence` and thousands at a time
# by the coverage benchmark, so the benchmark measures exactly the code users run.

_CHUNK_CELLS = 2_000_000  # studies x draws per block, to bound memory (~16 MB per array)


def _rg(p: np.ndarray, tpr: np.ndarray, tnr: np.ndarray) -> np.ndarray:
    """Unclipped Rogan-Gladen; NaN/inf where TPR + TNR - 1 = 0 (callers mask those)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p + tnr - 1.0) / (tpr + tnr - 1.0)


def _beta(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Beta(a, b) draws where a zero shape means a point mass (a = 0 -> 0, b = 0 -> 1)."""
    a = np.broadcast_to(np.asarray(a, dtype=float), size)
    b = np.broadcast_to(np.asarray(b, dtype=float), size)
    out = rng.beta(np.where(a > 0, a, 1.0), np.where(b > 0, b, 1.0), size)
    out = np.where(a > 0, out, 0.0)
    return np.where(b > 0, out, 1.0)


def _beta_by_count(rng: np.random.Generator, x: np.ndarray, n: int, draws: int,
                   lean: float | str) -> np.ndarray:
    """(S, draws) draws from Beta(x + lean, n - x + 1 - lean) for counts x out of n.

    lean = 0 and lean = 1 are the two Clopper-Pearson confidence distributions (leaning low and
    high), lean = 0.5 is the Jeffreys posterior, and lean = "mixed" picks 0 or 1 at random per
    draw (the mid-p fiducial distribution). Draws are made once per distinct count and shared
    by the studies that have it: each study still gets draws from its own distribution, and a
    batch of simulated studies (few distinct counts) costs far fewer random numbers.
    """
    values, inverse = np.unique(x, return_inverse=True)
    size = (len(values), draws)
    shift = (rng.random(size) < 0.5).astype(float) if lean == "mixed" else float(lean)
    table = _beta(rng, values[:, None] + shift, n - values[:, None] + 1 - shift, size)
    return table[inverse.reshape(-1)]


def _quantile_rows(values: np.ndarray, q: float) -> np.ndarray:
    """Per-row quantile with linear interpolation (numpy's default), ignoring NaN entries."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    valid = np.sum(~np.isnan(ordered), axis=1)
    pos = q * np.maximum(valid - 1, 0)
    below = np.floor(pos).astype(int)
    above = np.minimum(below + 1, np.maximum(valid - 1, 0))
    frac = pos - below
    lo_v = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0]
    hi_v = np.take_along_axis(ordered, above[:, None], axis=1)[:, 0]
    out = lo_v + frac * (hi_v - lo_v)
    return np.where(valid > 0, out, np.nan)


def _transform_quantiles(k, m, tp, n1, tn, n0, alpha, draws, rng, leans_low, leans_high):
    """Quantiles of the Rogan-Gladen transform of Beta draws for p, TPR and TNR.

    `leans_low` / `leans_high` give the (p, TPR, TNR) leans used for the lower / upper limit
    (see `_beta_by_count`). Draws with TPR + TNR <= 1 identify nothing, so they count as 0 for
    the lower limit and 1 for the upper limit.
    """
    limits = []
    for lower, (lean_p, lean_tpr, lean_tnr) in ((True, leans_low), (False, leans_high)):
        p = _beta_by_count(rng, k, m, draws, lean_p)
        tpr = _beta_by_count(rng, tp, n1, draws, lean_tpr)
        tnr = _beta_by_count(rng, tn, n0, draws, lean_tnr)
        theta = np.clip(_rg(p, tpr, tnr), 0.0, 1.0)
        theta = np.where(tpr + tnr > 1.0, theta, 0.0 if lower else 1.0)
        limits.append(np.quantile(theta, alpha / 2 if lower else 1 - alpha / 2, axis=1))
    return limits[0], limits[1]


def _fiducial_cp(k, m, tp, n1, tn, n0, alpha, draws, rng):
    # theta rises with p and TNR and falls with TPR: lean each the way that lowers (raises) theta
    return _transform_quantiles(k, m, tp, n1, tn, n0, alpha, draws, rng,
                                leans_low=(0.0, 1.0, 0.0), leans_high=(1.0, 0.0, 1.0))


def _fiducial_mid(k, m, tp, n1, tn, n0, alpha, draws, rng):
    mixed = ("mixed", "mixed", "mixed")
    return _transform_quantiles(k, m, tp, n1, tn, n0, alpha, draws, rng, leans_low=mixed, leans_high=mixed)


def _jeffreys(k, m, tp, n1, tn, n0, alpha, draws, rng):
    half = (0.5, 0.5, 0.5)
    return _transform_quantiles(k, m, tp, n1, tn, n0, alpha, draws, rng, leans_low=half, leans_high=half)


def _bootstrap(k, m, tp, n1, tn, n0, alpha, draws, rng):
    size = (len(k), draws)
    p = rng.binomial(m, (k / m)[:, None], size) / m
    tpr = rng.binomial(n1, (tp / n1)[:, None], size) / n1
    tnr = rng.binomial(n0, (tn / n0)[:, None], size) / n0
    theta = np.clip(_rg(p, tpr, tnr), 0.0, 1.0)
    ok = tpr + tnr > 1.0
    low = np.quantile(np.where(ok, theta, 0.0), alpha / 2, axis=1)
    high = np.quantile(np.where(ok, theta, 1.0), 1 - alpha / 2, axis=1)
    return low, high


def _judgy(k, m, tp, n1, tn, n0, alpha, draws, rng):
    """Resample the n1 + n0 test items with replacement, keep the production share fixed.

    On counts: the resampled number of fails is Bin(n, n1/n), and given it the resampled tp is
    Bin(n1*, tp/n1) (likewise for passes), which is the distribution of judgy's index resampling.
    Like judgy, resamples without fails or passes, or with TPR + TNR <= 1, are dropped.
    """
    size = (len(k), draws)
    n = n1 + n0
    n1_star = rng.binomial(n, n1 / n, size)
    n0_star = n - n1_star
    tp_star = rng.binomial(n1_star, (tp / n1)[:, None])
    tn_star = rng.binomial(n0_star, (tn / n0)[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = tp_star / n1_star
        tnr = tn_star / n0_star
    theta = np.clip(_rg((k / m)[:, None], tpr, tnr), 0.0, 1.0)
    ok = (n1_star > 0) & (n0_star > 0) & (tpr + tnr > 1.0)
    theta = np.where(ok, theta, np.nan)
    return _quantile_rows(theta, alpha / 2), _quantile_rows(theta, 1 - alpha / 2)


def _wald(k, m, tp, n1, tn, n0, alpha, draws, rng):
    z = z_for(1 - alpha)
    p, tpr, tnr = k / m, tp / n1, tn / n0
    youden = tpr + tnr - 1.0
    theta = np.clip(_rg(p, tpr, tnr), 0.0, 1.0)
    var = (p * (1 - p) / m + theta**2 * tpr * (1 - tpr) / n1
           + (1 - theta) ** 2 * tnr * (1 - tnr) / n0) / youden**2
    half = z * np.sqrt(var)
    return np.clip(theta - half, 0.0, 1.0), np.clip(theta + half, 0.0, 1.0)


def _lang_reiczigel(k, m, tp, n1, tn, n0, alpha, draws, rng):
    z = z_for(1 - alpha)
    m_adj, n1_adj, n0_adj = m + z * z, n1 + 2.0, n0 + 2.0
    p = (k + z * z / 2) / m_adj
    tpr = (tp + 1.0) / n1_adj
    tnr = (tn + 1.0) / n0_adj
    youden = tpr + tnr - 1.0
    theta = _rg(p, tpr, tnr)
    se = np.sqrt(p * (1 - p) / m_adj + theta**2 * tpr * (1 - tpr) / n1_adj
                 + (1 - theta) ** 2 * tnr * (1 - tnr) / n0_adj) / np.abs(youden)
    shift = 2 * z * z * (theta * tpr * (1 - tpr) / n1_adj - (1 - theta) * tnr * (1 - tnr) / n0_adj)
    low = np.clip(theta + shift - z * se, 0.0, 1.0)
    high = np.clip(theta + shift + z * se, 0.0, 1.0)
    unusable = youden <= 0  # the adjusted counts can undo a barely-better-than-chance judge
    return np.where(unusable, 0.0, low), np.where(unusable, 1.0, high)


IntervalMethod = Callable[..., tuple[np.ndarray, np.ndarray]]

_METHODS: dict[str, IntervalMethod] = {
    "fiducial_cp": _fiducial_cp,
    "fiducial_mid": _fiducial_mid,
    "jeffreys": _jeffreys,
    "bootstrap": _bootstrap,
    "lang_reiczigel": _lang_reiczigel,
    "wald": _wald,
    "judgy": _judgy,
}
PREVALENCE_METHODS: tuple[str, ...] = tuple(_METHODS)
MONTE_CARLO_METHODS = frozenset({"fiducial_cp", "fiducial_mid", "jeffreys", "bootstrap", "judgy"})


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(
            f"unknown prevalence method {method!r}; choose one of {', '.join(PREVALENCE_METHODS)}")


def prevalence_interval_arrays(
    method: str,
    k: np.ndarray,
    m: int,
    tp: np.ndarray,
    n1: int,
    tn: np.ndarray,
    n0: int,
    *,
    confidence: float = 0.95,
    draws: int = DEFAULT_DRAWS,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval limits for many studies at once (same m, n1, n0); for simulation and benchmarks.

    k, tp, tn are integer arrays with one entry per study; every study must have
    tp/n1 + tn/n0 > 1 (refuse the others before calling). Returns (low, high) arrays.
    """
    _check_method(method)
    k, tp, tn = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (k, tp, tn))
    if not (len(k) == len(tp) == len(tn)):
        raise ValueError(f"k, tp and tn must have one entry per study, got {len(k)}, {len(tp)}, {len(tn)}")
    if np.any(tp / n1 + tn / n0 <= 1.0):
        raise CorrectionNotPossible("some studies have TPR + TNR <= 1; refuse them before calling")
    alpha = 1.0 - confidence
    rng = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
    fn = _METHODS[method]
    if method not in MONTE_CARLO_METHODS:
        return fn(k, m, tp, n1, tn, n0, alpha, draws, rng)
    chunk = max(1, _CHUNK_CELLS // draws)
    lows, highs = [], []
    for start in range(0, len(k), chunk):
        part = slice(start, start + chunk)
        low, high = fn(k[part], m, tp[part], n1, tn[part], n0, alpha, draws, rng)
        lows.append(low)
        highs.append(high)
    return np.concatenate(lows), np.concatenate(highs)
