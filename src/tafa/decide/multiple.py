"""Many fingerprints, one suspect: error control over a family of fingerprints.

A suspect checked against ``m`` fingerprints gets ``m`` chances to match by accident. The
functions here decide all ``m`` at once from a **null panel**: ``n`` models known to be
independent of every owner, each scored against the same fingerprints (a score table of
``n`` rows and ``m`` columns; higher scores mean "more like the owner").

- :func:`max_t` (Westfall-Young single-step max-T): each fingerprint's scores are
  standardised over the panel *and the suspect* (mean and standard deviation of the ``n + 1``
  scores), every panel model's statistic is its largest standardised score over the
  fingerprints, and fingerprint ``i`` gets the adjusted p-value
  ``(1 + #{panel maxima >= suspect's z_i}) / (n + 1)``. Standardising with the suspect
  included treats the suspect and the panel models alike, so under the null (the suspect is
  one more model like the panel's) its largest statistic is equally likely to hold any rank
  among the ``n + 1``: the chance that *any* fingerprint's adjusted p-value is ``<= alpha``
  is at most ``floor(alpha (n + 1)) / (n + 1) <= alpha``, whatever the dependence between the
  fingerprints. The smallest p-value a panel of ``n`` can give is ``1 / (n + 1)``.
- :func:`panel_p_values`: one p-value per fingerprint, the suspect's rank among the panel's
  scores of that fingerprint (``(1 + #{panel >= suspect}) / (n + 1)``).
- :func:`benjamini_hochberg`: which of many p-values to list at false-discovery rate ``q``.
- :func:`by_group`: a panel of several groups of independent models (say, models of the
  owners' own architecture and data, and models trained by others) bounds the rate for a
  suspect drawn like the panel *as a whole*, and a group harder than the average can exceed
  it. The largest p-value over the groups, each group taken as a panel of its own, bounds it
  for a suspect drawn like *any one* group (each group must then support ``alpha`` alone).

Entries that are not finite (a fingerprint that did not fit a model, a failed score) are left
out: a fingerprint the suspect has no score for gets p-value ``nan``; panel rows missing a
score the suspect has are dropped for that suspect.

>>> panel = np.array([[0.1, 0.2], [0.2, 0.1], [0.0, 0.3], [0.3, 0.0]])
>>> max_t(np.array([0.9, 0.2]), panel).round(3).tolist()
[0.2, 0.6]
>>> panel_p_values(np.array([0.9, 0.2]), panel).round(3).tolist()
[0.2, 0.6]
>>> benjamini_hochberg(np.array([0.01, 0.036, 0.03, 0.5]), 0.05).tolist()
[True, True, True, False]
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..errors import check_param


def smallest_p(panel_size: int) -> float:
    """The smallest p-value a null panel of ``panel_size`` models can give: ``1 / (n + 1)``."""
    return 1.0 / (panel_size + 1)


def panel_needed(alpha: float) -> int:
    """How many panel models a bound of ``alpha`` needs (``1 / (n + 1) <= alpha``)."""
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-12))


def attained_bound(alpha: float, panel_size: int) -> float:
    """The exact bound that deciding ``p <= alpha`` attains with a panel of ``panel_size``:
    ``floor(alpha (n + 1)) / (n + 1)`` (0 when the panel cannot reach ``alpha``)."""
    return math.floor(alpha * (panel_size + 1) + 1e-12) / (panel_size + 1)


def rate_for_this_panel(alpha: float, panel_size: int, confidence: float = 0.9) -> float | None:
    """How high the family-wise rate can be *for the one panel a scan uses*, with probability
    ``confidence`` over the draw of that panel (``None`` when the panel cannot reach ``alpha``).

    The max-T bound ``floor(alpha (n + 1)) / (n + 1)`` is an average over panels. Deciding
    ``p <= alpha`` lets a suspect through when fewer than ``k = floor(alpha (n + 1))`` panel
    maxima reach it, so the rate for a given panel is the chance mass above the k-th largest of
    n exchangeable maxima: a Beta(k, n + 1 - k) variable, whose ``confidence`` quantile this is
    (the r with ``P(Binomial(n, r) <= k - 1) = 1 - confidence``, by bisection). At the smallest
    panel that supports alpha (k = 1) its spread is as large as alpha itself: 19 models at 0.05
    give 0.114 at 90 %, 59 give 0.088, 199 give 0.070.

    >>> round(rate_for_this_panel(0.05, 19), 3), round(rate_for_this_panel(0.05, 59), 3)
    (0.114, 0.088)
    """
    check_param("confidence", confidence, "a number in (0, 1)",
                isinstance(confidence, (int, float)) and 0 < confidence < 1, caller="rate_for_this_panel")
    allowed = math.floor(alpha * (panel_size + 1) + 1e-12)
    if allowed == 0:
        return None

    def below(rate: float) -> float:  # P(Binomial(n, rate) <= allowed - 1), in logs (large panels)
        n = panel_size
        return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                            + i * math.log(rate) + (n - i) * math.log1p(-rate)) for i in range(allowed))

    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if below(middle) > 1 - confidence else (low, middle)
    return high


def _table(suspect: np.ndarray, panel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(suspect's finite columns, their scores, the panel rows finite on all of them)."""
    suspect = np.asarray(suspect, dtype=np.float64)
    panel = np.asarray(panel, dtype=np.float64)
    check_param("panel", panel.shape, f"a table of (models, {suspect.shape[-1] if suspect.ndim else 0}) scores",
                suspect.ndim == 1 and panel.ndim == 2 and panel.shape[1] == suspect.shape[0], caller="max_t")
    columns = np.flatnonzero(np.isfinite(suspect))
    rows = panel[:, columns]
    rows = rows[np.all(np.isfinite(rows), axis=1)]
    return columns, suspect[columns], rows


