"""How alike two signatures are: the one verb every similarity answers.

A :class:`Similarity` compares the owner's signature with a suspect's and returns a
:class:`Score`: one number (higher means more alike; in ``[-1, 1]`` for the cosine-based
ones), the per-point evidence behind it, and the named parts it combines.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> owner = {"outputs": rng.normal(size=(4, 3)), "derivatives": rng.normal(size=(4, 2, 3)),
...          "group": np.array([0.0, 0.0, 1.0, 1.0])}
>>> round(DerivativeCosine().compare(owner, owner).value, 6)
1.0
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..components import Components
from ..errors import check_param
from ..functional import aggregate, centred_correlation, cosine, local_cosines, rowwise_cosine
from ..signature.base import Signature
from ..signature.scales import SMOOTHED
from .sequential import bounded_mean

#: The aggregation of a score that may stop once its threshold is surely passed (:class:`BoundaryOrientation`).
BOUNDED = "bounded"


@dataclass
class Score:
    """A similarity value, the per-point values it aggregates, and its named parts."""

    value: float
    per_point: np.ndarray
    parts: dict[str, float] = field(default_factory=dict)

    def spread(self) -> dict[str, float]:
        """Quantiles of the per-point values (for the verdict's table)."""
        if self.per_point.size == 0:
            return {}
        q = np.quantile(self.per_point, [0.0, 0.1, 0.5, 0.9, 1.0])
        return dict(zip(("min", "q10", "median", "q90", "max"), map(float, q)))


class Similarity(ABC):
    """Compares an owner signature with a suspect signature."""

    name: str = ""
    #: The range a score can take; ARUC integrates over it (the thresholds one could set).
    score_range: tuple[float, float] = (-1.0, 1.0)

    @property
    def mean_over_points(self) -> bool:
        """Whether the score is the mean of the per-point values (:attr:`Score.per_point`), so that a
        stage can be measured a few points at a time and stopped once out of reach
        (:mod:`tafa.decide.sequential`)."""
        return False

    @property
    def settles(self) -> bool:
        """Whether the score is the per-point values' bounded mean
        (:func:`~tafa.decide.sequential.bounded_mean`), so that a stage measured a few points at a
        time can also stop once its threshold is surely passed."""
        return False

    @abstractmethod
    def compare(self, owner: Signature, suspect: Signature) -> Score:
        """How alike ``suspect`` is to ``owner``."""


SIMILARITIES: Components[Similarity] = Components("similarity")

#: Class decorator: make a similarity available by name.
register_similarity = SIMILARITIES.register


def get_similarity(name: str, **params: Any) -> Similarity:
    """The registered similarity ``name``, built with ``params``."""
    return SIMILARITIES.create(name, **params)


@register_similarity("derivative-cosine")
class DerivativeCosine(Similarity):
    """The method's rule over three parts, each in ``[-1, 1]``:

    - ``local``: median per-point cosine of the group-centred derivatives (:func:`tafa.functional.local_cosines`);
    - ``derivatives``: median per-point cosine of the raw derivative matrices (``K x m``);
    - ``outputs``: correlation of the outputs over the probes (columns centred).

    The score is their ``weights``-weighted mean (default: ``local`` only, which separated
    copies from independent models best on the planning zoos; see docs/method.md).

    With several outputs, both signatures' outputs and derivatives are first centred across the
    outputs (per probe and direction): a shift common to every output is no evidence, so a
    service answering log-probabilities (logits minus a per-input constant) or probabilities
    (undone by :func:`tafa.signature.interface.recognise`) compares exactly like its logits, and
    the references are compared the same way as every suspect. On the fixture classifier and
    generator it moves no copy and lowers the highest independent (0.349 -> 0.343, 0.616 -> 0.577).
    With a scalar output the score is the absolute value: a regressor served in another unit
    ``a y + b`` with ``a < 0`` scores like itself (its derivatives are the copy's times ``a``).
    """

    def __init__(self, weights: dict[str, float] | None = None, aggregation: str = "median") -> None:
        self.weights = dict(weights or {"local": 1.0})
        self.aggregation = aggregation

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        owner, suspect = across_outputs_centred(owner), across_outputs_centred(suspect)
        raw = rowwise_cosine(owner["derivatives"], suspect["derivatives"])
        parts = {"derivatives": aggregate(raw, self.aggregation),
                 "outputs": centred_correlation(owner["outputs"], suspect["outputs"])}
        per_point = raw
        if "group" in owner:
            local = local_cosines(owner["derivatives"], suspect["derivatives"], owner["group"])
            parts["local"] = aggregate(local, self.aggregation)
            per_point = local if self.weights.get("local", 0) > 0 else raw
        used = {name: weight for name, weight in self.weights.items() if name in parts and weight > 0}
        if not used:
            raise ValueError(f"No similarity part to weigh: weights {self.weights}, parts {sorted(parts)}.")
        value = sum(weight * parts[name] for name, weight in used.items()) / sum(used.values())
        if np.shape(owner["outputs"])[-1] == 1:  # a scalar output in another unit may be a decreasing one
            value = abs(value)
        return Score(float(value), per_point, parts)


def across_outputs_centred(signature: Signature) -> Signature:
    """``signature`` with its outputs and derivatives centred across the outputs when there are
    several (a scalar output is left as it is).

    >>> across_outputs_centred({"outputs": np.array([[1.0, 3.0]]), "derivatives": np.array([[[2.0, 0.0]]])})[
    ...     "derivatives"].tolist()
    [[[1.0, -1.0]]]
    """
    if np.shape(signature["outputs"])[-1] < 2:
        return signature
    view = dict(signature)
    for key in ("outputs", "derivatives"):
        values = np.asarray(view[key], dtype=np.float64)
        view[key] = values - values.mean(axis=-1, keepdims=True)
    return view


@register_similarity("pair-correlation")
class PairCorrelation(Similarity):
    """The data-free label stage's comparison (:mod:`tafa.signature.pairs`): the correlation, over
    every point and direction, of the suspect's soft-value differences with the owner's (a
    temperature or a change of unit scales them all alike and does not move it); 0 when either
    is constant (a suspect whose two classes never trade off there). Per point: the cosine of the
    two rows of differences.

    >>> owner = {"pairs": np.array([[1.0, -1.0], [2.0, 0.0]])}
    >>> round(PairCorrelation().compare(owner, {"pairs": 3 * owner["pairs"] + 1}).value, 6)
    1.0
    >>> PairCorrelation().compare(owner, {"pairs": np.zeros((2, 2))}).value
    0.0
    """

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        a = np.asarray(owner["pairs"], dtype=np.float64)
        b = np.asarray(suspect["pairs"], dtype=np.float64)
        value = centred_correlation(a.reshape(-1, 1), b.reshape(-1, 1))
        return Score(value, rowwise_cosine(a, b), {"correlation": value})


@register_similarity("output-cosine")
class OutputCosine(Similarity):
    """The random-output baseline: mean per-point cosine of the output vectors (for a
    scalar output, where a per-point cosine is only a sign, the centred correlation)."""

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        a, b = owner["outputs"], suspect["outputs"]
        if a.shape[1] == 1:
            value = centred_correlation(a, b)
            return Score(value, (a - a.mean()).ravel() * (b - b.mean()).ravel(), {"outputs": value})
        per_point = rowwise_cosine(a, b)
        return Score(float(per_point.mean()), per_point, {"outputs": float(per_point.mean())})


@register_similarity("centred-correlation")
class CentredCorrelation(Similarity):
    """How the suspect's outputs move from input to input as the owner's do: the ``|cosine|`` of the
    two ``(N, m)`` output matrices with each output centred over the ``N`` points (for one output,
    the absolute Pearson correlation), in ``[0, 1]``; the per-point evidence is each point's share of
    the centred inner product. Blind to an offset and a scale of either sign (a regressor in another
    unit), and to a disturbance only as far as it moves the outputs themselves: a ripple or a triangle
    wave that swamps every finite difference (its slope is its amplitude times its frequency) moves an
    output by its amplitude alone.

    >>> owner = {"outputs": np.array([[1.0], [2.0], [4.0]])}
    >>> round(CentredCorrelation().compare(owner, {"outputs": -3.0 * owner["outputs"] + 5.0}).value, 6)
    1.0
    """

    score_range = (0.0, 1.0)

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        a = np.asarray(owner["outputs"], dtype=np.float64).reshape(len(owner["outputs"]), -1)
        b = np.asarray(suspect["outputs"], dtype=np.float64).reshape(len(a), -1)
        a, b = a - a.mean(axis=0), b - b.mean(axis=0)  # centred_correlation's, with the per-point shares
        value = abs(cosine(a, b))
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        per_point = (a * b).sum(axis=1) / norm if norm > 0 else np.zeros(len(a))
        return Score(value, per_point, {"outputs": value})


@register_similarity("with-smoothed-outputs")
class WithSmoothedOutputs(Similarity):
    """The coarse scale's score for an owner answering a single value or an image (a regressor, a
    decoder): the mean of ``base`` (the scheme's similarity of the averaged derivatives) and the
    :class:`CentredCorrelation` of the outputs averaged over each probe's jittered coarse steps
    (``smoothed``, :data:`tafa.signature.scales.SMOOTHED`; read from the same answers, no query
    more). One statistic on one scale, calibrated as one stage: a part whose scores the task fixes
    for every model alike (independent regressors of one task all follow its trend) moves no
    ranking, while a part that spreads the references carries as far as it spreads them; and a
    disturbance that swamps the differences (its slope is its amplitude times its frequency) moves
    the smoothed outputs by a fraction of its amplitude (docs/method.md, "The coarse scale's
    smoothed outputs"). Without ``smoothed`` on both sides, ``base`` alone.

    >>> owner = {"outputs": np.array([[1.0], [2.0], [4.0]]), "derivatives": np.ones((3, 2, 1)),
    ...          "smoothed": np.array([[1.0], [2.0], [4.0]])}
    >>> suspect = {**owner, "smoothed": np.array([[1.0], [3.0], [2.0]])}
    >>> score = WithSmoothedOutputs(params={"weights": {"derivatives": 1.0}}).compare(owner, suspect)
    >>> round(score.parts["differences"], 3), round(score.parts["smoothed"], 3), round(score.value, 3)
    (1.0, 0.327, 0.664)
    """

    def __init__(self, base: str = "derivative-cosine", params: dict[str, Any] | None = None) -> None:
        self.base = get_similarity(base, **(params or {}))
        self.score_range = self.base.score_range

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        base = self.base.compare(owner, suspect)
        if SMOOTHED not in owner or SMOOTHED not in suspect:
            return base
        smoothed = CentredCorrelation().compare({"outputs": owner[SMOOTHED]}, {"outputs": suspect[SMOOTHED]})
        parts = {**base.parts, "differences": base.value, "smoothed": smoothed.value}
        return Score(float((base.value + smoothed.value) / 2), base.per_point, parts)


@register_similarity("output-agreement")
class OutputAgreement(Similarity):
    """How closely the suspect reproduces the owner's output *values* (not only their
    pattern): per probe ``1 / (1 + ||g(x_i) - f(x_i)|| / s)``, with ``s`` the owner's
    root-mean-square output spread over the probes; the score is the median over probes,
    in ``(0, 1]`` (1: the same outputs).

    The extraction detector: a student distilled on the owner's outputs reproduces their
    scale and offsets where it was taught, while an independent model of the same task only
    reproduces what the task fixes (the ranking of classes, the trend of a regression).
    """

    score_range = (0.0, 1.0)

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        a = np.asarray(owner["outputs"], dtype=np.float64).reshape(len(owner["outputs"]), -1)
        b = np.asarray(suspect["outputs"], dtype=np.float64).reshape(len(a), -1)
        a, b = self.aligned(a, b)
        spread = float(np.sqrt(((a - a.mean(axis=0)) ** 2).sum(axis=1).mean()))
        per_point = 1.0 / (1.0 + np.linalg.norm(a - b, axis=1) / (spread if spread > 0 else 1.0))
        value = float(np.median(per_point))
        return Score(value, per_point, {"outputs": value})

    def aligned(self, owner: np.ndarray, suspect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two ``(N, m)`` output matrices as compared (here: as they are)."""
        return owner, suspect


@register_similarity("scaled-agreement")
class ScaledAgreement(OutputAgreement):
    """:class:`OutputAgreement` of outputs centred across their values at each point (several
    outputs: a log-softmax, or a softmax the interface turned back into log-probabilities, is the
    logits less a per-point constant), the suspect's then multiplied by the one positive factor
    that brings them nearest the owner's over every point (a temperature, or logits in another
    unit, costs nothing). The extraction stage's comparison (:data:`~tafa.scheme.Scheme.extraction`):
    a student distilled on the owner's answers reproduces their values up to those, an independent
    model of the task only what the task fixes.

    >>> owner = {"outputs": np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])}
    >>> round(ScaledAgreement().compare(owner, {"outputs": 0.5 * owner["outputs"] - 7.0}).value, 6)
    1.0
    >>> ScaledAgreement().compare(owner, {"outputs": -owner["outputs"]}).value < 0.5
    True
    """

    def aligned(self, owner: np.ndarray, suspect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if owner.shape[1] > 1:
            owner = owner - owner.mean(axis=1, keepdims=True)
            suspect = suspect - suspect.mean(axis=1, keepdims=True)
        power = float((suspect * suspect).sum())
        factor = max(float((owner * suspect).sum()), 0.0) / power if power > 0 else 0.0
        return owner, factor * suspect


@register_similarity("boundary-orientation")
class BoundaryOrientation(Similarity):
    """How well the orientations of the suspect's kinks match the owner's boundaries
    (:mod:`tafa.signature.kinks`), sign and scale free.

    Per boundary, the ``|cosine|`` between the suspect's measured jump and the owner's, in the
    same ``K`` directions: the owner's own strongest kink on that line, measured exactly as the
    suspect's (so a function-preserving copy scores 1); where the owner's measurement found none,
    the owner's white-box ``normal``. A boundary whose kink the suspect does not show, or
    (black-box fingerprints) the owner's own measurement missed, counts 0. The score is ``aggregation`` over
    every boundary (``median``: default; ``mean``; ``bounded``), in ``[0, 1]``. Parts: ``found`` (fraction of
    boundaries located) and ``orientation`` (median ``|cos|`` over the located ones). ``bounded``: the
    mean's lower bound at the best of the looks a stage measured a few lines at a time makes
    (:func:`~tafa.decide.sequential.bounded_mean`, never below the mean), so that the stage can stop
    once its threshold is surely passed as well as once it is out of reach.

    ``estimate``: ``"projected"`` takes the cosine of the two K-vectors as they are;
    ``"full"`` estimates the cosine in the whole input space, where the owner's lines carry a
    ``spread`` (:mod:`~tafa.probes.boundary`: the measured directions are the owner's normal
    and ``K - 1`` random directions orthogonal to it, each standing for ``spread`` of the
    ``d - 1`` orthogonal dimensions): the suspect's component along the owner's jump is
    measured, its orthogonal energy is ``spread`` times what the ``K - 1`` directions show, so
    ``|cos| = |a| / sqrt(a^2 + spread * |r|^2)``. The projected cosine overstates every unit
    that is roughly aligned (in 8 of 64 dimensions, a unit at cosine 0.45 with the normal
    shows 0.84, one at 0.82 shows 0.98), which squeezes copies and independent models
    together; the full estimate keeps them apart (docs/method.md, "Boundary geometry").

    >>> owner = {"normal": np.eye(3), "jump": np.eye(3), "found": np.ones(3), "position": np.zeros(3)}
    >>> suspect = {"jump": -np.eye(3), "found": np.array([1.0, 1.0, 0.0]), "position": np.zeros(3)}
    >>> score = BoundaryOrientation().compare(owner, suspect)
    >>> round(score.value, 6), score.parts["found"]
    (1.0, 0.666667)
    """

    score_range = (0.0, 1.0)

    def __init__(self, aggregation: str = "median", estimate: str = "projected") -> None:
        check_param("estimate", estimate, "'projected' or 'full'", estimate in ("projected", "full"),
                    caller="BoundaryOrientation")
        self.aggregation = aggregation
        self.estimate = estimate

    @property
    def mean_over_points(self) -> bool:
        return self.aggregation in ("mean", BOUNDED)

    @property
    def settles(self) -> bool:
        return self.aggregation == BOUNDED

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        measured = np.asarray(owner["found"]) > 0
        if "normal" in owner:  # the owner's own measured kink where found, else its unit's normal
            reference = np.where(measured[:, None], owner["jump"], owner["normal"])
            known = np.ones(len(measured), dtype=bool)
        else:
            reference, known = owner["jump"], measured
        located = (np.asarray(suspect["found"]) > 0) & known
        if self.estimate == "full" and "spread" in owner:
            cosines = full_space_cosine(reference, suspect["jump"], owner["spread"])
        else:
            cosines = np.abs(rowwise_cosine(reference, suspect["jump"]))
        per_point = np.where(located, cosines, 0.0)
        orientation = float(np.median(per_point[located])) if located.any() else 0.0
        parts = {"found": round(float(located.mean()), 6), "orientation": orientation}
        if "normal" in owner and "crossing" in owner and "crossing" in suspect:  # the owner's own unit, where it is
            kept = at_the_crossing(owner["crossing"], suspect["crossing"])
            per_point = np.where(kept, 1.0, per_point)
            parts["crossings"] = round(float(kept.mean()), 6)
        value = bounded_mean(per_point) if self.aggregation == BOUNDED else aggregate(per_point, self.aggregation)
        return Score(value, per_point, parts)


#: A suspect has the owner's kink at the owner's crossing when the derivative along the line changes
#: there by this factor of the owner's relative change, or less, either way (:func:`at_the_crossing`).
CROSSING_FACTOR = 2.0


def at_the_crossing(owner: np.ndarray, suspect: np.ndarray) -> np.ndarray:
    """Per line, whether the suspect's derivative along it changes across the owner's crossing
    (two steps either side, relative to its size: :mod:`tafa.signature.kinks`'s ``crossing``) by
    as much as the owner's does, within :data:`CROSSING_FACTOR` either way: the owner's unit is
    where the owner has it. An independent model's hyperplanes, and a sibling's fine-tuned from the
    owner's public parent, lie many steps away (docs/method.md, "Kinks at the owner's crossings").

    >>> at_the_crossing(np.array([0.1, 0.1, 0.1, 0.1]), np.array([0.12, 0.04, 0.0, np.nan])).tolist()
    [True, False, False, False]
    """
    owner = np.asarray(owner, dtype=np.float64)
    suspect = np.asarray(suspect, dtype=np.float64)
    ratio = np.divide(suspect, owner, out=np.zeros_like(owner), where=np.isfinite(owner) & (owner > 0))
    return np.isfinite(ratio) & (ratio > 1.0 / CROSSING_FACTOR) & (ratio < CROSSING_FACTOR)


def full_space_cosine(reference: np.ndarray, jump: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Per row, ``|cos|`` in the whole input space between the unit whose K measured components
    are ``jump`` and the one whose are ``reference`` (the owner's, nearly its unit normal),
    when each measured direction other than the reference stands for ``spread`` unmeasured
    ones (:class:`BoundaryOrientation`). Rows with a zero vector give 0.

    >>> reference = np.array([[1.0, 0.0, 0.0]])
    >>> round(float(full_space_cosine(reference, np.array([[0.8, 0.6, 0.0]]), np.array([1.0]))[0]), 6)
    0.8
    >>> round(float(full_space_cosine(reference, np.array([[0.8, 0.6, 0.0]]), np.array([4.0]))[0]), 6)
    0.5547
    """
    reference = np.asarray(reference, dtype=np.float64)
    jump = np.asarray(jump, dtype=np.float64)
    norms = np.linalg.norm(reference, axis=1, keepdims=True)
    unit = np.divide(reference, norms, out=np.zeros_like(reference), where=norms > 0)
    along = np.sum(jump * unit, axis=1)
    rest = np.sum((jump - along[:, None] * unit) ** 2, axis=1)
    total = np.sqrt(along ** 2 + np.maximum(np.asarray(spread, dtype=np.float64), 1.0) * rest)
    return np.divide(np.abs(along), total, out=np.zeros_like(along), where=total > 0)
