"""Clipped answers: compare a suspect where its answers are inside the clip.

A regressor served clipped to its training range (``np.clip(y, lo, hi)``) answers a constant
wherever the network's output leaves ``[lo, hi]``; at such a probe every finite difference is 0,
for a copy as for an independent model. Tafa's data-free probes go where the owner's output is
far out of any training range as often as not (behind a clip at ``[-1, 1]``, 27-30 of the
64 probes of the benchmark's Friedman regressor; docs/method.md, "Clipped answers"), so a
clipped copy scored on every probe looks like nothing the references resemble, and is cleared.

A clip cannot be undone, but it hides nothing at a probe whose answers are all inside the
bounds: there the suspect is its network. :func:`inside_points` finds those probes from the
suspect's own answers (:attr:`~tafa.signature.interface.Recognised.censored`), and the suspect
and every reference are compared with the owner there alone
(:meth:`tafa.fingerprint.Fingerprint.uncensored`). The points are chosen from the suspect's
answers only, never from a score, and the references are scored on the same points, so the
threshold is made as the suspect's score is.

>>> from tafa.probes.base import Probes
>>> from tafa.signature.derivatives import Derivatives
>>> probes = Probes(np.zeros((4, 2)), np.zeros((4, 1, 2)), np.ones(4), extra={"group": np.array([0.0, 0, 1, 1])})
>>> censored = np.zeros((12, 1), dtype=bool)
>>> censored[5] = True  # the "+ h u" answer of point 1
>>> keep, why = inside_points(Derivatives(), probes, censored, minimum=1)
>>> keep.tolist(), why  # point 0 is left alone in its group: no group-centred evidence
([False, False, True, True], None)
"""

from __future__ import annotations

import math

import numpy as np

from ..probes.base import Probes
from .base import Measurement, Signature

#: The fewest points a clipped suspect must answer wholly inside its bounds to be compared there.
MIN_INSIDE = 16


def inside_points(measurement: Measurement, probes: Probes, censored: np.ndarray, minimum: int = MIN_INSIDE,
                  ) -> tuple[np.ndarray | None, str | None]:
    """The probes none of whose answers is censored (``censored``: ``(Q, m)`` or ``(Q,)``
    booleans over the answers to ``measurement.inputs(probes)``), keeping only points with at
    least one other such point in their direction group (the evidence is centred within a group);
    ``(None, reason)`` when fewer than ``minimum`` are left, or the measurement's answers are not
    per point."""
    owners = measurement.answer_probes(probes)
    flags = np.asarray(censored, dtype=bool)
    hit = np.asarray(flags.reshape(len(flags), -1).any(axis=1))
    if owners is None or len(owners) != len(hit):
        return None, "the measurement's answers are not per point: no point can be left out"
    n = len(probes)
    touched = np.zeros(n, dtype=bool)
    np.logical_or.at(touched, owners, hit)
    keep = ~touched
    groups = probes.extra.get("group")
    if groups is not None:
        groups = np.asarray(groups)
        counts = {g: int(np.sum(keep & (groups == g))) for g in np.unique(groups)}
        keep &= np.array([counts[g] >= 2 for g in groups])
    if int(keep.sum()) < minimum:
        return None, (f"only {int(keep.sum())} of the {n} probes have every answer inside the clip (at least "
                      f"{minimum} are needed)")
    return keep, None


def at_points(signature: Signature, keep: np.ndarray, n: int) -> Signature:
    """``signature``'s per-point arrays (first axis ``n``) at the points ``keep`` selects; other
    arrays as they are."""
    return {key: (value[keep] if np.ndim(value) and len(value) == n else value) for key, value in signature.items()}


def clip_bounds(answers: np.ndarray, censored: np.ndarray) -> list[tuple[float, float]]:
    """Per output, the ``(low, high)`` its answers were clipped at, from the answers ``(Q, m)`` and
    which of them are at a bound (``censored``, ``(Q, m)``: :attr:`~tafa.signature.interface.Recognised.censored`):
    an output's censored answers equal to its largest answer are at its high bound, those equal
    to its smallest at its low one; ``-inf`` or ``inf`` where none is. The later stages ask every
    model through this clip (:class:`~tafa.signature.kinks.Kinks`'s ``clip``), so that a reference
    is served as the suspect is.

    >>> y = np.array([[0.3], [1.0], [-0.2], [1.0], [0.7], [1.0]])
    >>> clip_bounds(y, y == 1.0)
    [(-inf, 1.0)]
    """
    rows = np.asarray(answers, dtype=np.float64).reshape(len(answers), -1)
    flags = np.asarray(censored, dtype=bool).reshape(rows.shape)
    bounds = []
    for column, hit in zip(rows.T, flags.T):
        high = float(column.max()) if np.any(hit & (column == column.max())) else math.inf
        low = float(column.min()) if np.any(hit & (column == column.min())) else -math.inf
        bounds.append((low, high))
    return bounds
