"""The benchmark's metrics against hand-computed values, brute force and their invariants."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from tafa.bench.metrics import (aruc, binomial_ci, bootstrap_ci, calibrated_scale, detection_rate, max_min_ru,
                                rank_threshold, relative_utility, robustness_uniqueness_curve, roc_auc, rule_rates,
                                tpr_at_fpr, utility_kept)
from tafa.errors import InvalidParameter

# Scores on a coarse grid, so that ties between and within the classes are common.
tied_scores = st.lists(st.integers(-4, 4).map(lambda v: v / 4), min_size=1, max_size=12)


# --------------------------------------------------------------------------- ROC AUC


@pytest.mark.parametrize(("pos", "neg", "expected"), [
    ([0.9, 0.8], [0.1, 0.8], 0.875),            # pairs 1, 1, 1, 1/2
    ([0.9, 0.8, 0.7], [0.1, 0.8, 0.2], 7.5 / 9),
    ([1.0, 2.0], [0.0, -1.0], 1.0),
    ([0.0], [1.0, 2.0], 0.0),
    ([0.5, 0.5], [0.5], 0.5),                   # all tied
    ([0.3, 0.7], [0.5], 0.5),
])
def test_roc_auc_hand_computed(pos, neg, expected):
    assert roc_auc(pos, neg) == pytest.approx(expected, abs=1e-15)


def _auc_by_pairs(pos, neg):
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


@given(tied_scores, tied_scores)
def test_roc_auc_is_the_pairwise_probability_and_the_mann_whitney_u(pos, neg):
    auc = roc_auc(pos, neg)
    assert auc == pytest.approx(_auc_by_pairs(pos, neg), abs=1e-12)
    if len(set(pos + neg)) > 1:
        u = mannwhitneyu(pos, neg, alternative="two-sided", method="asymptotic").statistic
        assert auc == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)
    assert roc_auc(neg, pos) == pytest.approx(1 - auc, abs=1e-12)


# --------------------------------------------------------------------------- ARUC


def test_robustness_uniqueness_curve_by_hand():
    t, r, u = robustness_uniqueness_curve([0.2, 0.6, 0.6], [0.2, 0.4])
    assert t.tolist() == [0.2, 0.4, 0.6]
    assert r.tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])  # positives above each score
    assert u.tolist() == pytest.approx([1 / 2, 1.0, 1.0])    # negatives at or below


@pytest.mark.parametrize(("pos", "neg", "expected"), [
    ([1.0, 1.0], [0.0, 0.0], 1.0),             # perfect separation, point masses
    ([0.9], [-0.9], 1.0),                      # the gap is the whole observed range
    ([0.75, 1.0], [0.0, 0.25], 0.75),          # gap 0.5 at 1 + two spreads of 0.25 at 1/2
    ([0.0, 1.0], [0.0, 1.0], 0.5),             # complete overlap: 1/2 on (0, 1]
    ([0.1, 0.5, 0.9], [0.1, 0.5, 0.9], 1 / 3),  # complete overlap: 1/3 everywhere
    ([0.0], [1.0], 0.0),                       # inverted
    ([0.4, 0.4], [0.4], 0.0),                  # one value: no range, nothing separated
    # (0.2, 0.4]: min(2/3, 1/2) x 0.2; (0.4, 0.6]: min(2/3, 1) x 0.2; over a span of 0.4
    ([0.2, 0.6, 0.6], [0.2, 0.4], (0.5 * 0.2 + 2 / 3 * 0.2) / 0.4),
])
def test_aruc_hand_integrated(pos, neg, expected):
    assert aruc(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_aruc_with_a_fixed_score_range_counts_the_gap_in_that_range():
    # The papers' convention: thresholds over [0, 1]; the two classes 0.3 apart.
    assert aruc([0.8, 0.8], [0.5, 0.5], score_range=(0.0, 1.0)) == pytest.approx(0.3)
    assert aruc([0.75, 1.0], [0.0, 0.25], score_range=(-1.0, 1.0)) == pytest.approx(0.375)
    with pytest.raises(InvalidParameter, match="'score_range'.*holds every score"):
        aruc([1.5], [0.0], score_range=(0.0, 1.0))
    with pytest.raises(InvalidParameter, match="'score_range'"):
        aruc([1.0], [0.0], score_range=(1.0, 0.0))


def test_a_wider_gap_gives_a_larger_aruc():
    spread = np.linspace(0.0, 0.2, 11)
    values = [aruc(spread + gap, spread - gap) for gap in (0.0, 0.1, 0.5, 2.0, 10.0)]
    assert values == sorted(values) and values[-1] > 0.95 and values[0] < 0.8


def _aruc_on_a_grid(pos, neg, points=200_001):
    pos, neg = np.asarray(pos), np.asarray(neg)
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    t = np.linspace(lo, hi, points)[1:]
    r = (pos[None, :] >= t[:, None]).mean(axis=1)
    u = (neg[None, :] < t[:, None]).mean(axis=1)
    return np.minimum(r, u).mean()


@settings(max_examples=40, deadline=None)
@given(tied_scores, tied_scores)
def test_aruc_is_the_exact_integral_a_fine_grid_approaches(pos, neg):
    if max(pos + neg) == min(pos + neg):
        return
    assert aruc(pos, neg) == pytest.approx(_aruc_on_a_grid(pos, neg), abs=1e-4)


@given(tied_scores, tied_scores, st.floats(-5, 5), st.floats(0.1, 10))
def test_aruc_is_unchanged_by_affine_rescaling_and_symmetric_under_mirroring(pos, neg, shift, scale):
    value = aruc(pos, neg)
    assert 0.0 <= value <= 1.0
    rescaled = aruc(np.array(pos) * scale + shift, np.array(neg) * scale + shift)
    assert rescaled == pytest.approx(value, abs=1e-9)
    # Flipping the score and the roles of the classes swaps robustness and uniqueness.
    assert aruc(-np.array(neg), -np.array(pos)) == pytest.approx(value, abs=1e-12)


# --------------------------------------------------------------------------- TPR at FPR


@pytest.mark.parametrize(("max_fpr", "expected"), [(0.0, 0.25), (0.2, 0.25), (0.25, 0.75),
                                                   (0.5, 1.0), (1.0, 1.0)])
def test_tpr_at_fpr_with_ties(max_fpr, expected):
    pos, neg = [0.9, 0.8, 0.8, 0.3], [0.8, 0.5, 0.2, 0.1]
    assert tpr_at_fpr(pos, neg, max_fpr) == expected


def test_a_threshold_cannot_split_tied_scores():
    # Both positives are tied with a negative: detecting them costs that false positive.
    assert tpr_at_fpr([0.8, 0.8], [0.8, 0.1], 0.0) == 0.0
    assert tpr_at_fpr([0.8, 0.8], [0.8, 0.1], 0.49) == 0.0
    assert tpr_at_fpr([0.8, 0.8], [0.8, 0.1], 0.5) == 1.0
    assert tpr_at_fpr([0.5], [0.5], 0.0) == 0.0


def test_tpr_at_one_percent_fpr_reaches_one_negative_in_a_hundred():
    neg = np.arange(100) / 100           # 0.00 .. 0.99
    pos = [0.985, 0.995, 0.5]
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(2 / 3)   # threshold 0.98: one negative above
    assert tpr_at_fpr(pos, neg, 0.0) == pytest.approx(1 / 3)


@given(tied_scores, tied_scores, st.floats(0, 1))
def test_tpr_at_fpr_is_the_best_realisable_strict_threshold(pos, neg, max_fpr):
    best = 0.0
    for t in [-np.inf] + sorted(set(pos + neg)):
        tpr, fpr = rule_rates(pos, neg, t)
        if fpr <= max_fpr:
            best = max(best, tpr)
    assert tpr_at_fpr(pos, neg, max_fpr) == best
    assert tpr_at_fpr(pos, neg, 0.0) == np.mean(np.array(pos) > max(neg))
    assert tpr_at_fpr(pos, neg, 0.0) <= tpr_at_fpr(pos, neg, max_fpr) <= tpr_at_fpr(pos, neg, 1.0) == 1.0


# --------------------------------------------------------------------------- calibrated rule


@pytest.mark.parametrize(("n", "alpha", "k", "achieved"), [
    (9, 0.1, 9, 0.1),          # k = ceil(10 x 0.9) = 9: the maximum, exactly alpha
    (9, 0.05, 9, 0.1),         # k = 10 > n: the maximum, bound 1/10 > alpha
    (19, 0.05, 19, 0.05),
    (99, 0.01, 99, 0.01),
    (99, 0.05, 95, 0.05),
    (100, 0.1, 91, 10 / 101),  # ceil(90.9) = 91
    (149, 0.18, 123, 27 / 150),  # 150 x 0.82 = 123 exactly; floating point would give 124
    (1, 0.5, 1, 0.5),
])
def test_rank_threshold_order_statistic(n, alpha, k, achieved):
    scores = np.random.default_rng(n).permutation(np.arange(1, n + 1, dtype=float))
    threshold, bound = rank_threshold(scores, alpha)
    assert threshold == k
    assert bound == pytest.approx(achieved, abs=1e-15)
    assert bound <= alpha or k == n


def test_rank_threshold_bounds_the_false_positive_rate_of_an_exchangeable_newcomer():
    rng = np.random.default_rng(0)
    trials, n, alpha = 4000, 19, 0.1
    flagged = 0
    for _ in range(trials):
        reference = rng.normal(size=n)
        threshold, bound = rank_threshold(reference, alpha)
        flagged += rng.normal() > threshold
    assert bound == pytest.approx(0.1)
    # The rate is exactly 2/20 for continuous scores; 3 standard errors either side.
    assert abs(flagged / trials - 0.1) < 3 * np.sqrt(0.1 * 0.9 / trials)


def test_rule_rates_and_detection_rate_are_strict():
    assert rule_rates([0.9, 0.5, 0.4], [0.5, 0.1], 0.5) == (pytest.approx(1 / 3), 0.0)
    assert rule_rates([0.9, 0.5], [0.5, 0.1], 0.49) == (1.0, 0.5)
    assert rule_rates([0.1], [0.2], -np.inf) == (1.0, 1.0)
    assert detection_rate([0.2, 0.7, 0.9, 0.7], 0.7) == 0.25
    assert detection_rate([0.2, 0.7], np.inf) == 0.0


# --------------------------------------------------------------------------- bootstrap


POS = [0.91, 0.85, 0.8, 0.62, 0.55, 0.7, 0.4, 0.95, 0.66, 0.77]
NEG = [0.1, 0.3, 0.45, 0.2, 0.6, 0.05, 0.35, 0.5, 0.15, 0.25]


def test_bootstrap_ci_contains_the_estimate_and_is_deterministic_for_a_seed():
    low, high = bootstrap_ci(roc_auc, POS, NEG, n_boot=500, seed=3)
    assert 0.0 <= low <= roc_auc(POS, NEG) <= high <= 1.0
    assert low < high
    assert bootstrap_ci(roc_auc, POS, NEG, n_boot=500, seed=3) == (low, high)
    assert bootstrap_ci(roc_auc, POS, NEG, n_boot=500, seed=4) != (low, high)
    assert bootstrap_ci(aruc, POS, NEG, n_boot=200)[0] <= aruc(POS, NEG) <= bootstrap_ci(aruc, POS, NEG, n_boot=200)[1]


def test_bootstrap_ci_widens_with_the_level_and_takes_partials():
    narrow = bootstrap_ci(roc_auc, POS, NEG, n_boot=400, level=0.5)
    wide = bootstrap_ci(roc_auc, POS, NEG, n_boot=400, level=0.99)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]
    low, high = bootstrap_ci(partial(tpr_at_fpr, max_fpr=0.1), POS, NEG, n_boot=200)
    assert 0.0 <= low <= high <= 1.0
    assert bootstrap_ci(roc_auc, [2.0, 3.0], [0.0, 1.0], n_boot=50) == (1.0, 1.0)


def test_bootstrap_resamples_each_class_at_its_own_size():
    seen = []

    def metric(pos, neg):
        seen.append((len(pos), len(neg), set(pos) <= set(POS[:3]), set(neg) <= set(NEG)))
        return 0.0

    bootstrap_ci(metric, POS[:3], NEG, n_boot=20)
    assert seen == [(3, 10, True, True)] * 20


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("call", "name", "got"), [
    (lambda: roc_auc([], [0.1]), "pos_scores", "an empty array"),
    (lambda: roc_auc([0.2], [0.1, np.nan]), "neg_scores", "nan at index 1"),
    (lambda: aruc([np.inf], [0.1]), "pos_scores", "non-finite"),
    (lambda: tpr_at_fpr([[0.1, 0.2]], [0.1], 0.1), "pos_scores", "shape (1, 2)"),
    (lambda: tpr_at_fpr([0.1], ["a"], 0.1), "neg_scores", "not numeric"),
    (lambda: tpr_at_fpr([0.1], [0.2], 1.5), "max_fpr", "1.5"),
    (lambda: tpr_at_fpr([0.1], [0.2], -0.0001), "max_fpr", "-0.0001"),
    (lambda: rank_threshold([0.1, 0.2], 0.0), "alpha", "0.0"),
    (lambda: rank_threshold([0.1, 0.2], 1.0), "alpha", "1.0"),
    (lambda: rank_threshold(0.5, 0.1), "reference_scores", "a scalar"),
    (lambda: rule_rates([0.1], [0.2], float("nan")), "threshold", "nan"),
    (lambda: detection_rate([], 0.5), "scores", "an empty array"),
    (lambda: bootstrap_ci(roc_auc, [0.1], [0.2], n_boot=0), "n_boot", "0"),
    (lambda: bootstrap_ci(roc_auc, [0.1], [0.2], level=95), "level", "95"),
    (lambda: bootstrap_ci("auc", [0.1], [0.2]), "metric", "'auc'"),
    (lambda: calibrated_scale([0.1], [0.2]), "reference_scores", "at least 2"),
    (lambda: calibrated_scale([0.1], [0.2, 0.3], decades=0), "decades", "0"),
    (lambda: max_min_ru([0.1], []), "neg_scores", "an empty array"),
    (lambda: binomial_ci(3, 2), "successes", "3"),
    (lambda: binomial_ci(0, 0), "trials", "0"),
])
def test_bad_input_names_the_parameter(call, name, got):
    with pytest.raises(InvalidParameter) as error:
        call()
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert message.startswith(f"The {name!r} parameter of ")
    assert got in message


# --------------------------------------------------------------------------- calibrated scale, max-min, binomial


def _cosines(rng, n, centre, spread):
    return np.tanh(rng.normal(np.arctanh(centre), spread, n))


def test_a_perfectly_separated_case_scores_one_and_near_one_on_the_calibrated_scale():
    rng = np.random.default_rng(0)
    references = _cosines(rng, 40, 0.3, 0.1)       # independent models: cosines around 0.3
    negatives = _cosines(rng, 100, 0.3, 0.1)       # exchangeable with the references
    positives = _cosines(rng, 30, 0.97, 0.1)       # copies: cosines near 1
    assert positives.min() > negatives.max()
    assert max_min_ru(positives, negatives) == 1.0
    # on the raw cosine's range the area caps near 0.5 however well the classes separate ...
    raw = aruc(positives, negatives, score_range=(-1.0, 1.0))
    assert raw < 0.6
    # ... on the calibrated scale it means what the papers mean
    pos, neg = calibrated_scale(positives, references), calibrated_scale(negatives, references)
    assert aruc(pos, neg, score_range=(0.0, 1.0)) > 0.9
    assert np.median(neg) < 0.1 and pos.min() == 1.0


def test_the_calibrated_scale_keeps_the_order_and_puts_independent_models_near_zero():
    rng = np.random.default_rng(1)
    references = rng.normal(5.0, 2.0, 200)            # an unbounded score (no Fisher transform)
    scores = np.sort(rng.normal(5.0, 2.0, 500))
    values = calibrated_scale(scores, references)
    assert np.all(np.diff(values) >= 0) and values.min() >= 0 and values.max() <= 1
    # a p-value below 0.01 (0.2 on the scale at 10 decades) for about one independent model in a hundred
    assert 0.0 <= np.mean(values > 0.2) < 0.04
    assert roc_auc(calibrated_scale([9.0, 12.0], references), values) == roc_auc([9.0, 12.0], scores)
    # references with no spread: above them is 1, at or below them 0
    assert calibrated_scale([0.5, 0.7, 0.4], [0.5, 0.5]).tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(("pos", "neg", "expected"), [
    ([0.9, 0.8], [0.1, 0.2], 1.0),
    ([0.9, 0.3], [0.1, 0.5], 0.5),
    ([0.1], [0.9], 0.0),                  # inverted: no threshold detects and rejects
    ([0.5, 0.5], [0.5], 0.0),             # all tied
    ([0.9, 0.8, 0.4, 0.3], [0.1, 0.2, 0.35, 0.85], 0.75),
])
def test_max_min_ru_by_hand(pos, neg, expected):
    assert max_min_ru(pos, neg) == pytest.approx(expected)


@given(tied_scores, tied_scores)
@settings(max_examples=200, deadline=None)
def test_max_min_ru_is_one_exactly_when_the_classes_separate(pos, neg):
    assert (max_min_ru(pos, neg) == 1.0) == (min(pos) > max(neg))
    assert max_min_ru(pos, neg) == max_min_ru([3 * p + 1 for p in pos], [3 * n + 1 for n in neg])


def test_binomial_interval_covers_the_rate_and_shrinks_with_trials():
    low, high = binomial_ci(5, 100)
    assert low < 0.05 < high
    narrow = binomial_ci(50, 1000)
    assert low < narrow[0] < 0.05 < narrow[1] < high
    assert binomial_ci(0, 30)[0] == 0.0 and binomial_ci(30, 30)[1] == 1.0
    # exact: the upper end of 0 of n is 1 - (0.025) ** (1 / n)
    assert binomial_ci(0, 30)[1] == pytest.approx(1 - 0.025 ** (1 / 30))


# --------------------------------------------------------------------------- utility


def test_relative_utility_is_the_share_of_the_owners_and_the_gate_keeps_ninety_percent():
    shares = relative_utility([0.95, 0.855, 0.854, 0.285, 1.0, -0.2], 0.95)
    assert shares.tolist() == pytest.approx([1.0, 0.9, 0.854 / 0.95, 0.3, 1.0 / 0.95, -0.2 / 0.95])
    assert utility_kept(shares).tolist() == [True, True, False, False, True, False]  # 0.9 exactly is kept
    assert utility_kept(shares, keep=0.25).tolist() == [True, True, True, True, True, False]


@pytest.mark.parametrize(("call", "name"), [
    (lambda: relative_utility([0.5], 0.0), "owner_utility"),      # an owner no better than a trivial model
    (lambda: relative_utility([0.5], -0.3), "owner_utility"),
    (lambda: relative_utility([0.5], float("nan")), "owner_utility"),
    (lambda: relative_utility([], 0.9), "utilities"),
    (lambda: utility_kept([0.5], keep=0.0), "keep"),
    (lambda: utility_kept([float("nan")]), "relative"),
])
def test_bad_utility_input_names_the_parameter(call, name):
    with pytest.raises(InvalidParameter, match=repr(name)):
        call()
