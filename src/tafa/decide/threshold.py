"""The decision threshold, calibrated on reference models, with a stated false-positive bound.

Negative references (independently trained models of the same task) give the false-positive
side. With ``n`` references, declaring "derived" only above the ``k``-th smallest reference
score, ``k = ceil((n + 1)(1 - alpha))``, bounds the probability that a new independent model
(exchangeable with the references) is declared derived by ``(n + 1 - k) / (n + 1) <= alpha``,
whatever the score distribution. That needs ``n >= 1/alpha - 1`` references. With fewer, the
best the references support is ``1/(n + 1)`` (the threshold at their maximum), and the
calibration says so: it does not :attr:`~Calibration.supports_alpha`, and a verdict made with
it is ``undecided`` (see :class:`~tafa.decide.verdict.Verdict`). Two ways out, both explicit:
ask for the weaker bound (``alpha >= 1/(n + 1)``), or ask for a parametric tail
(``parametric=True``): a normal fitted to the Fisher-transformed scores (``atanh``, for scores
in ``[-1, 1]``), whose ``1 - alpha`` quantile is used when it lies above the maximum; that bound
rests on the normal model and is labelled :attr:`BoundMethod.PARAMETRIC`.

>>> cal = calibrate([0.1, 0.2, 0.3], alpha=0.25)
>>> cal.method.value, cal.threshold, cal.bound, cal.supports_alpha
('rank', 0.3, 0.25, True)
>>> short = calibrate([0.1, 0.2, 0.3], alpha=0.01)
>>> short.supports_alpha, short.bound, short.references_needed
(False, 0.25, 99)
>>> calibrate([0.1, 0.2, 0.3], alpha=0.01, parametric=True).method.value
'parametric'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import check_param


class BoundMethod(StrEnum):
    """What a calibration's false-positive bound rests on (``.value`` is what the JSON says)."""

    RANK = "rank"                 # distribution-free: the rank of the suspect among the references
    PARAMETRIC = "parametric"     # a normal tail fitted to the references' (Fisher-z) scores
    #: An exact p-value that needs no references (the weight order test, :mod:`tafa.weights`):
    #: the stage's score is ``-log10 p`` and its threshold ``-log10 alpha`` (:func:`exact_calibration`).
    EXACT = "exact"


def references_needed(alpha: float) -> int:
    """The fewest distinct references whose rank bound reaches ``alpha``: ``ceil(1/alpha - 1)``."""
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def _at_least(value: float, digits: int = 3) -> float:
    """``value`` rounded *up* to ``digits`` significant digits (an alpha a user can type that the
    references still support)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return math.ceil(value * scale - 1e-9) / scale


@dataclass
class Calibration:
    """A threshold and the evidence behind it.

    ``alpha_requested`` is the false-positive rate asked for; ``bound`` the bound this threshold
    achieves by ``method`` (at most ``alpha_requested`` when :attr:`supports_alpha`, else the
    rank bound ``1/(n+1)`` of ``n_references`` distinct references). ``notes`` say what was done
    to the references (duplicates merged, probable copies of the owner left out).
    """

    threshold: float
    alpha_requested: float
    bound: float
    method: BoundMethod
    rank_threshold: float
    rank_bound: float
    parametric_threshold: float | None
    n_references: int
    reference_scores: list[float]
    notes: list[str] = field(default_factory=list)
    #: Whether a parametric tail was allowed (``--parametric``), so that the same calibration can
    #: be derived again at another alpha (:meth:`at`) as the user asked for it.
    parametric: bool = False

    def __post_init__(self) -> None:
        self.method = BoundMethod(self.method)
        if not isinstance(self.parametric, bool):
            raise TypeError(f"parametric must be true or false, not {type(self.parametric).__name__}")
        self.parametric = self.parametric or self.method is BoundMethod.PARAMETRIC

    def at(self, alpha: float) -> "Calibration":
        """The same references' threshold at another ``alpha`` (parametric as this one allowed)."""
        if self.method is BoundMethod.EXACT:
            return exact_calibration(alpha)
        again = calibrate(self.reference_scores, alpha, parametric=self.parametric)
        again.notes = list(self.notes)
        return again

    def p_value(self, score: float) -> float:
        """The rank p-value of ``score`` among the references, ``(1 + #{r >= score}) / (n + 1)``:
        at most ``u`` with probability at most ``u`` for a model exchangeable with them; the
        rank rule judges derived exactly when it is at most :attr:`rank_bound`'s level. For an
        :attr:`BoundMethod.EXACT` stage the score is ``-log10 p`` and ``p`` is returned."""
        if self.method is BoundMethod.EXACT:
            return float(min(1.0, 10.0 ** (-float(score))))
        scores = np.asarray(self.reference_scores, dtype=np.float64)
        return float((1 + np.sum(scores >= score)) / (len(scores) + 1))

    @property
    def supports_alpha(self) -> bool:
        """Whether the achieved bound is the one asked for (else a verdict is ``undecided``)."""
        return self.bound <= self.alpha_requested * (1 + 1e-9)

    @property
    def references_needed(self) -> int:
        """Distinct references the rank bound needs to reach :attr:`alpha_requested`."""
        return references_needed(self.alpha_requested)

    def fires(self, score: float | None) -> bool:
        """Whether ``score`` (``None``: not measured) is above this threshold."""
        return score is not None and score > self.threshold

    def note(self) -> str | None:
        """One line on the bound when it is not the plain distribution-free one asked for."""
        n = self.n_references
        if not self.supports_alpha:
            return (f"{n} distinct references support a false-positive bound of {self.rank_bound:.3g} (1/{n + 1}), "
                    f"not the requested {self.alpha_requested:.3g}, which needs at least {self.references_needed} "
                    f"references: no decision (ask for the weaker bound with --alpha "
                    f"{_at_least(self.rank_bound)}, or for a parametric tail with --parametric)")
        if self.method is BoundMethod.PARAMETRIC:
            return (f"the bound {self.bound:.3g} is parametric (a normal tail fitted to {n} references' scores); "
                    f"distribution-free they support {self.rank_bound:.3g}")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method": self.method.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        """Read :meth:`to_dict`'s output, and the rows older versions stored (``alpha``, no notes)."""
        data = dict(data)
        if "alpha_requested" not in data and "alpha" in data:
            data["alpha_requested"] = data.pop("alpha")
        return cls(**data)

    def summary(self) -> dict[str, Any]:
        """The bound in a few fields: what reports and the scan's record show per fingerprint."""
        return {"threshold": self.threshold, "alpha_requested": self.alpha_requested, "bound": self.bound,
                "method": self.method.value, "n_references": self.n_references,
                "supports_alpha": self.supports_alpha, "note": self.note()}


