"""How well a scheme's scores separate derived models from independent ones.

Pure functions over score arrays, one convention throughout: a **higher score means
"more likely derived"**. ``pos_scores`` are the scores of the positives (models derived
from the owner, label 1), ``neg_scores`` those of the negatives (independent models,
label 0). A hard decision is always the strict rule *derived iff score > threshold*.

>>> pos, neg = [0.9, 0.8, 0.7], [0.1, 0.8, 0.2]
>>> roc_auc(pos, neg)
0.8333333333333334
>>> tpr_at_fpr(pos, neg, max_fpr=0.0)
0.3333333333333333
>>> rule_rates(pos, neg, threshold=0.75)
(0.6666666666666666, 0.3333333333333333)

Every function checks its input and raises :class:`tafa.errors.InvalidParameter` (a
``ValueError``) naming the parameter when a score array is empty, not one-dimensional or
not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from ..errors import InvalidParameter, check_param

ScoreArray = Sequence[float] | np.ndarray

__all__ = [
    "aruc",
    "binomial_ci",
    "bootstrap_ci",
    "calibrated_scale",
    "evidence_decades",
    "detection_rate",
    "max_min_ru",
    "rank_threshold",
    "relative_utility",
    "robustness_uniqueness_curve",
    "roc_auc",
    "rule_rates",
    "tpr_at_fpr",
    "utility_kept",
]


def _scores(name: str, value: object, caller: str) -> np.ndarray:
    """``value`` as a 1-D float array, or :class:`InvalidParameter` naming ``name``."""
    must_be = "a non-empty one-dimensional array of finite numbers"
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InvalidParameter(
            f"The {name!r} parameter of {caller} must be {must_be}. "
            f"Got a {type(value).__name__} that is not numeric instead.") from None
    if array.ndim != 1:
        got = "a scalar" if array.ndim == 0 else f"an array of shape {array.shape}"
    elif array.size == 0:
        got = "an empty array"
    elif not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array))
        got = (f"an array with {bad.size} non-finite value(s) "
               f"({float(array[bad[0]])!r} at index {int(bad[0])})")
    else:
        return array
    raise InvalidParameter(f"The {name!r} parameter of {caller} must be {must_be}. Got {got} instead.")


def _rate(name: str, value: object, caller: str, *, low_open: bool, high_open: bool) -> float:
    """A number in [0, 1] (ends open as asked), or :class:`InvalidParameter`."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else math.nan  # type: ignore[arg-type]
    ok = ok and math.isfinite(number) and (0 < number if low_open else 0 <= number) \
        and (number < 1 if high_open else number <= 1)
    interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
    check_param(name, value, f"a number in {interval}", ok, caller=caller)
    return number


def roc_auc(pos_scores: ScoreArray, neg_scores: ScoreArray) -> float:
    """Area under the ROC curve, in its Mann-Whitney form.

    The probability that a random positive scores higher than a random negative, a tie
    counting one half: ``mean over pairs of [p > n] + 0.5 [p == n]``. 1 is perfect
    separation, 0.5 chance, 0 perfectly inverted.

    >>> roc_auc([0.9, 0.8], [0.1, 0.8])  # pairs: 1, 1, 1, 1/2
    0.875
    >>> roc_auc([0.5], [0.5])
    0.5
    """
    pos = _scores("pos_scores", pos_scores, "roc_auc")
    neg = np.sort(_scores("neg_scores", neg_scores, "roc_auc"))
    below = np.searchsorted(neg, pos, side="left")
    below_or_tied = np.searchsorted(neg, pos, side="right")
    wins = below.sum() + 0.5 * (below_or_tied - below).sum()
    return float(wins / (pos.size * neg.size))


