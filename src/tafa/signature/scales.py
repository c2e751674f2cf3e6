"""The coarse scale: differences a ripple or a grid cannot fake.

The method's signature reads the local linear map from central differences at a step small
enough to stay inside the owner's linear region (:mod:`tafa.signature.derivatives`). Two
cheap answers defeat that scale without changing what users get: a high-frequency ripple
added to the outputs (``0.3 sin(x R)``, :mod:`tafa.attacks.evasion`), whose derivative swamps
the network's, and answers rounded onto a grid (integer logits, a regressor rounded to one
decimal, 8-bit pixels), whose differences at a small step are mostly zero.

The same probes measured at a **coarse step**, :data:`COARSE_SCALE` times the domain's scale
(the root of its total variance: the typical distance of a domain draw from the mean), read
differences of outputs between inputs far apart: a bounded ripple or a rounding moves them
by a small fraction. The owner's coarse signature is stored with the fingerprint; a suspect's
is compared by the same similarity, and the coarse scores of references are calibrated like
any stage's.

Which scale decides is a property of the suspect's answers, fixed before any threshold is
seen: a ReLU network (the owner, its copies, independent networks) answers at the two scales
with derivative sizes in a ratio close to the owner's own, while a ripple makes the fine one
much larger. :func:`roughness` is that ratio relative to the owner's; above
:data:`ROUGHNESS_LIMIT`, or for answers on a grid (which flatten differences at a small step:
recognised directly, :mod:`tafa.signature.interface`), the suspect's answers at the
fingerprint's step are not a ReLU network's, and the coarse scale decides (``tafa verify``:
with the references' coarse scores as its threshold). A ratio well *below* the owner's without
a grid is left to the fine scale: top-k probabilities (the zeroed ones filled in) give
0.35-0.6 there, and the fine scale finds more of them (0.42 against 0.08 at the coarse one,
full benchmark).

Measured (``python benchmarks/step_scales.py``, docs/method.md): across the benchmark's
calibration models, copies and independent networks the ratio stays within 0.72-1.6; a
ripple gives 2.7-180, integer logits 2.1-3.2 (on a grid anyway), a one-hot label 0 (a grid).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..domain import Domain
from ..errors import check_param
from ..probes.base import Probes
from .base import Signature, register_signature
from .derivatives import Derivatives

if TYPE_CHECKING:
    from .interface import Recognised

#: The coarse step, in units of the domain's scale (:func:`domain_scale`): 1 caught integer logits
#: on the digits MLP (0.25 at 0.5) and rounded probabilities on the digits CNN (0.00-0.75 at 2),
#: ``python benchmarks/step_scales.py --scales 0.5 1 2`` (docs/method.md).
COARSE_SCALE = 1.0
#: A suspect whose derivative-size ratio between the two scales is more than this factor above the
#: owner's is decided at the coarse scale.
ROUGHNESS_LIMIT = 2.0
#: The coarse step's screen (:meth:`tafa.fingerprint.Fingerprint.measure_coarse`): a suspect whose
#: derivative-size ratios at the first :data:`SCREEN_PROBES` probes have their upper quartile
#: (:data:`SCREEN_QUANTILE`) below :data:`SCREEN_LIMIT` times the owner's median ratio there is far
#: from rough and is not measured at the other probes (576 -> 144 queries), when nothing but its
#: roughness could send it to the coarse scale. An upper quartile, not the median: a disturbance
#: rough at a quarter of the probes or more shows there (``python benchmarks/coarse_screen.py``).
SCREEN_PROBES = 16
SCREEN_QUANTILE = 0.75
SCREEN_LIMIT = 1.5
#: The steps the coarse scale decides with, as fractions of the coarse step around it
#: (:class:`JitteredDerivatives`): ``python benchmarks/coarse_average.py`` (docs/method.md).
JITTER = (-0.06, -0.02, 0.02, 0.06)
#: The key of a probe's outputs averaged over its jittered coarse steps (:class:`JitteredDerivatives`),
#: shape ``(N, m)``: ``2 K J`` inputs symmetric about the probe at the coarse distance, so a network
#: nearly linear over them keeps about its value there, while a disturbance of the answers whose
#: period is much shorter than the step averages out (a low-pass view of the outputs).
SMOOTHED = "smoothed"
#: Domain draws that estimate its scale (fewer for large inputs: at most 2^24 values drawn).
SCALE_DRAWS = 2048


def domain_scale(domain: Domain, seed: int = 0) -> float:
    """The root of the domain's total variance (the typical distance of a draw from the mean),
    estimated from a few draws.

    >>> from tafa.domain import Box
    >>> round(domain_scale(Box((64,), 0.0, 1.0)), 1)  # sqrt(64 / 12)
    2.3
    """
    d = int(np.prod(domain.shape))
    draws = domain.sample(max(64, min(SCALE_DRAWS, (1 << 24) // max(1, d))), seed).reshape(-1, d)
    return float(np.sqrt(draws.astype(np.float64).var(axis=0).sum()))


def coarse_probes(probes: Probes, steps: np.ndarray) -> Probes:
    """The same points and directions at other ``steps``."""
    return replace(probes, steps=np.asarray(steps, dtype=np.float64))


def roughness(fine: Signature, coarse: Signature) -> float:
    """The median over probes of the ratio between the derivatives' sizes at the fine and at the
    coarse step (:func:`size_ratios`).

    >>> import numpy as np
    >>> d = np.ones((3, 2, 4))
    >>> roughness({"derivatives": 5 * d}, {"derivatives": d}), roughness({"derivatives": 0 * d}, {"derivatives": d})
    (5.0, 0.0)
    """
    return float(np.median(size_ratios(fine, coarse)))


def size_ratios(fine: Signature, coarse: Signature) -> np.ndarray:
    """Per probe, the ratio between the derivatives' sizes at the fine and at the coarse step
    (``inf`` where the coarse ones are zero and the fine ones not; 1 where both are)."""
    a = np.linalg.norm(np.asarray(fine["derivatives"]).reshape(len(fine["derivatives"]), -1), axis=1)
    b = np.linalg.norm(np.asarray(coarse["derivatives"]).reshape(len(coarse["derivatives"]), -1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.where(a > 0, np.inf, 1.0))


def curvature(probes: Probes, answers: np.ndarray) -> float | None:
    """How much answers at the first stage's inputs (the probes, then every ``x + h u``, then every
    ``x - h u``: :class:`~tafa.signature.derivatives.Derivatives`) bend within a step: the median over
    the probes' directions of ``|g(x + h u) + g(x - h u) - 2 g(x)| / |g(x + h u) - g(x - h u)|``.
    A ReLU network is affine within the owner's linear regions, where the probes sit, so a
    network's answers keep it near 0 (at most 0.044 over every plain model of the benchmark's ReLU
    zoos, 0.06 with smooth activations); a ripple added to the answers bends them long before it
    makes their derivatives larger (amplitude 0.01 of a standardised output: 0.16-1.6). ``None``
    without directions, or for answers of another layout.

    >>> from tafa.probes.base import Probes
    >>> probes = Probes(np.zeros((1, 2)), np.eye(2)[None], np.array([0.5]))
    >>> affine = np.array([[1.0], [2.5], [0.0], [-0.5], [2.0]])  # g(x) = 1 + 3 x0 + 2 x1
    >>> curvature(probes, affine), curvature(probes, affine ** 2) > 0.5
    (0.0, True)
    """
    if probes.directions is None:
        return None
    n, k = probes.directions.shape[:2]
    rows = np.asarray(answers, dtype=np.float64).reshape(len(answers), -1)
    if len(rows) != n * (2 * k + 1):
        return None
    centre = rows[:n][:, None]
    plus, minus = rows[n:n + n * k].reshape(n, k, -1), rows[n + n * k:].reshape(n, k, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        second = np.linalg.norm(plus + minus - 2 * centre, axis=-1)
        first = np.linalg.norm(plus - minus, axis=-1)
        ratios = np.where(first > 0, second / np.where(first > 0, first, 1.0), np.where(second > 0, np.inf, 0.0))
    finite = ratios[~np.isnan(ratios)]
    return float(np.median(finite)) if finite.size else None


#: Above this :func:`curvature`, the answers are not a ReLU network's at the fingerprint's step and
#: the coarse scale decides: 0.044 is the most any plain model of the benchmark's ReLU zoos showed
#: (0.06 with smooth activations); ``python benchmarks/curvature.py`` (docs/method.md, "The coarse
#: scale": "Bent answers").
CURVATURE_LIMIT = 0.1
#: A suspect bends more than a ReLU network does where its curvature is above this many times the
#: owner's own at the same inputs, when that is above :data:`CURVATURE_LIMIT` (:func:`curvature_limit`).
CURVATURE_FACTOR = 2.0
#: The most the owner's own curvature lifts the limit to, whatever the fingerprint's metadata says
#: (the record is not in the reproducible hash a commitment checks).
CURVATURE_CEILING = 0.5


def curvature_limit(owner: object) -> float:
    """The curvature above which a suspect's answers are not a ReLU network's at the fingerprint's
    step, given the owner's own (``None``: not recorded, a fingerprint made before session 26; any
    value that is not a finite number >= 0 counts as not recorded): a large network has linear
    regions smaller than the step a cheap plan takes (no region LP), and bends within it itself (a
    ResNet-18 at 3x64x64: 0.12); its exact copy bends the same. At most :data:`CURVATURE_CEILING`.

    >>> curvature_limit(None), curvature_limit(0.03), curvature_limit(0.12), curvature_limit(7.0)
    (0.1, 0.1, 0.24, 0.5)
    >>> curvature_limit("7"), curvature_limit(float("nan")), curvature_limit(True)
    (0.1, 0.1, 0.1)
    """
    if isinstance(owner, bool) or not isinstance(owner, (int, float)) or not np.isfinite(owner) or owner < 0:
        return CURVATURE_LIMIT
    return min(CURVATURE_CEILING, max(CURVATURE_LIMIT, CURVATURE_FACTOR * float(owner)))


def bend_of(recognised: Recognised | None) -> tuple[float | None, float | None, float]:
    """What :func:`coarse_decides` reads of a suspect's answers as recognised besides their roughness:
    the grid step, the curvature and its limit (``None``, ``None`` and the fixed limit where not
    recognised or not seen)."""
    if recognised is None:
        return None, None, CURVATURE_LIMIT
    limit = CURVATURE_LIMIT if recognised.curvature_limit is None else recognised.curvature_limit
    return recognised.quantised, recognised.curvature, limit


def coarse_reason(relative: float, grid: float | None, bent: float | None = None,
                  limit: float = CURVATURE_LIMIT) -> str | None:
    """Why the coarse scale decides a suspect (see module doc), in words; ``None`` when it does not:
    its answers lie on a grid (``grid``: the step :mod:`tafa.signature.interface` recognised,
    ``None`` for none), its roughness relative to the owner's (``relative``) is above what a ReLU
    network keeps, or its answers bend within the fingerprint's step (``bent``: their
    :func:`curvature`, ``None``: not measured) more than a ReLU network's do (``limit``:
    :func:`curvature_limit` of the owner's own).

    >>> coarse_reason(1.1, None, 0.7)
    "its answers bend within the fingerprint's step (curvature 0.7; a ReLU network's stay below 0.1)"
    >>> coarse_reason(1.1, None, 0.01) is None
    True
    """
    if grid is not None:
        return f"answers on a grid of step {grid:.3g}"
    if relative > ROUGHNESS_LIMIT:
        return (f"its derivatives at the fingerprint's step are {relative:.3g} times the owner's size relative to "
                "the coarse step's")
    if bent is not None and bent > limit:
        if limit > CURVATURE_LIMIT:
            return (f"its answers bend within the fingerprint's step (curvature {bent:.3g}; above {CURVATURE_FACTOR:g} "
                    f"times the owner's own, {limit / CURVATURE_FACTOR:.3g})")
        return (f"its answers bend within the fingerprint's step (curvature {bent:.3g}; a ReLU network's stay below "
                f"{CURVATURE_LIMIT:g})")
    return None


def screen_applies(grid: float | None, bent: float | None, labels: bool, limit: float = CURVATURE_LIMIT) -> bool:
    """Whether nothing but a suspect's roughness could send it to the coarse scale (answers not on
    a grid, not bent, the label stage not deciding it): the coarse step may then be screened at a
    few probes first (:data:`SCREEN_PROBES`).

    >>> screen_applies(None, 0.0, False), screen_applies(0.1, 0.0, False), screen_applies(None, 0.0, True)
    (True, False, False)
    """
    return not labels and not coarse_decides(0.0, grid, bent, limit)


def coarse_decides(relative: float, grid: float | None, bent: float | None = None,
                   limit: float = CURVATURE_LIMIT) -> bool:
    """Whether the coarse scale decides a suspect (:func:`coarse_reason` gives a reason): the one
    rule ``tafa verify`` and the benchmark both apply.

    >>> coarse_decides(4.2, None), coarse_decides(1.1, None), coarse_decides(0.4, None), coarse_decides(1.0, 0.01)
    (True, False, False, True)
    >>> coarse_decides(1.1, None, 0.7), coarse_decides(1.1, None, 0.01)
    (True, False)
    >>> coarse_decides(1.1, None, 0.12), coarse_decides(1.1, None, 0.12, curvature_limit(0.12))
    (True, False)
    """
    return coarse_reason(relative, grid, bent, limit) is not None


@register_signature("jittered-derivatives")
class JitteredDerivatives(Derivatives):
    """:class:`~tafa.signature.derivatives.Derivatives` at several steps around the probes' own
    (``h (1 + j)`` for each ``j`` of ``jitter``), the differences averaged: what the coarse scale
    decides with. A ripple of high frequency (or a rounding) moves the answers at nearby steps
    independently, so averaging ``J`` steps divides its part of a difference by about ``sqrt(J)``,
    while a network's difference barely changes within a few percent of the step.

    The probe centres are asked once (their answers do not depend on the step): ``N + J 2 N K``
    queries.

    >>> from tafa.probes.base import Probes
    >>> probes = Probes(np.zeros((2, 3)), np.eye(3)[None, :2].repeat(2, axis=0), np.ones(2))
    >>> measurement = JitteredDerivatives(jitter=(-0.05, 0.05))
    >>> inputs = measurement.inputs(probes)
    >>> len(inputs), measurement.queries(probes)  # 2 centres, then 2 * 2 * 2 per step
    (18, 18)
    >>> signature = measurement.assemble(probes, inputs.reshape(len(inputs), -1) @ np.array([[1.0], [2.0], [3.0]]))
    >>> signature["derivatives"][:, :, 0].round(6).tolist()  # a linear map's derivatives, at any step
    [[1.0, 2.0], [1.0, 2.0]]
    """

    def __init__(self, jitter: tuple[float, ...] | list[float] = ()) -> None:
        values = tuple(float(j) for j in jitter) or JITTER
        check_param("jitter", jitter, "fractions of the step in (-0.5, 0.5)",
                    all(-0.5 < j < 0.5 for j in values), caller="JitteredDerivatives")
        self.jitter = values

    def _at(self, probes: Probes) -> list[Probes]:
        assert probes.steps is not None
        steps = np.asarray(probes.steps, dtype=np.float64)
        return [coarse_probes(probes, steps * (1.0 + j)) for j in self.jitter]

    def _centres_once(self, probes: Probes, per_step: list[np.ndarray]) -> np.ndarray:
        """Rows laid out per jittered step (centres first, then the stepped ones) as sent: the
        centres of the first step, then every step's stepped rows."""
        n = len(probes)
        return np.concatenate([per_step[0][:n]] + [rows[n:] for rows in per_step])

    def inputs(self, probes: Probes) -> np.ndarray:
        return self._centres_once(probes, [super(JitteredDerivatives, self).inputs(at) for at in self._at(probes)])

    def queries(self, probes: Probes) -> int:
        assert probes.directions is not None
        n, k = probes.directions.shape[:2]
        return n + len(self.jitter) * 2 * n * k

    def answer_probes(self, probes: Probes) -> np.ndarray:
        return self._centres_once(probes, [super(JitteredDerivatives, self).answer_probes(at)
                                           for at in self._at(probes)])

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        """The derivatives averaged over the steps, the centres' outputs, and ``smoothed``
        (:data:`SMOOTHED`): each probe's outputs averaged over every stepped input around it."""
        assert probes.directions is not None
        n, k = probes.directions.shape[:2]
        outputs = np.asarray(outputs)
        centres, stepped = outputs[:n], np.split(outputs[n:], len(self.jitter))
        signatures = [super(JitteredDerivatives, self).assemble(at, np.concatenate([centres, part]))
                      for at, part in zip(self._at(probes), stepped)]
        averaged = dict(signatures[0])
        averaged["derivatives"] = np.mean([s["derivatives"] for s in signatures], axis=0)
        # per step: every point's + h u rows, then its - h u rows (Derivatives.inputs)
        flat = np.asarray(outputs[n:], dtype=np.float64).reshape(len(self.jitter), 2, n, k, -1)
        averaged[SMOOTHED] = flat.mean(axis=(0, 1, 3))
        return averaged


__all__ = ["COARSE_SCALE", "CURVATURE_CEILING", "CURVATURE_FACTOR", "CURVATURE_LIMIT", "JITTER",
           "JitteredDerivatives", "ROUGHNESS_LIMIT", "bend_of", "coarse_decides", "coarse_probes", "coarse_reason",
           "curvature", "curvature_limit", "domain_scale", "roughness"]
