"""The plainest signature: the model's outputs at the probe points, flattened per point."""

from __future__ import annotations

import numpy as np

from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


@register_signature("outputs")
class Outputs(Measurement):
    """``outputs``: ``g(x_i)`` flattened, shape ``(N, m)``."""

    relative_keys = ("outputs",)

    def inputs(self, probes: Probes) -> np.ndarray:
        return probes.points

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        return {"outputs": outputs.reshape(len(outputs), -1)}