def standardise(suspect: np.ndarray, panel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column of ``panel`` and entry of ``suspect`` as a z-score over the column's panel
    scores and the suspect's score together (population standard deviation; a constant
    column gives zeros). Returns (suspect's z, panel's z)."""
    everything = np.vstack([panel, suspect[None, :]])
    mean = everything.mean(axis=0)
    spread = everything.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    return (suspect - mean) / scale, (panel - mean) / scale


def max_t(suspect: np.ndarray, panel: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """Westfall-Young single-step max-T adjusted p-values of one suspect, one per fingerprint
    (see module doc); ``nan`` where the suspect has no score. ``suspect``: ``m`` scores;
    ``panel``: ``n x m`` scores of the null panel. ``floor``: a lower bound for each panel
    row's statistic (its largest standardised score in columns left out; rows finite on every
    column the suspect has, as :func:`max_t_unknown` passes them)."""
    suspect = np.asarray(suspect, dtype=np.float64)
    result = np.full(suspect.shape, np.nan)
    columns, scores, rows = _table(suspect, panel)
    if len(columns) == 0:
        return result
    z, panel_z = standardise(scores, rows)
    maxima = panel_z.max(axis=1) if len(rows) else np.zeros(0)
    if floor is not None and len(rows):
        maxima = np.maximum(maxima, floor)
    # ties count against the suspect; a little slack absorbs rounding in the standardisation
    exceeding = (maxima[None, :] >= z[:, None] - 1e-12).sum(axis=1)
    result[columns] = (1.0 + exceeding) / (len(rows) + 1.0)
    return result


def max_t_threshold(suspect: np.ndarray, panel: np.ndarray, column: int, alpha: float,
                    floor: np.ndarray | None = None) -> float | None:
    """The smallest score fingerprint ``column`` would need, the suspect's other scores kept,
    for its max-T p-value to be ``<= alpha`` (found by bisection; ``None`` when no score
    reaches it, e.g. the panel is too small for ``alpha``). ``floor``: as :func:`max_t`'s."""
    suspect = np.asarray(suspect, dtype=np.float64)
    if not np.isfinite(suspect[column]):
        return None
    columns, scores, rows = _table(suspect, panel)
    if attained_bound(alpha, len(rows)) == 0:
        return None
    position = int(np.flatnonzero(columns == column)[0])
    z, panel_z = standardise(scores, rows)
    others = np.delete(panel_z, position, axis=1).max(axis=1, initial=-np.inf)  # do not move with the score
    if floor is not None:
        others = np.maximum(others, floor)
    values = rows[:, position]
    allowed = math.floor(alpha * (len(rows) + 1) + 1e-12)  # p <= alpha: at most allowed - 1 maxima >= z

    def passes(candidates: np.ndarray) -> np.ndarray:
        """Whether each candidate score would give p <= alpha (one column per candidate)."""
        everything = np.vstack([np.repeat(values[:, None], len(candidates), axis=1), candidates[None, :]])
        mean, spread = everything.mean(axis=0), everything.std(axis=0)
        scale = np.where(spread > 0, spread, 1.0)
        maxima = np.maximum(others[:, None], (values[:, None] - mean) / scale)
        return (maxima >= (candidates - mean) / scale - 1e-12).sum(axis=0) + 1 <= allowed

    low = float(min(values.min(), scores[position]))
    top = float(max(values.max(), scores[position]))
    span = max(top - low, 1e-6)
    low, high = low - span, top + span
    for _ in range(8):  # a score far enough above the panel passes unless others' maxima block it
        if passes(np.array([high]))[0]:
            break
        high += 4 * (high - low)
    else:
        return None
    for _ in range(4):  # refine on grids: the first passing candidate, between it and the one below
        grid = np.linspace(low, high, 65)
        first = int(np.argmax(passes(grid)))
        if first == 0:
            return float(grid[0])
        low, high = float(grid[first - 1]), float(grid[first])
    return high


