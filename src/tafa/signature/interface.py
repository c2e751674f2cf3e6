"""What an interface cannot hide: recognise how a suspect answers, and undo what can be undone.

A service rarely returns raw outputs (:mod:`tafa.attacks.interface`). From the answers alone,
:func:`recognise` tells

- **probabilities**: non-negative rows summing to 1. ``log p_i - mean_j log p_j = (z_i - mean_j z_j) / T``
  exactly for a softmax at any temperature ``T``: they are compared as centred log-probabilities
  (the method's similarity centres every signature across outputs alike); the temperature is a
  positive scale, which the derivative cosine ignores;
- **log-probabilities**: non-positive rows whose exponentials sum to 1 (centred the same way);
- **top-k probabilities**: non-negative rows summing to at most 1 with zeros: the zeroed values are
  unknown; they are put at half of the smallest probability shown, and the rows centred;
- **one-hot labels**, **integers** and other answers on a grid (rounded probabilities, 8-bit
  pixels): :attr:`Recognised.quantised` is the grid step. Rounding cannot be undone: at the
  fingerprint's finite-difference step most differences are 0, so the derivative evidence is
  unreliable and the verdict must say so rather than clear the suspect;
- several outputs confined to **[0, 1]** (a sigmoid) or **[-1, 1]** with negatives (a tanh), where
  the owner's own outputs are not: undone by the logit and by ``atanh``, the saturated ends clipped;
- **clipped** (censored) answers, in any other unrecognised form: an output whose largest or
  smallest value comes back exactly, bit for bit, at :data:`CENSOR_REPEATS` or more inputs (a
  regressor clipped to its training range; for answers written in half precision, which round
  nearby inputs alike, also twice as often as any other value of the output), where the owner's
  own outputs never repeat an extreme:
  :attr:`Recognised.censored` marks those answers. A ReLU network's output repeats a value exactly
  only where it is constant; a clip cannot be undone, but the probes whose answers are all inside
  the bounds still show the network (:meth:`tafa.fingerprint.Fingerprint.uncensored` compares the
  suspect and its references there alone).

Recognition is relative to the owner's own outputs at the probes: a form the owner's outputs show
too (a decoder whose last layer is a sigmoid) is the owner's, not an interface, and is compared as
it is.

:func:`measure_suspect` (and :func:`assemble_suspect`, from answers already queried) is where a
suspect's answers become a signature through this recognition.

>>> import numpy as np
>>> logits = np.random.default_rng(0).normal(size=(5, 4))
>>> probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
>>> recognised = recognise(probabilities)
>>> recognised.kind, recognised.centred, recognised.quantised
('probabilities', True, None)
>>> bool(np.allclose(recognised.answers, logits - logits.mean(axis=1, keepdims=True), atol=1e-12))
True
>>> recognise(np.round(probabilities, 2)).quantised
0.01
>>> recognise(logits).kind
'raw'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.base import Model
from ..probes.base import Probes
from .base import Measurement, Signature

#: Grid steps the answers are checked against, coarsest first (``1/255``: 8-bit pixels).
GRID_STEPS = (1.0, 0.1, 1.0 / 255.0, 0.01, 1e-3, 1e-4)
#: How far from the grid (in steps) an answer may be and still count as on it.
GRID_TOLERANCE = 1e-3
#: How far a row's sum may be from 1 (besides rounding) for the row to count as probabilities.
SUM_TOLERANCE = 1e-6
#: How many answers must repeat an output's extreme value exactly for it to count as a clip bound.
CENSOR_REPEATS = 3


@dataclass(frozen=True)
class Recognised:
    """How a suspect answers, and its answers as they are compared.

    ``kind``: ``"raw"`` (nothing recognised, or the owner's own form), ``"probabilities"``,
    ``"log-probabilities"``, ``"top-k probabilities"``, ``"one-hot labels"``, ``"integers"``,
    ``"quantised"``, ``"unit interval"`` (undone by the logit), ``"signed unit interval"`` (by atanh).
    ``centred``: rows centred across outputs (the owner's must be too). ``quantised``: the grid step
    the answers lie on (``None``: not on a grid). ``saturated``: fraction of answers at a bound of a
    recognised range (clipped before undoing). ``censored``: answers at a clip bound (:func:`censored`;
    ``(Q, m)`` booleans, ``None``: no clip seen), and ``bounds`` the values clipped at. ``shown``:
    for top-k probabilities, the most values a row shows (``k``; ``None`` otherwise), and ``hidden``
    the values it zeroed (``(Q, m)`` booleans; ``None`` otherwise): their undone values are a floor,
    not the model's (:mod:`tafa.shown_stage` compares the shown ones alone). ``curvature``: how much
    the undone answers bend within the first stage's steps (:func:`tafa.signature.scales.curvature`;
    ``None``: not measured), and ``curvature_limit`` the most a ReLU network's would, given the
    owner's own (:func:`tafa.signature.scales.curvature_limit`; ``None``: the fixed limit).
    """

    kind: str
    answers: np.ndarray
    centred: bool = False
    quantised: float | None = None
    saturated: float = 0.0
    censored: np.ndarray | None = None
    bounds: tuple[float, ...] = ()
    shown: int | None = None
    hidden: np.ndarray | None = None
    curvature: float | None = None
    curvature_limit: float | None = None

    @property
    def clipped(self) -> bool:
        """Whether the answers were recognised as clipped (never for answers on a grid)."""
        return self.censored is not None

    @property
    def note(self) -> str:
        """One line for the verdict ("" when the answers are compared as they are)."""
        compared = {"probabilities": "compared as centred log-probabilities",
                    "log-probabilities": "compared centred per row",
                    "top-k probabilities": "the zeroed ones unknown; compared as centred log-probabilities, "
                                           "the zeroed set at half the smallest shown",
                    "unit interval": "undone by the logit", "signed unit interval": "undone by atanh"}
        parts = []
        if self.kind != "raw":
            parts.append(f"answers are {self.kind}" + (f": {compared[self.kind]}" if self.kind in compared else ""))
        if self.saturated > 0:
            parts.append(f"{self.saturated:.1%} of them saturated (clipped before undoing)")
        if self.quantised is not None:
            parts.append(f"answers are rounded to {self.quantised:.3g}: finite differences at the fingerprint's "
                         "step are mostly zero, the derivative evidence is unreliable")
        if self.censored is not None:
            parts.append(f"answers are clipped at {', '.join(f'{b:.6g}' for b in self.bounds)} "
                         f"({float(np.mean(self.censored.any(axis=1))):.1%} of them)")
        return "; ".join(parts)


def grid_step(answers: np.ndarray) -> float | None:
    """The coarsest of :data:`GRID_STEPS` every answer lies on (within :data:`GRID_TOLERANCE`
    of a step), or ``None``.

    >>> grid_step(np.array([0.25, 0.5, 1.0])), grid_step(np.array([3.0, -2.0])), grid_step(np.array([0.1234567]))
    (0.01, 1.0, None)
    """
    values = np.asarray(answers, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    for step in GRID_STEPS:
        units = values / step
        if np.all(np.abs(units - np.round(units)) <= GRID_TOLERANCE):
            return step
    return None


def grid_spacing(answers: np.ndarray, step: float) -> float | None:
    """The spacing of the grid ``answers`` lie on: the smallest gap between two of their distinct
    values, at least the recognised ``step`` (:func:`grid_step`, which may be a finer grid they also
    lie on: values rounded to 0.5 lie on the grid of 0.1 too); ``None`` when they take one value (any
    grid coarser than their spread would give that).

    >>> grid_spacing(np.array([0.0, 0.5, 2.0, 0.5, -1.5]), 0.1), grid_spacing(np.zeros(5), 1.0)
    (0.5, None)
    """
    values = np.unique(np.asarray(answers, dtype=np.float64).ravel())
    gaps = np.diff(values[np.isfinite(values)])
    gaps = gaps[gaps > step / 2]
    return float(max(step, gaps.min())) if gaps.size else None


#: Significant bits of the floating formats a service may answer in (bfloat16, float16), coarsest first.
HALF_BITS = (8, 11)
#: Fewest distinct nonzero answers that must all be representable in a format for it to be read.
HALF_VALUES = 32


def half_precision_bits(answers: np.ndarray) -> int | None:
    """The significant bits of the half-precision format ``answers`` are all written in: 8 (bfloat16)
    or 11 (float16), when at least :data:`HALF_VALUES` distinct nonzero values are and the answers
    are on no uniform grid (:func:`grid_step` reads those); ``None`` otherwise. A float32 answer has
    one chance in 2^16 of being a bfloat16 value: a service whose answers all are computes (or
    rounds) in that format, and two answers closer than a few of its rounding steps
    (:func:`half_ulp`) may differ by its rounding alone.

    >>> values = np.linspace(0.1, 3.0, 100)
    >>> half_precision_bits(values.astype(np.float16)), half_precision_bits(values)
    (11, None)
    """
    values = np.unique(np.asarray(answers, dtype=np.float64).ravel())
    values = values[np.isfinite(values) & (values != 0)]
    if values.size < HALF_VALUES or grid_step(values) is not None:
        return None
    for bits in HALF_BITS:
        if np.array_equal(to_bits(values, bits), values):
            return bits
    return None


def to_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` rounded to ``bits`` significant bits (8: the nearest bfloat16 values, which float16
    also represents inside its normal range).

    >>> to_bits(np.array([0.0625, 0.3, -1.7, 0.0]), 8).tolist()
    [0.0625, 0.30078125, -1.703125, 0.0]
    """
    mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64))
    return np.ldexp(np.round(mantissa * 2.0 ** bits) / 2.0 ** bits, exponent)


