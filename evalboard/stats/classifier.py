"""How well a judge reproduces human verdicts: confusion matrix, rates with intervals, label budget.

Convention used everywhere in evalboard: the *positive* class is **fail** (the judge's job is to
find failures). So

    TPR (sensitivity)  = P(judge says fail | human says fail) = tp / (tp + fn)
    TNR (specificity)  = P(judge says pass | human says pass) = tn / (tn + fp)

TPR and TNR, not accuracy, are what the prevalence correction needs (see `prevalence`), and they
do not depend on how many fails the test split happens to hold. Intervals are Wilson intervals
on the test split counts: they account for which traces landed in the split, not for human label
errors or for production traces that differ from the test split.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .proportions import Proportion, check_count, proportion, z_for


@dataclass(frozen=True)
class Confusion:
    """Counts of (human verdict, judge verdict) pairs; positive = fail."""

    tp: int  # human fail, judge fail
    fn: int  # human fail, judge pass
    tn: int  # human pass, judge pass
    fp: int  # human pass, judge fail

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.tn + self.fp

    @property
    def n_fail(self) -> int:
        """Items humans marked fail (the TPR denominator)."""
        return self.tp + self.fn

    @property
    def n_pass(self) -> int:
        """Items humans marked pass (the TNR denominator)."""
        return self.tn + self.fp


def _as_fail_flags(name: str, values: Sequence[object]) -> list[bool]:
    flags = []
    for i, v in enumerate(values):
        # bools and 0/1 only: a stray "pass" string or None must not be read as truthy
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Integral) and v in (0, 1)):
            flags.append(bool(v))
        else:
            raise ValueError(f"{name}[{i}] must be a bool (True = fail), got {v!r}")
    return flags


def confusion(human: Sequence[bool], judge: Sequence[bool]) -> Confusion:
    """Confusion matrix of judge verdicts against human verdicts, both lists of `fail` flags."""
    h, j = _as_fail_flags("human", human), _as_fail_flags("judge", judge)
    if len(h) != len(j):
        raise ValueError(f"human and judge must have one verdict per item, got {len(h)} and {len(j)}")
    tp = sum(a and b for a, b in zip(h, j))
    fn = sum(a and not b for a, b in zip(h, j))
    fp = sum(b and not a for a, b in zip(h, j))
    return Confusion(tp=tp, fn=fn, tn=len(h) - tp - fn - fp, fp=fp)


@dataclass(frozen=True)
class JudgeMetrics:
    """A judge's agreement with humans on one split. Rates are `Proportion`s (k, n, p, low, high)."""

    confusion: Confusion
    tpr: Proportion  # tp / (tp + fn)
    tnr: Proportion  # tn / (tn + fp)
    precision: Proportion  # tp / (tp + fp): of the judge's fails, how many humans agree with
    accuracy: Proportion  # (tp + tn) / n
    balanced_accuracy: float  # (TPR + TNR) / 2; NaN if either is undefined
    kappa: float  # Cohen's kappa between judge and human; NaN when undefined


def judge_metrics(matrix: Confusion, confidence: float = 0.95) -> JudgeMetrics:
    """TPR, TNR, precision and accuracy with Wilson intervals, plus balanced accuracy and kappa.

    Kappa from the 2x2 table: po = (tp + tn)/n, pe = [(tp+fn)(tp+fp) + (tn+fp)(tn+fn)] / n^2,
    kappa = (po - pe)/(1 - pe). A rate whose denominator is 0 has p = NaN and interval (0, 1).
    """
    for field in ("tp", "fn", "tn", "fp"):
        check_count(field, getattr(matrix, field))
    z_for(confidence)  # validates confidence once, with a clear message
    c = matrix
    tpr = proportion(c.tp, c.n_fail, confidence)
    tnr = proportion(c.tn, c.n_pass, confidence)
    precision = proportion(c.tp, c.tp + c.fp, confidence)
    accuracy = proportion(c.tp + c.tn, c.n, confidence)
    balanced = (tpr.p + tnr.p) / 2 if c.n_fail and c.n_pass else math.nan
    kappa = math.nan
    if c.n:
        po = (c.tp + c.tn) / c.n
        pe = ((c.tp + c.fn) * (c.tp + c.fp) + (c.tn + c.fp) * (c.tn + c.fn)) / (c.n * c.n)
        if not math.isclose(pe, 1.0):
            kappa = (po - pe) / (1 - pe)
    return JudgeMetrics(confusion=c, tpr=tpr, tnr=tnr, precision=precision, accuracy=accuracy,
                        balanced_accuracy=balanced, kappa=kappa)


def wilson_width(p: float, n: float, confidence: float = 0.95) -> float:
    """Width of the Wilson interval when the observed share is exactly p out of n (n > 0).

    width = 2 z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/(4 n^2)). Used for planning, so p is a guess
    and need not be a multiple of 1/n.
    """
    z = z_for(confidence)
    return 2 * z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))


def labels_needed_for_width(p_guess: float, target_width: float, confidence: float = 0.95) -> int:
    """Smallest n whose Wilson interval at share `p_guess` is at most `target_width` wide.

    For the label budget planner: e.g. "how many human-failed traces must the test split hold
    for the judge's TPR (expected about 0.85) to be known within +-0.05?" is
    ``labels_needed_for_width(0.85, 0.10)``. The width shrinks roughly like 1/sqrt(n), so
    halving the width costs about four times the labels. The answer is a plan, not a promise:
    the real width depends on the share you end up observing.
    """
    if not isinstance(p_guess, (int, float)) or not 0.0 <= p_guess <= 1.0:
        raise ValueError(f"p_guess must be a share between 0 and 1, got {p_guess!r}")
    if not isinstance(target_width, (int, float)) or not 0.0 < target_width <= 1.0:
        raise ValueError(f"target_width must be in (0, 1], got {target_width!r}")
    if wilson_width(p_guess, 1, confidence) <= target_width:
        return 1
    # width is decreasing in n: grow an upper bound, then bisect to the smallest n that fits
    low, high = 1, 2
    while wilson_width(p_guess, high, confidence) > target_width:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if wilson_width(p_guess, mid, confidence) <= target_width:
            high = mid
        else:
            low = mid
    return high
