"""The plainest signatures: the model's outputs at the probe points, flattened per point, or averaged
over a few symmetric steps around each (a low-pass view)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameter
from ..functional import stepped_inputs
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


@register_signature("averaged-outputs")
class AveragedOutputs(Measurement):
    """``outputs``: at each point ``x``, the mean of ``g`` over ``x + h u_k`` and ``x - h u_k`` for its
    ``k`` directions, shape ``(N, m)`` (``2 N k`` queries). A network nearly linear within the
    step keeps its value at ``x`` (exactly where it is linear: the inputs come in symmetric pairs),
    while a disturbance added to its answers whose period is much shorter than the step averages
    out: a low-pass view of the outputs, the opposite of a finite difference, which amplifies such
    a disturbance by its frequency (docs/method.md, "The outputs stage").

    >>> probes = Probes(np.zeros((1, 2)), np.eye(2)[None], np.array([0.5]))
    >>> inputs = AveragedOutputs().inputs(probes)
    >>> AveragedOutputs().assemble(probes, inputs @ np.array([[3.0], [-1.0]]) + 2.0)["outputs"].tolist()
    [[2.0]]
    """

    relative_keys = ("outputs",)

    def inputs(self, probes: Probes) -> np.ndarray:
        if probes.directions is None or probes.steps is None:
            raise InvalidParameter("The 'averaged-outputs' signature needs probes with directions and steps.")
        return stepped_inputs(np.asarray(probes.points, dtype=np.float64), np.asarray(probes.directions, np.float64),
                              np.asarray(probes.steps, dtype=np.float64)).astype(np.float32)

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        assert probes.directions is not None
        n, k = probes.directions.shape[:2]
        return {"outputs": np.asarray(outputs, dtype=np.float64).reshape(2, n, k, -1).mean(axis=(0, 2))}

    def answer_probes(self, probes: Probes) -> np.ndarray:
        """The point of each answer: each point's ``+ h u`` rows, then its ``- h u`` rows."""
        assert probes.directions is not None
        n, k = probes.directions.shape[:2]
        return np.tile(np.repeat(np.arange(n), k), 2)