def half_ulp(values: np.ndarray, bits: int) -> np.ndarray:
    """The rounding step, in a format of ``bits`` significant bits, of each of ``values``.

    >>> half_ulp(np.array([1.0, 0.75, 200.0]), 8).tolist()
    [0.0078125, 0.00390625, 1.0]
    """
    return np.ldexp(1.0, np.frexp(np.abs(np.asarray(values, dtype=np.float64)))[1] - bits)


def _repeated_extremes(rows: np.ndarray, repeats: int, rounded: bool = False) -> tuple[np.ndarray, list[float]]:
    """Answers equal, bit for bit, to their output's largest or smallest value where that value
    comes back at least ``repeats`` times, and those values. ``rounded`` (answers written in half
    precision, :func:`half_precision_bits`, which round a probe's nearby finite-difference inputs
    alike, so that every value of theirs comes back several times): also at least twice as often as
    any other value of the output.

    >>> y = np.repeat(np.linspace(0.0, 1.0, 20), 9)[:, None]  # every value 9 times: a rounding, no clip
    >>> _repeated_extremes(y, 3, rounded=True)[1], _repeated_extremes(np.concatenate([y, np.ones((18, 1))]), 3, True)[1]
    ([], [1.0])
    """
    mask = np.zeros(rows.shape, dtype=bool)
    bounds: list[float] = []
    for j in range(rows.shape[1]):
        column = rows[:, j]
        if column.max() == column.min():  # a constant output is no clip: it shows nothing anywhere
            continue
        needed = repeats
        if rounded:
            counts = np.unique(column, return_counts=True)[1][1:-1]  # its extremes aside
            needed = max(repeats, 2 * int(counts.max(initial=0)))
        for value in {float(column.max()), float(column.min())}:
            hit = column == value
            if int(hit.sum()) >= needed:
                mask[:, j] |= hit
                bounds.append(value)
    return mask, sorted(set(bounds))


