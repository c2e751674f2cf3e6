"""The data-free label stage's signature: how a model trades the owner's two leading classes off
near the owner's boundaries (probes: :class:`~tafa.probes.pairs.PairBoundaryProbes`).

At point ``x_n`` with the owner's classes ``i`` and ``j`` there, and shared directions ``u_k``
and the point's step ``t_n``, the model is asked at ``clip(x_n + t_n u_k)`` and
``clip(x_n - t_n u_k)`` (``2 N K`` queries, clipped into the domain). A model's *soft value* at
an input is ``a_j - a_i`` of its answers ``a`` as compared (raw logits as they are; probabilities,
rounded or top-k, as log-probabilities with a floor at half their grid step:
:func:`~tafa.signature.interface.recognise`; a one-hot label as 0 / 1, so the value is -1, 0 or 1;
a labels-only answer the same). The signature:

- ``outputs``: the answers at the ``+`` inputs, ``(N K, m)`` (what tells an interface apart from the
  owner's own form);
- ``pairs``: the soft value at ``x + t u`` minus at ``x - t u``, ``(N, K)``.

>>> from tafa.probes.base import Probes
>>> probes = Probes(np.zeros((2, 3)), steps=np.ones(2),
...                 extra={"directions": np.eye(3)[:2], "classes": np.array([[0.0, 1.0], [1.0, 2.0]]),
...                        "low": np.full(3, -5.0), "high": np.full(3, 5.0)})
>>> measurement = PairDifferences()
>>> inputs = measurement.inputs(probes)
>>> len(inputs), measurement.queries(probes)
(8, 8)
>>> signature = measurement.assemble(probes, inputs @ np.eye(3))  # a linear map: z = x
>>> signature["pairs"].tolist()  # (z_j - z_i) at +u minus at -u
[[-2.0, 2.0], [0.0, -2.0]]
"""

from __future__ import annotations

import numpy as np

from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


def _parts(probes: Probes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shared directions ``(K, d)``, the classes ``(N, 2)``, the steps ``(N,)`` and the
    domain's bounds ``(d,)`` each, or
    ``ValueError`` where stored probes do not fit together (a fingerprint file is read through
    this: its arrays are checked before anything is sized from them)."""
    extra, n = probes.extra, len(probes)
    d = int(np.prod(probes.points.shape[1:]))
    missing = {"directions", "classes", "low", "high"} - set(extra)
    if missing or probes.steps is None:
        raise ValueError(f"pair probes lack {sorted(missing) or ['steps']}")
    directions = np.asarray(extra["directions"], dtype=np.float64)
    raw_classes = np.asarray(extra["classes"], dtype=np.float64)
    steps = np.asarray(probes.steps, dtype=np.float64).reshape(-1)
    low, high = (np.asarray(extra[key], dtype=np.float64) for key in ("low", "high"))
    if directions.ndim != 2 or len(directions) < 2 or directions.shape[1] != d:
        raise ValueError(f"pair probes' directions of shape {directions.shape} do not fit inputs of {d} values")
    if (raw_classes.shape != (n, 2) or not np.all(raw_classes == np.round(raw_classes)) or np.any(raw_classes < 0)
            or np.any(raw_classes[:, 0] == raw_classes[:, 1])):
        raise ValueError("pair probes' classes must be two distinct class indices per point")
    if low.shape != (d,) or high.shape != (d,) or np.any(low > high) or steps.shape != (n,) or np.any(steps <= 0):
        raise ValueError("pair probes' bounds or steps do not fit the points")
    return directions, raw_classes.astype(np.int64), steps, low, high


@register_signature("pair-differences")
class PairDifferences(Measurement):
    """Soft-value differences of the owner's two leading classes in shared random directions."""

    accepts_labels = True

    def inputs(self, probes: Probes) -> np.ndarray:
        """Every ``x + t u`` (point-major), then every ``x - t u``, clipped into the domain, in float32."""
        directions, _, steps, low, high = _parts(probes)
        n, k = len(probes), len(directions)
        points = probes.points.reshape(n, -1).astype(np.float64)
        moved = steps[:, None, None] * directions[None, :, :]
        stepped = [np.clip(points[:, None, :] + sign * moved, low, high).reshape(n * k, -1) for sign in (1.0, -1.0)]
        return np.concatenate(stepped).astype(np.float32).reshape(2 * n * k, *probes.points.shape[1:])

    def queries(self, probes: Probes) -> int:
        return 2 * len(probes) * len(_parts(probes)[0])

    def answer_probes(self, probes: Probes) -> np.ndarray:
        n, k = len(probes), len(_parts(probes)[0])
        return np.tile(np.repeat(np.arange(n), k), 2)

    def _pairs(self, probes: Probes, values: np.ndarray) -> np.ndarray:
        """``(2 N K, m)`` per-class values -> the ``(N, K)`` differences of ``v_j - v_i``."""
        directions, classes = _parts(probes)[:2]
        n, k = len(probes), len(directions)
        rows = np.arange(2 * n * k)
        i = np.tile(np.repeat(classes[:, 0], k), 2)
        j = np.tile(np.repeat(classes[:, 1], k), 2)
        soft = values[rows, j] - values[rows, i]
        return (soft[:n * k] - soft[n * k:]).reshape(n, k)

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        flat = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        half = len(flat) // 2
        return {"outputs": flat[:half], "pairs": self._pairs(probes, flat)}

    def from_labels(self, probes: Probes, labels: np.ndarray) -> Signature:
        classes = _parts(probes)[1]
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        width = int(classes.max()) + 1
        known = np.isfinite(labels) & (labels >= 0) & (labels < width)  # any other label: neither class
        one_hot = np.zeros((len(labels), width))
        one_hot[np.flatnonzero(known), labels[known].astype(np.int64)] = 1.0
        return {"pairs": self._pairs(probes, one_hot)}


__all__ = ["PairDifferences"]