def robustness_uniqueness_curve(pos_scores: ScoreArray, neg_scores: ScoreArray
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robustness and uniqueness as step functions of the threshold ``t``.

    For the rule *derived iff score >= t* (IPGuard, Cao et al. 2021, Sec. 5.1; MetaV,
    Pan et al. 2022, Sec. 5.1): robustness(t) is the fraction of positives detected,
    uniqueness(t) the fraction of negatives rejected. Both are piecewise constant and
    change only at observed scores. Returns ``(thresholds, robustness, uniqueness)``:
    ``thresholds`` are the distinct scores ``u_0 < ... < u_m`` and the rates at index
    ``j`` hold on the open interval just right of ``u_j`` (up to ``u_{j+1}``, or beyond
    ``u_m`` for the last). Left of ``u_0`` robustness is 1 and uniqueness 0.

    >>> t, r, u = robustness_uniqueness_curve([0.6, 0.9], [0.1, 0.6])
    >>> t.tolist(), r.tolist(), u.tolist()
    ([0.1, 0.6, 0.9], [1.0, 0.5, 0.0], [0.5, 1.0, 1.0])
    """
    pos = np.sort(_scores("pos_scores", pos_scores, "robustness_uniqueness_curve"))
    neg = np.sort(_scores("neg_scores", neg_scores, "robustness_uniqueness_curve"))
    thresholds = np.unique(np.concatenate([pos, neg]))
    robustness = 1.0 - np.searchsorted(pos, thresholds, side="right") / pos.size
    uniqueness = np.searchsorted(neg, thresholds, side="right") / neg.size
    return thresholds, robustness, uniqueness


def aruc(pos_scores: ScoreArray, neg_scores: ScoreArray,
         score_range: tuple[float, float] | None = None) -> float:
    """Area under min(robustness(t), uniqueness(t)) over the threshold range, in [0, 1].

    The ARUC of IPGuard (Cao, Jia and Gong, AsiaCCS 2021, Sec. 5.1) and MetaV (Pan et al.,
    KDD 2022, Sec. 5.1): robustness(t) is the fraction of positive suspects detected by
    the threshold ``t``, uniqueness(t) the fraction of negative suspects rejected (see
    :func:`robustness_uniqueness_curve`), and ARUC is the area under the lower envelope
    ``min(robustness, uniqueness)`` as ``t`` sweeps the range of the score. Those papers
    threshold a matching rate or a probability, so their range is ``[0, 1]`` and the
    area needs no normalisation; tafa's schemes score on different scales, so here

        ARUC = (1 / (hi - lo)) * integral over [lo, hi] of min(R(t), U(t)) dt

    where ``[lo, hi]`` is ``score_range`` when given (pass ``(0, 1)`` to reproduce the
    papers on probability-like scores) and otherwise the span of all observed scores,
    ``[min, max]`` of positives and negatives together. The integrand is piecewise
    constant between consecutive distinct scores and zero outside them, so the integral
    is an exact finite sum (no grid); whether the rule uses ``>`` or ``>=`` changes the
    integrand only at finitely many points and not the area.

    What the value means:

    - Perfect separation (``min(pos) > max(neg)``) gives at least the gap over the range,
      ``(min(pos) - max(neg)) / (hi - lo)``, plus the area where the classes' own spreads
      are partly covered; with the default range it is exactly 1 only when all positives
      share one score and all negatives another. The wider the gap relative to the
      spread, the closer to 1.
    - Perfectly inverted scores give 0; so do identical scores everywhere (no range).
    - It is not chance-corrected: identically distributed scores give
      ``integral min(F, 1 - F)`` over the range, for example 1/4 for uniform scores and
      1/2 for ``pos = neg = [0, 1]``. Compare schemes by it, not against a fixed 0.5.
    - Unlike the AUC it depends on the scale of the scores, not only on their order.

    >>> aruc([1.0, 1.0], [0.0, 0.0])      # perfect, point masses
    1.0
    >>> aruc([0.75, 1.0], [0.0, 0.25])    # gap 0.5 at 1, two spreads of 0.25 at 1/2
    0.75
    >>> aruc([0.75, 1.0], [0.0, 0.25], score_range=(-1.0, 1.0))
    0.375
    >>> aruc([0.0], [1.0])                # inverted
    0.0
    """
    caller = "aruc"
    pos = _scores("pos_scores", pos_scores, caller)
    neg = _scores("neg_scores", neg_scores, caller)
    thresholds, robustness, uniqueness = robustness_uniqueness_curve(pos, neg)
    if score_range is None:
        lo, hi = float(thresholds[0]), float(thresholds[-1])
        if hi == lo:
            return 0.0
    else:
        ok = (isinstance(score_range, (tuple, list)) and len(score_range) == 2
              and all(isinstance(v, (int, float, np.integer, np.floating)) for v in score_range)
              and all(math.isfinite(float(v)) for v in score_range)
              and float(score_range[0]) < float(score_range[1]))
        check_param("score_range", score_range, "None or a pair (lo, hi) of finite numbers with lo < hi",
                    ok, caller=caller)
        lo, hi = float(score_range[0]), float(score_range[1])
        check_param("score_range", score_range,
                    f"a range that holds every score (they span [{thresholds[0]!r}, {thresholds[-1]!r}])",
                    lo <= thresholds[0] and thresholds[-1] <= hi, caller=caller)
    widths = np.diff(thresholds)
    area = float(np.sum(widths * np.minimum(robustness[:-1], uniqueness[:-1])))
    return min(1.0, area / (hi - lo))


def tpr_at_fpr(pos_scores: ScoreArray, neg_scores: ScoreArray, max_fpr: float) -> float:
    """The highest true-positive rate of any threshold whose false-positive rate is <= ``max_fpr``.

    The rule is *derived iff score > threshold*. Only thresholds that can be realised
    count: a threshold never splits tied scores, so a positive tied with a negative is
    detected only together with it. ``max_fpr=0`` gives the TPR at zero false positives,
    the fraction of positives scoring strictly above every negative.

    >>> pos, neg = [0.9, 0.8, 0.8, 0.3], [0.8, 0.5, 0.2, 0.1]
    >>> tpr_at_fpr(pos, neg, 0.0)      # above 0.8: only 0.9
    0.25
    >>> tpr_at_fpr(pos, neg, 0.25)     # above 0.5: 0.9, 0.8, 0.8 with one negative
    0.75
    >>> tpr_at_fpr(pos, neg, 0.5)      # above 0.2
    1.0
    """
    caller = "tpr_at_fpr"
    pos = np.sort(_scores("pos_scores", pos_scores, caller))
    neg = np.sort(_scores("neg_scores", neg_scores, caller))
    limit = _rate("max_fpr", max_fpr, caller, low_open=False, high_open=False)
    # Every realisable rule is "> t" for t = -inf or t = an observed score.
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([pos, neg]))])
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="right")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="right")) / neg.size
    return float(tpr[fpr <= limit].max())  # the top threshold always has fpr == 0


def rank_threshold(reference_scores: ScoreArray, alpha: float) -> tuple[float, float]:
    """The distribution-free threshold for a false-positive rate of at most ``alpha``.

    ``reference_scores`` are the scores of ``n`` independent (negative) reference models.
    The threshold is their ``k``-th smallest value with ``k = ceil((n + 1)(1 - alpha))``.
    If a new independent model is exchangeable with the references, the rule
    *derived iff score > threshold* flags it with probability at most
    ``(n + 1 - k) / (n + 1) <= alpha`` (the rank argument of split conformal
    prediction; ties only make the rule more conservative). When ``k > n`` no order
    statistic reaches ``alpha``: the maximum is returned and the bound it achieves,
    ``1 / (n + 1)``, is larger than ``alpha``; compare the returned bound with ``alpha``.

    Returns ``(threshold, achieved_alpha)``; ``alpha`` is read as the decimal it is
    written as, so that ``(n + 1)(1 - alpha)`` landing on an integer is not rounded up.

    >>> rank_threshold(range(1, 10), 0.1)      # n = 9: k = 9, the maximum
    (9.0, 0.1)
    >>> rank_threshold(range(1, 10), 0.05)     # k = 10 > n: the maximum, bound 1/10
    (9.0, 0.1)
    >>> rank_threshold(range(1, 100), 0.05)    # n = 99: k = 95
    (95.0, 0.05)
    """
    caller = "rank_threshold"
    scores = np.sort(_scores("reference_scores", reference_scores, caller))
    level = _rate("alpha", alpha, caller, low_open=True, high_open=True)
    n = scores.size
    k = math.ceil((n + 1) * (1 - Fraction(repr(level))))
    k = min(max(k, 1), n)
    return float(scores[k - 1]), (n + 1 - k) / (n + 1)


def rule_rates(pos_scores: ScoreArray, neg_scores: ScoreArray, threshold: float) -> tuple[float, float]:
    """``(tpr, fpr)`` of the rule *derived iff score > threshold*.

    >>> rule_rates([0.9, 0.5], [0.5, 0.1], 0.5)
    (0.5, 0.0)
    """
    caller = "rule_rates"
    pos = _scores("pos_scores", pos_scores, caller)
    neg = _scores("neg_scores", neg_scores, caller)
    cut = _threshold(threshold, caller)
    return float(np.mean(pos > cut)), float(np.mean(neg > cut))


def detection_rate(scores: ScoreArray, threshold: float) -> float:
    """Fraction of ``scores`` judged derived by the rule *score > threshold*.

    For the models of one attack family it is the family's detection rate; for one
    family of independent models, its false-positive rate.

    >>> detection_rate([0.2, 0.7, 0.9, 0.7], 0.7)
    0.25
    """
    caller = "detection_rate"
    values = _scores("scores", scores, caller)
    return float(np.mean(values > _threshold(threshold, caller)))


def _threshold(threshold: object, caller: str) -> float:
    ok = isinstance(threshold, (int, float, np.integer, np.floating)) and not isinstance(threshold, bool) \
        and not math.isnan(float(threshold))
    check_param("threshold", threshold, "a number (may be +-inf, not NaN)", ok, caller=caller)
    return float(threshold)  # type: ignore[arg-type]


def bootstrap_ci(metric: Callable[[np.ndarray, np.ndarray], float],
                 pos_scores: ScoreArray, neg_scores: ScoreArray, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric(pos_scores, neg_scores)``.

    Each of ``n_boot`` replicates resamples the positives and the negatives separately,
    with replacement and at their own sizes (a stratified bootstrap, so every replicate
    has both classes), and evaluates ``metric`` on them; the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates. The same
    ``seed`` gives the same interval. For a metric with extra parameters pass a
    ``functools.partial``, e.g. ``partial(tpr_at_fpr, max_fpr=0.01)``.

    The percentile interval is not guaranteed to contain the point estimate (it need
    not for biased statistics such as a TPR at FPR = 0 on few negatives), and with a
    dozen models per class it is rough: read it as an order of magnitude.

    >>> low, high = bootstrap_ci(roc_auc, [0.9, 0.8, 0.6, 0.4], [0.5, 0.3, 0.2, 0.1], n_boot=200)
    >>> 0.5 <= low <= roc_auc([0.9, 0.8, 0.6, 0.4], [0.5, 0.3, 0.2, 0.1]) <= high <= 1.0
    True
    """
    caller = "bootstrap_ci"
    check_param("metric", metric, "a callable metric(pos_scores, neg_scores) -> float",
                callable(metric), caller=caller)
    pos = _scores("pos_scores", pos_scores, caller)
    neg = _scores("neg_scores", neg_scores, caller)
    check_param("n_boot", n_boot, "an integer >= 1",
                isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 1,
                caller=caller)
    level = _rate("level", level, caller, low_open=True, high_open=True)
    check_param("seed", seed, "an integer", isinstance(seed, (int, np.integer)) and not isinstance(seed, bool),
                caller=caller)
    rng = np.random.default_rng(seed)
    replicates = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        replicates[b] = metric(pos[rng.integers(0, pos.size, pos.size)],
                               neg[rng.integers(0, neg.size, neg.size)])
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


#: Decades of significance that fill the calibrated scale: a p-value of 10**-CALIBRATED_DECADES
#: or smaller maps to 1 (see :func:`calibrated_scale`).
CALIBRATED_DECADES = 10.0


def calibrated_scale(scores: ScoreArray, reference_scores: ScoreArray,
                     decades: float = CALIBRATED_DECADES) -> np.ndarray:
    """Scores of any scheme on one common [0, 1] scale: ``-log10(p) / decades``, capped at 1.

    ``p`` is the upper-tail p-value of each score against the calibration references (the
    scores of independent models): the parametric tail that the calibrated rule falls back
    on, a normal fitted to the references after the Fisher transform ``atanh`` when they
    all lie in ``[-1, 1]`` (similarities, probabilities), or to the raw scores otherwise.
    A score at the references' mean maps to ``log10(2) / decades`` (0.03 at 10 decades),
    one at the rule's alpha = 0.01 tail to 0.2, and a score ``decades`` decades beyond
    any independent model to 1. Independent models (exchangeable with the references)
    therefore sit near 0 and clear copies near 1 on every scheme alike, whatever its raw
    range: this is the scale on which :func:`aruc` means what IPGuard's and MetaV's ARUC
    mean (their matching rates and probabilities are near 0 for independent models). The
    map is increasing in the score, so the AUC and TPR at a false-positive rate do not
    change; it is a reporting scale, not a decision rule (the rule's bound is the rank
    one where the references allow it). References with no spread give 0 at or below
    their value and 1 above it.

    >>> values = calibrated_scale([0.3, 0.99, -0.5], [0.2, 0.3, 0.4, 0.25, 0.35])
    >>> [round(float(v), 2) for v in values]
    [0.03, 1.0, 0.0]
    """
    caller = "calibrated_scale"
    ok = isinstance(decades, (int, float)) and not isinstance(decades, bool) and math.isfinite(decades) \
        and decades > 0
    check_param("decades", decades, "a number > 0", ok, caller=caller)
    return np.clip(evidence_decades(scores, reference_scores, caller=caller) / float(decades), 0.0, 1.0)


def evidence_decades(scores: ScoreArray, reference_scores: ScoreArray, *, caller: str = "evidence_decades"
                     ) -> np.ndarray:
    """``-log10(p)`` of each score against the references, uncapped (:func:`calibrated_scale`
    caps it at its number of decades and divides): the order the pooled figures rank models
    of several owners by, where the cap would tie clear copies with an independent model that
    also passes it (a scheme whose independent models score in a tight cluster, e.g. MetaV's
    probabilities near 0). References with no spread give 0 at or below their value and
    :data:`CALIBRATED_DECADES` above it.

    >>> [round(float(v), 2) for v in evidence_decades([0.3, 0.99], [0.2, 0.3, 0.4, 0.25, 0.35])]
    [0.29, 157.3]
    """
    values = _scores("scores", scores, caller)
    refs = _scores("reference_scores", reference_scores, caller)
    check_param("reference_scores", refs.size, "at least 2 scores", refs.size >= 2, caller=caller)
    from scipy.stats import norm

    bounded = bool(np.all(np.abs(refs) <= 1.0))
    if bounded:
        refs = np.arctanh(np.clip(refs, -1 + 1e-9, 1 - 1e-9))
        values = np.arctanh(np.clip(values, -1 + 1e-9, 1 - 1e-9))
    mean, spread = float(np.mean(refs)), float(np.std(refs, ddof=1))
    if spread <= 1e-12 * max(1.0, abs(mean)):
        return (values > mean).astype(float) * CALIBRATED_DECADES
    return np.maximum(-norm.logsf((values - mean) / spread) / math.log(10), 0.0)


def max_min_ru(pos_scores: ScoreArray, neg_scores: ScoreArray) -> float:
    """The best threshold's ``min(robustness, uniqueness)``: max over ``t`` of min(R(t), U(t)).

    1 exactly when the classes separate (every positive above every negative), whatever
    the scale of the scores; otherwise the largest fraction ``f`` such that one threshold
    detects a fraction ``f`` of the positives while rejecting a fraction ``f`` of the
    negatives. Unlike :func:`aruc` it depends only on the order of the scores.

    >>> max_min_ru([0.9, 0.8], [0.1, 0.2])
    1.0
    >>> max_min_ru([0.9, 0.3], [0.1, 0.5])   # any threshold misses one of the four
    0.5
    """
    caller = "max_min_ru"
    pos = _scores("pos_scores", pos_scores, caller)
    neg = _scores("neg_scores", neg_scores, caller)
    _, robustness, uniqueness = robustness_uniqueness_curve(pos, neg)
    return float(np.max(np.minimum(robustness, uniqueness)))


def binomial_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval for a binomial rate: ``successes`` of ``trials``.

    Used for the calibrated rule's false-positive rate on a family of independent models:
    the rule keeps its promise when ``alpha`` lies inside (or above) the interval.

    >>> [round(v, 4) for v in binomial_ci(0, 20)]
    [0.0, 0.1684]
    >>> [round(v, 4) for v in binomial_ci(5, 100)]
    [0.0164, 0.1128]
    """
    caller = "binomial_ci"
    integer = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
    check_param("trials", trials, "an integer >= 1", integer(trials) and trials >= 1, caller=caller)
    check_param("successes", successes, f"an integer in [0, {trials}]",
                integer(successes) and 0 <= successes <= trials, caller=caller)
    level = _rate("level", level, caller, low_open=True, high_open=True)
    from scipy.stats import beta

    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def relative_utility(utilities: ScoreArray, owner_utility: float) -> np.ndarray:
    """Each model's utility as a share of the owner's: ``utility / owner_utility``.

    Utilities are skill scores (accuracy, R^2, the decoders' sample R^2: 1 is perfect, 0 a
    trivial model, below 0 worse than trivial), so the share reads the same for every output
    kind: 0.9 keeps nine tenths of what the owner achieves over a trivial model, above 1 does
    better than the owner. The owner's utility must be above 0 (an owner no better than a
    trivial model leaves nothing to keep).

    >>> relative_utility([0.95, 0.285, 1.0], 0.95).round(3).tolist()
    [1.0, 0.3, 1.053]
    """
    caller = "relative_utility"
    values = _scores("utilities", utilities, caller)
    ok = isinstance(owner_utility, (int, float, np.integer, np.floating)) and not isinstance(owner_utility, bool) \
        and math.isfinite(float(owner_utility)) and float(owner_utility) > 0
    check_param("owner_utility", owner_utility, "a finite number > 0", ok, caller=caller)
    return values / float(owner_utility)


def utility_kept(relative: ScoreArray, keep: float = 0.9) -> np.ndarray:
    """Which models keep at least ``keep`` of the owner's utility (a boolean mask over
    ``relative``, the shares of :func:`relative_utility`).

    >>> utility_kept([1.02, 0.9, 0.3]).tolist()
    [True, True, False]
    """
    caller = "utility_kept"
    values = _scores("relative", relative, caller)
    ok = isinstance(keep, (int, float, np.integer, np.floating)) and not isinstance(keep, bool) \
        and math.isfinite(float(keep)) and float(keep) > 0
    check_param("keep", keep, "a finite number > 0", ok, caller=caller)
    return values >= float(keep) - 1e-12
