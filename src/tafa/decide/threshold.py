"""The decision threshold, calibrated on reference models, with a stated false-positive bound.

Negative references (independently trained models of the same task) give the false-positive
side. With ``n`` references, declaring "derived" only above the ``k``-th smallest reference
score, ``k = ceil((n + 1)(1 - alpha))``, bounds the probability that a new independent model
(exchangeable with the references) is declared derived by ``alpha``, whatever the score
distribution. That needs ``n >= 1/alpha - 1`` references; with fewer, the threshold is their
maximum and the distribution-free bound is ``1/(n + 1)``. A smaller ``alpha`` can then only
come from a parametric tail: a normal fitted to the Fisher-transformed scores
(``atanh``, for scores in ``[-1, 1]``), whose ``1 - alpha`` quantile is used when it lies above
the maximum. The calibration says which of the two bounds it rests on and shows both.

>>> cal = calibrate([0.1, 0.2, 0.3], alpha=0.25)
>>> cal.method, cal.threshold, cal.bound
('rank', 0.3, 0.25)
>>> calibrate([0.1, 0.2, 0.3], alpha=0.01).method
'parametric'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from ..errors import check_param


@dataclass
class Calibration:
    """A threshold and the evidence behind it."""

    threshold: float
    alpha: float                 # the false-positive rate asked for
    bound: float                 # the bound the threshold achieves (alpha, or 1/(n+1))
    method: str                  # "rank" (distribution-free) or "parametric"
    rank_threshold: float
    rank_bound: float
    parametric_threshold: float | None
    n_references: int
    reference_scores: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fisher(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    bounded = bool(np.all(np.abs(scores) <= 1.0))
    if bounded:
        return np.arctanh(np.clip(scores, -1 + 1e-9, 1 - 1e-9)), True
    return scores, False


def calibrate(reference_scores: list[float] | np.ndarray, alpha: float = 0.01) -> Calibration:
    """Threshold from negative reference scores at false-positive level ``alpha``."""
    scores = np.sort(np.asarray(reference_scores, dtype=np.float64))
    n = len(scores)
    check_param("reference_scores", n, "non-empty", n > 0, caller="calibrate")
    check_param("alpha", alpha, "a number in (0, 1)", 0 < alpha < 1, caller="calibrate")
    k = math.ceil((n + 1) * (1 - alpha))
    if k <= n:
        value = float(scores[k - 1])
        return Calibration(value, alpha, alpha, "rank", value, alpha, None, n, scores.tolist())
    rank_value, rank_bound = float(scores[-1]), 1.0 / (n + 1)
    parametric = None
    if n >= 3:
        transformed, bounded = _fisher(scores)
        spread = float(np.std(transformed, ddof=1))
        if spread > 0:
            tail = float(np.mean(transformed)) + float(norm.ppf(1 - alpha)) * spread
            parametric = float(np.tanh(tail)) if bounded else tail
    if parametric is None:
        return Calibration(rank_value, alpha, rank_bound, "rank", rank_value, rank_bound, None, n,
                           scores.tolist())
    return Calibration(max(rank_value, parametric), alpha, alpha, "parametric", rank_value, rank_bound,
                       parametric, n, scores.tolist())
