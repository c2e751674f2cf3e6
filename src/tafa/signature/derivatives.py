"""The method's signature: outputs and directional derivatives at the probes.

For probe ``x_i`` with directions ``u_ik`` and step ``h_i``, the model is queried at
``x_i`` and ``x_i +- h_i u_ik`` (``N (2K + 1)`` queries) and the signature is

- ``outputs``: ``g(x_i)``, shape ``(N, m)``;
- ``derivatives``: ``(g(x_i + h_i u_ik) - g(x_i - h_i u_ik)) / 2 h_i``, shape ``(N, K, m)``,

which, inside a linear region, is exactly ``W_s u_ik``: the local linear map, read from
outputs alone, whatever the task. When the probes share directions in groups, the group
labels travel with the signature (``group``, shape ``(N,)``) so that a similarity can
compare how the local map changes between the regions of one group.
"""

from __future__ import annotations

import numpy as np

from ..errors import NonFiniteOutput
from ..functional import central_differences, stepped_inputs
from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


#: Bound on the float64 temporaries of :meth:`Derivatives.inputs` (bytes).
INPUT_CHUNK_BYTES = 64 << 20


@register_signature("derivatives")
class Derivatives(Measurement):
    """Outputs and central finite differences along each probe's directions."""

    relative_keys = ("outputs", "derivatives")

    def inputs(self, probes: Probes) -> np.ndarray:
        """The points, then every ``x + h u``, then every ``x - h u``, in float32 (what every
        model is queried with): computed in float64 a few probes at a time and rounded once,
        so a 3x224x224 fingerprint's 576 inputs take 347 MB, not 2.5 times that in float64
        temporaries."""
        if probes.directions is None or probes.steps is None:
            raise ValueError("The 'derivatives' signature needs probes with directions and steps.")
        points, directions = probes.points, probes.directions
        n, k = directions.shape[:2]
        steps = np.broadcast_to(np.asarray(probes.steps, dtype=np.float64).reshape(-1), (n,))
        out = np.empty((n + 2 * n * k, *points.shape[1:]), dtype=np.float32)
        out[:n] = points
        chunk = max(1, INPUT_CHUNK_BYTES // max(1, 8 * directions[0].size))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            stepped = stepped_inputs(points[start:stop], directions[start:stop], steps[start:stop])
            rows = (stop - start) * k
            out[n + start * k:n + stop * k] = stepped[:rows]
            out[n + n * k + start * k:n + n * k + stop * k] = stepped[rows:]
        return out

    def answer_probes(self, probes: Probes) -> np.ndarray:
        """The point of each answer: the points, then each point's ``+ h u`` and ``- h u`` rows.

        >>> from tafa.probes.base import Probes
        >>> probes = Probes(np.zeros((2, 3)), np.zeros((2, 2, 3)), np.ones(2))
        >>> Derivatives().answer_probes(probes).tolist()
        [0, 1, 0, 0, 1, 1, 0, 0, 1, 1]
        """
        assert probes.directions is not None
        n, k = probes.directions.shape[:2]
        stepped = np.repeat(np.arange(n), k)
        return np.concatenate([np.arange(n), stepped, stepped])

    def unknown(self, probes: Probes, hidden: np.ndarray) -> np.ndarray:
        """``(N, m)``: whether each output is hidden (``hidden``: ``(Q, m)`` booleans, one row per
        input of :meth:`inputs`) at any of the probe's inputs; its derivatives are then unknown.

        >>> from tafa.probes.base import Probes
        >>> probes = Probes(np.zeros((2, 3)), np.zeros((2, 1, 3)), np.ones(2))
        >>> hidden = np.zeros((6, 2), dtype=bool); hidden[5, 1] = True  # the second probe's "- h u", output 1
        >>> Derivatives().unknown(probes, hidden).tolist()
        [[False, False], [False, True]]
        """
        rows = np.asarray(hidden, dtype=bool).reshape(len(hidden), -1)
        unknown = np.zeros((len(probes), rows.shape[1]), dtype=bool)
        np.logical_or.at(unknown, self.answer_probes(probes), rows)
        return unknown

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        assert probes.directions is not None and probes.steps is not None
        n, k = probes.directions.shape[:2]
        flat = outputs.reshape(len(outputs), -1)
        centre = flat[:n]
        with np.errstate(over="ignore", invalid="ignore"):
            derivatives = central_differences(flat[n:], n, k, probes.steps)
        if not np.all(np.isfinite(derivatives)):
            raise NonFiniteOutput("The directional derivatives overflow float64: the answers differ by more than "
                                  "float64 can hold over the probes' steps.")
        signature = {"outputs": centre, "derivatives": derivatives}
        if "group" in probes.extra:
            signature["group"] = np.asarray(probes.extra["group"], dtype=np.float64)
        return signature
