"""Agreement between annotators: Cohen's kappa, Krippendorff's alpha, per-failure-mode kappa.

Raw percent agreement overstates how well people agree when one label dominates (two raters
who both say "pass" 95% of the time agree 90% of the time by chance alone). Both statistics
here compare observed agreement with the agreement expected by chance:

    statistic = 1 - observed disagreement / expected disagreement

1 is perfect agreement, 0 is chance level, negative is worse than chance. They describe the
labels you have; they carry no interval here, so with a handful of items read them as rough.
A statistic is NaN when it is undefined (e.g. every label is the same category, so no
disagreement could be expected by chance).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float:
    """Cohen's kappa for two raters who labelled the same items (any hashable categories).

    With po the share of items where the raters agree and pe = sum_c pA(c) pB(c) the agreement
    expected if each rater labelled at random with their own category shares,

        kappa = (po - pe) / (1 - pe).

    NaN when pe = 1 (both raters used one and the same category for every item).
    """
    a, b = list(labels_a), list(labels_b)
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs two label lists of equal length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("cohen_kappa needs at least one item labelled by both raters")
    for where, labels in (("labels_a", a), ("labels_b", b)):
        for i, label in enumerate(labels):
            if label is None:
                raise ValueError(f"{where}[{i}] is None; keep only items both raters labelled")
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    pe = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if math.isclose(pe, 1.0):
        return math.nan
    return (po - pe) / (1.0 - pe)


def krippendorff_alpha(units: Iterable[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal labels, any number of raters, missing labels allowed.

    `units` has one entry per item: the labels the raters gave it, None where a rater gave
    none (e.g. ``[["fail", "fail", None], ["pass", None, "fail"]]``). Items with fewer than two
    labels cannot be compared and are skipped.

    Coincidence matrix: an item u with m_u >= 2 labels adds 1/(m_u - 1) to o[c, k] for every
    ordered pair of *different raters* whose labels are (c, k). With n_c = sum_k o[c, k] and
    n = sum_c n_c (the number of pairable labels),

        D_o   = sum_{c != k} o[c, k] / n                    (observed disagreement)
        D_e   = sum_{c != k} n_c n_k / (n (n - 1))          (expected by chance)
        alpha = 1 - D_o / D_e.

    For two raters and no missing labels this is 1 - (1 - pi)(2N - 1)/(2N), with pi Scott's pi
    over N items, so alpha is close to kappa when the raters' category shares are similar.
    NaN when no item has two labels or when only one category is ever used.
    """
    coincidence: Counter[tuple[Hashable, Hashable]] = Counter()
    for i, unit in enumerate(units):
        if isinstance(unit, (str, bytes)) or not isinstance(unit, Sequence):
            raise ValueError(f"units[{i}] must be a list of labels (None for missing), got {unit!r}")
        values = [v for v in unit if v is not None]
        m_u = len(values)
        if m_u < 2:
            continue
        pairs = Counter((values[x], values[y]) for x in range(m_u) for y in range(m_u) if x != y)
        for pair, count in pairs.items():
            coincidence[pair] += count / (m_u - 1)
    marginals: Counter[Hashable] = Counter()
    for (c, _k), weight in coincidence.items():
        marginals[c] += weight
    n = sum(marginals.values())
    if n == 0:
        return math.nan
    observed = sum(w for (c, k), w in coincidence.items() if c != k) / n
    expected = (n * n - sum(v * v for v in marginals.values())) / (n * (n - 1))
    if expected <= 0.0 or math.isclose(expected, 0.0, abs_tol=1e-15):
        return math.nan
    return 1.0 - observed / expected


@dataclass(frozen=True)
class ModeAgreement:
    """How two raters agree on one failure mode, over the items both of them labelled."""

    mode: str
    items: int  # items labelled by both raters
    both: int  # both picked the mode
    only_a: int
    only_b: int
    neither: int
    kappa: float  # NaN when neither rater (or both, on every item) picked it


def per_mode_agreement(
    rater_a: Mapping[str, Iterable[str]],
    rater_b: Mapping[str, Iterable[str]],
    modes: Iterable[str] | None = None,
) -> dict[str, ModeAgreement]:
    """Cohen's kappa per failure mode on "did the rater pick this mode" indicators.

    `rater_a` and `rater_b` map an item id (trace id) to the failure modes that rater gave it
    (empty for a pass or a fail with no mode). Only items present in both mappings count. For
    each mode the 2x2 table both / only A / only B / neither is formed and kappa computed from it.
    `modes` defaults to every mode either rater used on a shared item, sorted.
    """
    shared = sorted(set(rater_a) & set(rater_b), key=str)
    picks_a = {item: set(rater_a[item]) for item in shared}
    picks_b = {item: set(rater_b[item]) for item in shared}
    if modes is None:
        modes = sorted(set(chain.from_iterable(picks_a.values()))
                       | set(chain.from_iterable(picks_b.values())))
    result: dict[str, ModeAgreement] = {}
    for mode in modes:
        a = [mode in picks_a[item] for item in shared]
        b = [mode in picks_b[item] for item in shared]
        both = sum(x and y for x, y in zip(a, b))
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        kappa = cohen_kappa(a, b) if shared else math.nan
        result[mode] = ModeAgreement(
            mode=mode, items=len(shared), both=both, only_a=only_a, only_b=only_b,
            neither=len(shared) - both - only_a - only_b, kappa=kappa,
        )
    return result
