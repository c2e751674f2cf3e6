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

from ..functional import central_differences, stepped_inputs
from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


@register_signature("derivatives")
class Derivatives(Measurement):
    """Outputs and central finite differences along each probe's directions."""

    relative_keys = ("outputs", "derivatives")

    def inputs(self, probes: Probes) -> np.ndarray:
        if probes.directions is None or probes.steps is None:
            raise ValueError("The 'derivatives' signature needs probes with directions and steps.")
        return np.concatenate([probes.points, stepped_inputs(probes.points, probes.directions, probes.steps)])

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        assert probes.directions is not None and probes.steps is not None
        n, k = probes.directions.shape[:2]
        flat = outputs.reshape(len(outputs), -1)
        centre = flat[:n]
        derivatives = central_differences(flat[n:], n, k, probes.steps)
        signature = {"outputs": centre, "derivatives": derivatives}
        if "group" in probes.extra:
            signature["group"] = np.asarray(probes.extra["group"], dtype=np.float64)
        return signature