def sup_standardised(column: np.ndarray) -> np.ndarray:
    """For each of ``n`` values, the largest z-score it can have once one more value, unknown,
    joins them (mean and population standard deviation of the ``n + 1``): the unknown value at
    the least favourable place for it. As the unknown value goes to minus infinity every z-score
    tends to ``1 / sqrt(n)`` (to plus infinity, to its opposite); the stationary points in
    between solve a quadratic, and the largest is the larger of the two.

    >>> sup_standardised(np.array([0.0, 1.0, 2.0])).round(3).tolist()
    [0.577, 0.577, 1.528]
    """
    values = np.asarray(column, dtype=np.float64)
    n = len(values)
    total, squares, count = values.sum(), np.square(values).sum(), n + 1

    def z(x: float, s: np.ndarray) -> np.ndarray:
        mean = (total + s) / count
        spread = np.sqrt(np.maximum((squares + s * s) / count - mean * mean, 0.0))
        return np.where(spread > 0, (x - mean) / np.where(spread > 0, spread, 1.0), 0.0)

    best = np.zeros(n)
    probe = np.array([-1.0, 0.0, 1.0])
    for i, x in enumerate(values):
        # the stationary condition var(s) + (x - mean(s)) (s - mean(s)) = 0 is a quadratic in s: fit it exactly
        mean = (total + probe) / count
        condition = (squares + probe * probe) / count - mean * mean + (x - mean) * (probe - mean)
        roots = np.roots(np.polyfit(probe, condition, 2))
        real = roots[np.abs(roots.imag) < 1e-9].real
        best[i] = max(1.0 / math.sqrt(n), float(z(x, real).max(initial=-np.inf)))
    return best


def max_t_unknown(suspect: np.ndarray, panel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`max_t` for a suspect some of whose scores are not known (``nan``: not measured),
    the panel known everywhere: each panel row's standardised score in an unknown column taken
    at the largest any score of the suspect there could make it (:func:`sup_standardised`), so
    that the p-values of the known columns are never below those max-T would give with every
    score known. Returns (p-values, the panel rows used, each row's floor for
    :func:`max_t_threshold`)."""
    suspect = np.asarray(suspect, dtype=np.float64)
    panel = np.asarray(panel, dtype=np.float64)
    rows = panel[np.all(np.isfinite(panel), axis=1)]
    unknown = np.flatnonzero(~np.isfinite(suspect))
    floor = np.full(len(rows), -np.inf)
    for column in unknown:
        floor = np.maximum(floor, sup_standardised(rows[:, column]))
    return max_t(suspect, rows, floor), rows, floor


def panel_p_values(suspect: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """Per-fingerprint p-values of one suspect: its rank among each column's panel scores
    (``(1 + #{panel >= suspect}) / (n + 1)``, ``n`` the column's finite panel scores; ``nan``
    where the suspect or the whole column has no score)."""
    suspect = np.asarray(suspect, dtype=np.float64)
    panel = np.asarray(panel, dtype=np.float64)
    check_param("panel", panel.shape, f"a table of (models, {suspect.shape[-1] if suspect.ndim else 0}) scores",
                suspect.ndim == 1 and panel.ndim == 2 and panel.shape[1] == suspect.shape[0],
                caller="panel_p_values")
    result = np.full(suspect.shape, np.nan)
    for column in np.flatnonzero(np.isfinite(suspect)):
        values = panel[:, column][np.isfinite(panel[:, column])]
        if len(values):
            result[column] = (1.0 + np.sum(values >= suspect[column])) / (len(values) + 1.0)
    return result


def benjamini_hochberg(p_values: np.ndarray, q: float) -> np.ndarray:
    """Which p-values the Benjamini-Hochberg step-up procedure lists at false-discovery rate
    ``q``: the ``k`` smallest, ``k`` the largest rank with ``p_(k) <= q k / m`` (``m`` the
    finite p-values; ``nan`` never listed)."""
    check_param("q", q, "a number in (0, 1)", isinstance(q, (int, float)) and 0 < q < 1,
                caller="benjamini_hochberg")
    p = np.asarray(p_values, dtype=np.float64)
    listed = np.zeros(p.shape, dtype=bool)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite) == 0:
        return listed
    order = finite[np.argsort(p[finite], kind="stable")]
    ranks = np.arange(1, len(order) + 1)
    passing = np.flatnonzero(p[order] <= q * ranks / len(order) + 1e-15)
    if len(passing):
        listed[order[: passing[-1] + 1]] = True
    return listed


def by_group(test: Callable[[np.ndarray, np.ndarray], np.ndarray], suspect: np.ndarray, panel: np.ndarray,
             groups: Sequence[str] | None) -> np.ndarray:
    """``test(suspect, rows)`` (:func:`max_t` or :func:`panel_p_values`) with each group of panel
    models alone, and the largest p-value over the groups (``nan`` where any group has none)."""
    if groups is not None:
        check_param("groups", len(groups), f"one group per panel row ({len(panel)})", len(groups) == len(panel),
                    caller="by_group")
    if groups is None or len(set(groups)) <= 1:
        return test(suspect, panel)
    labels = np.asarray(list(groups))
    return np.max([test(suspect, panel[labels == group]) for group in dict.fromkeys(groups)], axis=0)


__all__ = ["attained_bound", "benjamini_hochberg", "by_group", "max_t", "max_t_threshold", "panel_needed",
           "panel_p_values", "rate_for_this_panel", "smallest_p", "standardise"]
