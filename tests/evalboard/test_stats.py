"""Tests for evalboard.stats: known values, hand-computed cases, edge cases, a coverage smoke test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.bench_prevalence import coverage_for_cell
from evalboard.stats import (
    DEFAULT_METHOD,
    PREVALENCE_METHODS,
    Confusion,
    CorrectionNotPossible,
    cohen_kappa,
    confusion,
    corrected_prevalence,
    diff_interval,
    judge_metrics,
    krippendorff_alpha,
    labels_needed_for_width,
    per_mode_agreement,
    proportion,
    rogan_gladen,
    saturation,
    wilson_interval,
    wilson_width,
)

# --- proportions -------------------------------------------------------------------------------


def test_wilson_known_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - 0.2775, abs=5e-4)


def test_wilson_empty_sample_and_confidence():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(30, 100, 0.90), wilson_interval(30, 100, 0.99)
    assert wide[0] < narrow[0] < 0.3 < narrow[1] < wide[1]


@pytest.mark.parametrize("args, fragment", [
    ((11, 10), "successes (11) cannot exceed n (10)"),
    ((-1, 10), "successes must be >= 0"),
    ((2.5, 10), "successes must be a whole number"),
    ((2, "10"), "n must be a whole number"),
    ((True, 10), "successes must be a whole number"),
])
def test_wilson_rejects_bad_counts(args, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        wilson_interval(*args)


def test_wilson_rejects_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(3, 10, confidence=95)


def test_proportion_fields_and_numpy_counts():
    p = proportion(np.int64(3), np.int64(4))
    assert (p.k, p.n, p.p) == (3, 4, 0.75)
    assert (p.low, p.high) == wilson_interval(3, 4)
    assert math.isnan(proportion(0, 0).p)


def test_newcombe_difference_matches_published_values():
    # Newcombe (1998), method 10: 56/70 - 48/80 and 9/10 - 3/10
    d = diff_interval(56, 70, 48, 80)
    assert d.diff == pytest.approx(0.2)
    assert (d.low, d.high) == pytest.approx((0.0524, 0.3339), abs=5e-4)
    d = diff_interval(9, 10, 3, 10)
    assert (d.low, d.high) == pytest.approx((0.1705, 0.8090), abs=5e-4)


def test_difference_needs_both_samples():
    with pytest.raises(ValueError, match="n1 > 0 and n2 > 0"):
        diff_interval(0, 0, 3, 10)
    d = diff_interval(0, 10, 10, 10)  # extremes stay within [-1, 1]
    assert d.low == d.diff == -1.0 < d.high < 0.0


# --- agreement ---------------------------------------------------------------------------------

A5 = ["fail", "fail", "pass", "pass", "fail"]
B5 = ["fail", "pass", "pass", "pass", "fail"]


def test_cohen_kappa_hand_computed():
    # po = 4/5; pe = 3/5 * 2/5 + 2/5 * 3/5 = 0.48; kappa = 0.32 / 0.52
    assert cohen_kappa(A5, B5) == pytest.approx(0.32 / 0.52)
    assert cohen_kappa(["x", "y", "z", "x", "y", "z"], ["x", "y", "z", "x", "z", "y"]) == pytest.approx(0.5)
    assert cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == pytest.approx(-1.0)
    assert cohen_kappa(A5, A5) == 1.0


def test_cohen_kappa_undefined_and_bad_input():
    assert math.isnan(cohen_kappa(["pass"] * 4, ["pass"] * 4))
    with pytest.raises(ValueError, match="equal length"):
        cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"labels_b\[1\] is None"):
        cohen_kappa(["a", "b"], ["a", None])
    with pytest.raises(ValueError, match="at least one item"):
        cohen_kappa([], [])


def test_krippendorff_textbook_example():
    # Krippendorff's reliability data: 4 observers, 12 units, missing values; nominal alpha 0.743
    n = None
    rows = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = [list(u) for u in zip(*rows)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_two_raters_relates_to_scott_pi_and_kappa():
    # pooled shares: fail 5/10, pass 5/10 -> Scott's pe = 0.5; po = 0.8 -> pi = 0.6
    pi, n_items = 0.6, 5
    alpha = krippendorff_alpha([list(pair) for pair in zip(A5, B5)])
    assert alpha == pytest.approx(1 - (1 - pi) * (2 * n_items - 1) / (2 * n_items))
    assert alpha == pytest.approx(0.64)
    # with equal marginals kappa equals Scott's pi, so the same relation links alpha and kappa
    a = ["x", "x", "y", "y", "x", "y"]
    b = ["x", "y", "x", "y", "x", "y"]
    kappa = cohen_kappa(a, b)
    assert krippendorff_alpha(list(map(list, zip(a, b)))) == pytest.approx(1 - (1 - kappa) * 11 / 12)


def test_krippendorff_missing_and_undefined():
    base = [["a", "a"], ["a", "b"], ["b", "b"]]
    # a unit with a single label cannot be paired and changes nothing
    assert krippendorff_alpha(base + [["a", None, None]]) == pytest.approx(krippendorff_alpha(base))
    assert math.isnan(krippendorff_alpha([["a", None], [None, "b"]]))
    assert math.isnan(krippendorff_alpha([["a", "a"], ["a", "a", "a"]]))
    with pytest.raises(ValueError, match=r"units\[1\]"):
        krippendorff_alpha([["a", "b"], "ab"])


def test_per_mode_agreement_counts_only_shared_items():
    rater_a = {"t1": ["tone"], "t2": ["tone", "facts"], "t3": [], "t4": ["facts"], "t5": ["tone"]}
    rater_b = {"t1": ["tone"], "t2": ["tone"], "t3": ["facts"], "t4": ["facts"], "t6": ["tone"]}
    result = per_mode_agreement(rater_a, rater_b)
    assert list(result) == ["facts", "tone"]
    tone, facts = result["tone"], result["facts"]
    assert (tone.items, tone.both, tone.only_a, tone.only_b, tone.neither) == (4, 2, 0, 0, 2)
    assert tone.kappa == 1.0
    # facts: A = [F, T, F, T], B = [F, F, T, T] -> po = 0.5, pe = 0.5 -> kappa 0
    assert (facts.both, facts.only_a, facts.only_b, facts.neither) == (1, 1, 1, 1)
    assert facts.kappa == pytest.approx(0.0)
    unused = per_mode_agreement(rater_a, rater_b, modes=["latency"])["latency"]
    assert unused.neither == 4 and math.isnan(unused.kappa)


# --- classifier metrics ------------------------------------------------------------------------

HUMAN = [True, True, True, False, False, False, False, True]
JUDGE = [True, False, True, False, True, False, False, True]


def test_confusion_hand_computed():
    c = confusion(HUMAN, JUDGE)
    assert c == Confusion(tp=3, fn=1, tn=3, fp=1)
    assert (c.n, c.n_fail, c.n_pass) == (8, 4, 4)
    assert confusion(np.array([1, 0]), [np.bool_(True), False]) == Confusion(tp=1, fn=0, tn=1, fp=0)


def test_confusion_rejects_non_bool_and_mismatch():
    with pytest.raises(ValueError, match=r"judge\[0\] must be a bool"):
        confusion([True], ["fail"])
    with pytest.raises(ValueError, match="one verdict per item"):
        confusion([True, False], [True])


def test_judge_metrics_hand_computed():
    m = judge_metrics(Confusion(tp=3, fn=1, tn=3, fp=1))
    assert (m.tpr.k, m.tpr.n, m.tpr.p) == (3, 4, 0.75)
    assert (m.tpr.low, m.tpr.high) == wilson_interval(3, 4)
    assert (m.tnr.k, m.tnr.n) == (3, 4)
    assert (m.precision.k, m.precision.n) == (3, 4)
    assert (m.accuracy.k, m.accuracy.n) == (6, 8)
    assert m.balanced_accuracy == 0.75
    # po = 0.75, pe = (4*4 + 4*4)/64 = 0.5
    assert m.kappa == pytest.approx(0.5)
    assert m.kappa == pytest.approx(cohen_kappa(HUMAN, JUDGE))
    uneven = judge_metrics(Confusion(tp=9, fn=1, tn=60, fp=30))
    assert uneven.balanced_accuracy == pytest.approx((0.9 + 60 / 90) / 2)


def test_judge_metrics_without_fails():
    m = judge_metrics(Confusion(tp=0, fn=0, tn=5, fp=1))
    assert math.isnan(m.tpr.p) and (m.tpr.low, m.tpr.high) == (0.0, 1.0)
    assert math.isnan(m.balanced_accuracy)


def test_labels_needed_for_width_is_the_smallest_that_fits():
    n = labels_needed_for_width(0.5, 0.2)
    assert wilson_width(0.5, n) <= 0.2 < wilson_width(0.5, n - 1)
    assert 85 <= n <= 96  # Wald's rule of thumb says 96
    assert labels_needed_for_width(0.5, 0.1) > 3.5 * n
    assert labels_needed_for_width(0.9, 0.2) < n  # extreme shares need fewer labels
    assert labels_needed_for_width(0.5, 1.0) == 1
    with pytest.raises(ValueError, match="target_width"):
        labels_needed_for_width(0.5, 0.0)
    with pytest.raises(ValueError, match="p_guess"):
        labels_needed_for_width(1.5, 0.1)


# --- saturation --------------------------------------------------------------------------------


def test_saturation_windows_and_curve():
    order = [["a"], [], ["b", "a"], [], ["c"], [], []]
    s = saturation(order, windows=(2, 3, 5, 10))
    assert s.curve == [1, 1, 2, 2, 3, 3, 3]
    assert s.new_in_last == {2: 0, 3: 1, 5: 2, 10: 3}
    assert (s.labels, s.modes) == (7, 3)
    assert s.window_is_full(5) and not s.window_is_full(10)
    assert saturation([]).new_in_last == {10: 0, 20: 0, 50: 0}


def test_saturation_rejects_bad_input():
    with pytest.raises(ValueError, match=r"mode_lists_in_label_order\[1\]"):
        saturation([["a"], "b"])
    with pytest.raises(ValueError, match="windows"):
        saturation([["a"]], windows=(0,))


# --- corrected prevalence ----------------------------------------------------------------------


def test_rogan_gladen_exact():
    assert rogan_gladen(0.3, 0.8, 0.9) == pytest.approx(0.2 / 0.7)
    assert rogan_gladen(0.05, 0.8, 0.9) == 0.0  # below the false-positive floor: clipped
    assert rogan_gladen(0.95, 0.8, 0.9) == 1.0
    assert rogan_gladen(0.1, 1.0, 1.0) == pytest.approx(0.1)  # a perfect judge changes nothing


def test_corrected_prevalence_exact_case():
    e = corrected_prevalence(300, 1000, 80, 100, 90, 100)
    assert e.corrected == pytest.approx(0.2 / 0.7)
    assert (e.raw, e.tpr, e.tnr, e.method) == (0.3, 0.8, 0.9, DEFAULT_METHOD)
    assert (e.raw_low, e.raw_high) == wilson_interval(300, 1000)
    assert 0.0 < e.low < e.corrected < e.high < 1.0


@pytest.mark.parametrize("method", PREVALENCE_METHODS)
@pytest.mark.parametrize("counts", [
    (300, 1000, 80, 100, 90, 100),
    (12, 200, 17, 20, 24, 26),
    (0, 500, 20, 20, 26, 26),
    (500, 500, 19, 20, 25, 26),
    (1, 3, 1, 1, 1, 1),
])
def test_every_method_contains_its_estimate(method, counts):
    e = corrected_prevalence(*counts, method=method, draws=2000)
    assert 0.0 <= e.low <= e.corrected <= e.high <= 1.0
    assert e.method == method


def test_refuses_a_judge_no_better_than_chance():
    with pytest.raises(CorrectionNotPossible, match="no better than chance") as info:
        corrected_prevalence(50, 100, 10, 20, 13, 26)  # TPR 0.5 + TNR 0.5 = 1
    assert "1.00 <= 1" in info.value.reason
    with pytest.raises(CorrectionNotPossible):
        corrected_prevalence(50, 100, 5, 20, 13, 26)  # 0.25 + 0.5
    with pytest.raises(CorrectionNotPossible):
        rogan_gladen(0.2, 0.4, 0.6)


@pytest.mark.parametrize("counts, fragment", [
    ((5, 100, 0, 0, 20, 26), "no human-failed traces"),
    ((5, 100, 15, 20, 0, 0), "no human-passed traces"),
    ((0, 0, 15, 20, 20, 26), "no production traces"),
])
def test_refuses_missing_samples(counts, fragment):
    with pytest.raises(CorrectionNotPossible, match=fragment):
        corrected_prevalence(*counts)


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"k \(production traces flagged\) \(101\) cannot exceed m"):
        corrected_prevalence(101, 100, 15, 20, 20, 26)
    with pytest.raises(ValueError, match="tn"):
        corrected_prevalence(10, 100, 15, 20, 27, 26)
    with pytest.raises(ValueError, match="unknown prevalence method 'magic'"):
        corrected_prevalence(10, 100, 15, 20, 20, 26, method="magic")


def test_edges_no_flags_and_all_flags():
    none = corrected_prevalence(0, 1000, 18, 20, 25, 26)
    assert none.corrected == 0.0 and none.low == 0.0 and 0.0 < none.high < 0.2
    every = corrected_prevalence(1000, 1000, 20, 20, 25, 26)
    assert every.corrected == 1.0 and every.high == 1.0 and 0.99 < every.low < 1.0
    # flagging every trace is more than a judge with TPR 0.9 can do: only theta = 1 fits
    beyond = corrected_prevalence(1000, 1000, 18, 20, 25, 26)
    assert beyond.corrected == beyond.low == beyond.high == 1.0


def test_tiny_samples_give_wide_intervals():
    e = corrected_prevalence(1, 3, 1, 1, 1, 1)
    assert e.high - e.low > 0.5


def test_perfect_test_split_still_carries_its_uncertainty():
    # 20/20 and 26/26 on the test split: a plug-in bootstrap sees TPR = TNR = 1 in every
    # resample and reports only the production noise; the default method does not.
    ours = corrected_prevalence(50, 1000, 20, 20, 26, 26)
    boot = corrected_prevalence(50, 1000, 20, 20, 26, 26, method="bootstrap")
    judgy = corrected_prevalence(50, 1000, 20, 20, 26, 26, method="judgy")
    assert judgy.high - judgy.low == 0.0
    assert ours.high - ours.low > 1.5 * (boot.high - boot.low)
    assert ours.high - ours.low > 1.5 * (ours.raw_high - ours.raw_low)


def test_deterministic_and_confidence_sensitive():
    a = corrected_prevalence(120, 1000, 17, 20, 24, 26)
    assert a == corrected_prevalence(120, 1000, 17, 20, 24, 26)
    other_seed = corrected_prevalence(120, 1000, 17, 20, 24, 26, seed=1)
    assert other_seed.high == pytest.approx(a.high, abs=0.01)
    narrow = corrected_prevalence(120, 1000, 17, 20, 24, 26, confidence=0.8)
    assert narrow.high - narrow.low < a.high - a.low


def test_judgy_method_matches_the_judgy_package():
    judgy = pytest.importorskip("judgy")
    # judgy counts pass as 1; our positive class is fail. 17/20 fails caught, 24/26 passes cleared.
    labels = np.array([0] * 20 + [1] * 26)
    preds = np.array([0] * 17 + [1] * 3 + [1] * 24 + [0] * 2)
    production = np.array([0] * 120 + [1] * 880)
    np.random.seed(0)
    pass_rate, pass_low, pass_high = judgy.estimate_success_rate(labels, preds, production,
                                                                 bootstrap_iterations=20000)
    ours = corrected_prevalence(120, 1000, 17, 20, 24, 26, method="judgy")
    assert ours.corrected == pytest.approx(1 - pass_rate)
    assert ours.low == pytest.approx(1 - pass_high, abs=0.01)
    assert ours.high == pytest.approx(1 - pass_low, abs=0.01)


def test_coverage_smoke():
    # Hard cells: small, near-perfect test split; low prevalence; large samples with a weak judge.
    cells = [
        (0.02, 0.95, 0.98, 20, 26, 5000),
        (0.4, 0.7, 0.8, 20, 26, 200),
        (0.1, 0.85, 0.9, 130, 170, 1000),
    ]
    for i, (theta, se, sp, n1, n0, m) in enumerate(cells):
        ours = coverage_for_cell(DEFAULT_METHOD, theta, se, sp, n1, n0, m, studies=200, seed=i, draws=500)
        assert ours.coverage >= 0.9, (theta, se, sp, n1, n0, m, ours)
    # the same check fails judgy's approach where the test split is small and near perfect
    judgy = coverage_for_cell("judgy", *cells[0], studies=200, seed=0, draws=500)
    assert judgy.coverage < 0.8