def censored(rows: np.ndarray, owner_rows: np.ndarray | None = None) -> tuple[np.ndarray | None, list[float]]:
    """The answers at a clip bound (``(Q, m)`` booleans; ``None``: none) and the bounds: an
    output's extreme value repeated exactly at :data:`CENSOR_REPEATS` or more answers, unless the
    owner's own outputs (``owner_rows``) repeat an extreme too (a form of the owner's, such as a
    ReLU on its outputs).

    >>> y = np.array([[0.3], [1.0], [-0.2], [1.0], [0.7], [1.0]])
    >>> mask, bounds = censored(y)
    >>> mask[:, 0].tolist(), bounds
    ([False, True, False, True, False, True], [1.0])
    >>> censored(y, owner_rows=np.array([[0.0], [0.0], [0.5]]))[0] is None
    True
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0 or not np.all(np.isfinite(rows)):
        return None, []
    mask, bounds = _repeated_extremes(rows, CENSOR_REPEATS, rounded=half_precision_bits(rows) is not None)
    if not mask.any():
        return None, []
    if owner_rows is not None and np.asarray(owner_rows).size:
        own, _ = _repeated_extremes(np.asarray(owner_rows, dtype=np.float64).reshape(len(owner_rows), -1), 2)
        if own.any():
            return None, []
    return mask, bounds


def _centred(rows: np.ndarray) -> np.ndarray:
    return rows - rows.mean(axis=1, keepdims=True)


def _form(rows: np.ndarray, step: float | None) -> str:
    """The kind of ``(Q, m)`` answers, from their values alone."""
    m = rows.shape[1]
    sums = rows.sum(axis=1)
    slack = SUM_TOLERANCE + (m * step / 2 if step is not None else 0.0)
    non_negative = bool(np.all(rows >= 0))
    if step == 1.0 and non_negative and np.all(rows <= 1) and np.all(sums == 1) and m > 1:
        return "one-hot labels"
    if m > 1 and non_negative and np.all(np.abs(sums - 1) <= slack):
        return "probabilities"
    if m > 1 and non_negative and np.all(sums <= 1 + slack) and np.any(rows == 0) and np.all(rows.max(axis=1) > 0):
        return "top-k probabilities"
    if m > 1 and np.all(rows <= SUM_TOLERANCE):
        peak = rows.max(axis=1, keepdims=True)
        total = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
        if np.all(np.abs(total) <= SUM_TOLERANCE * m):
            return "log-probabilities"
    if step == 1.0:
        return "integers"
    if m > 1 and non_negative and np.all(rows <= 1):
        return "unit interval"
    if m > 1 and np.all(np.abs(rows) <= 1) and np.any(rows < 0):
        return "signed unit interval"
    return "quantised" if step is not None else "raw"


def top_k_floor(rows: np.ndarray, step: float | None) -> float:
    """What a top-k list's zeroed values are taken as: half the smallest value ``rows`` show (at
    least half their grid step)."""
    shown = rows[rows > 0]
    return max(step / 2 if step is not None else float(np.finfo(np.float64).tiny), float(shown.min()) / 2)


def undo_top_k(rows: np.ndarray, floor: float) -> np.ndarray:
    """A top-k list's rows as centred log-probabilities, the zeroed ones (and any shown value below
    ``floor``) at ``floor``: continuous in the values shown, so a list whose top class changes
    (the values trading places) is no jump, whatever else is asked in the same batch."""
    return _centred(np.log(np.maximum(rows, floor)))


def recognise(answers: np.ndarray, owner_outputs: np.ndarray | None = None) -> Recognised:
    """Recognise the interface of a suspect's ``answers`` (``(Q, *output_shape)``) and undo what
    can be undone; ``owner_outputs`` (the owner's outputs at the probes) make recognition relative
    to the owner: a bounded range or a probability form the owner's own outputs show is no interface.

    >>> pixels = 1 / (1 + np.exp(-np.linspace(-3, 3, 12).reshape(2, 6)))
    >>> recognised = recognise(pixels, owner_outputs=np.array([[-2.0, 5.0]]))
    >>> recognised.kind, bool(np.allclose(recognised.answers, np.linspace(-3, 3, 12).reshape(2, 6)))
    ('unit interval', True)
    >>> recognise(pixels, owner_outputs=pixels).kind
    'raw'
    """
    answers = np.asarray(answers, dtype=np.float64)
    rows = answers.reshape(len(answers), -1)
    step = grid_step(rows)
    kind = _form(rows, step)
    if owner_outputs is not None and kind not in ("raw", "quantised"):
        owner_rows = np.asarray(owner_outputs, dtype=np.float64).reshape(len(owner_outputs), -1)
        if _form(owner_rows, grid_step(owner_rows)) == kind:
            kind = "raw"
    floor = step / 2 if step is not None else float(np.finfo(np.float64).tiny)
    undone, centred, saturated = rows, False, 0.0
    if kind == "probabilities":
        undone, centred = _centred(np.log(np.maximum(rows, floor))), True
    elif kind == "top-k probabilities":
        undone, centred = undo_top_k(rows, top_k_floor(rows, step)), True
    elif kind == "log-probabilities":
        undone, centred = _centred(rows), True
    elif kind == "unit interval":
        eps = max(floor, 1e-12)
        saturated = float(np.mean((rows <= 0) | (rows >= 1)))
        clipped = np.clip(rows, eps, 1 - eps)
        undone = np.log(clipped) - np.log1p(-clipped)
    elif kind == "signed unit interval":
        eps = max(floor, 1e-12)
        saturated = float(np.mean(np.abs(rows) >= 1))
        undone = np.arctanh(np.clip(rows, -1 + eps, 1 - eps))
    mask: np.ndarray | None = None
    bounds: list[float] = []
    if kind == "raw" and step is None:  # a grid repeats values anyway: rounded answers are decided at the coarse scale
        mask, bounds = censored(rows, None if owner_outputs is None
                                else np.asarray(owner_outputs).reshape(len(owner_outputs), -1))
    top_k = kind == "top-k probabilities"
    shown_k = int((rows > 0).sum(axis=1).max()) if top_k else None
    return Recognised(kind, undone.reshape(answers.shape), centred, step, saturated, mask, tuple(bounds), shown_k,
                      rows <= 0 if top_k else None)


def measure_suspect(measurement: Measurement, model: Model, probes: Probes,
                    owner: Signature | None = None) -> tuple[Signature, Recognised]:
    """Query ``model`` for ``measurement`` at ``probes``, recognise its interface (relative to the
    ``owner``'s signature's outputs when given) and assemble its signature from the answers as
    compared. An adaptive
    measurement (whose inputs depend on the answers) is measured as it is."""
    if measurement.adaptive:
        signature = measurement.measure(model, probes)
        return signature, Recognised("raw", np.zeros((0,)))
    return assemble_suspect(measurement, probes, model(measurement.inputs(probes)), owner)


def assemble_suspect(measurement: Measurement, probes: Probes, answers: np.ndarray,
                     owner: Signature | None = None) -> tuple[Signature, Recognised]:
    """:func:`measure_suspect` from answers already queried (a scan's shared queries). Without the
    owner's outputs in its signature (baseline signatures) nothing is undone: an owner whose own
    answers have an interface's form could not be told from a suspect behind one; a grid is still
    reported."""
    owner_outputs = None if owner is None else owner.get("outputs")
    if owner_outputs is None:  # nothing to tell the owner's own form from an interface: answers as they are
        rows = np.asarray(answers, dtype=np.float64).reshape(len(answers), -1)
        return measurement.assemble(probes, answers), Recognised("raw", answers, quantised=grid_step(rows))
    recognised = recognise(answers, owner_outputs)
    return measurement.assemble(probes, recognised.answers), recognised