def exact_calibration(alpha: float) -> Calibration:
    """The threshold of a stage whose evidence is an exact p-value (no references): its score is
    ``-log10 p``, and it fires when ``p < alpha``; the bound is ``alpha`` whatever the references.

    >>> cal = exact_calibration(0.001)
    >>> cal.threshold, cal.fires(215.0), cal.fires(2.0), cal.p_value(215.0) < 1e-200, cal.supports_alpha
    (3.0, True, False, True, True)
    """
    check_param("alpha", alpha, "a number in (0, 1)", 0 < alpha < 1, caller="exact_calibration")
    value = -math.log10(float(alpha))
    return Calibration(value, float(alpha), float(alpha), BoundMethod.EXACT, value, float(alpha), None, 0, [])


def _fisher(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    bounded = bool(np.all(np.abs(scores) <= 1.0))
    if bounded:
        return np.arctanh(np.clip(scores, -1 + 1e-9, 1 - 1e-9)), True
    return scores, False


def calibrate(reference_scores: list[float] | np.ndarray, alpha: float = 0.01, *,
              parametric: bool = False) -> Calibration:
    """Threshold from negative reference scores at false-positive level ``alpha``.

    When the references are too few for ``alpha`` by rank, the calibration holds their maximum
    and the rank bound ``1/(n+1)`` (it does not :attr:`~Calibration.supports_alpha`), unless
    ``parametric`` asks for a normal tail (needs 3 references with some spread)."""
    scores = np.sort(np.asarray(reference_scores, dtype=np.float64))
    n = len(scores)
    check_param("reference_scores", n, "non-empty", n > 0, caller="calibrate")
    check_param("alpha", alpha, "a number in (0, 1)", 0 < alpha < 1, caller="calibrate")
    check_param("reference_scores", "a non-finite score", "finite numbers", bool(np.all(np.isfinite(scores))),
                caller="calibrate")
    alpha = float(alpha)
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if k <= n:
        value, bound = float(scores[k - 1]), (n + 1 - k) / (n + 1)
        return Calibration(value, alpha, bound, BoundMethod.RANK, value, bound, None, n, scores.tolist(),
                           parametric=parametric)
    rank_value, rank_bound = float(scores[-1]), 1.0 / (n + 1)
    tail = None
    if parametric and n >= 3:
        transformed, bounded = _fisher(scores)
        spread = float(np.std(transformed, ddof=1))
        if spread > 0:
            quantile = float(np.mean(transformed)) + NormalDist().inv_cdf(1 - alpha) * spread
            tail = float(np.tanh(quantile)) if bounded else quantile
    if tail is None:
        return Calibration(rank_value, alpha, rank_bound, BoundMethod.RANK, rank_value, rank_bound, None, n,
                           scores.tolist(), parametric=parametric)
    return Calibration(max(rank_value, tail), alpha, alpha, BoundMethod.PARAMETRIC, rank_value, rank_bound,
                       tail, n, scores.tolist(), parametric=True)
