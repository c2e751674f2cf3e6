"""ModelDiff's decision distance vector: how far apart a model's decisions are on each
input pair.

For pair ``i`` with inputs ``(x_i, x'_i)`` (``probes.points`` and ``probes.extra["pair"]``)
the model is queried at both, and the signature holds ``ddv[i] = d(g(x_i), g(x'_i))``:
the cosine distance ``1 - cos`` of the two output vectors, as in the paper and the
authors' artifact (``scipy.spatial.distance.cosine``), or the absolute difference when
the output is a single number (where a cosine is only a sign). A zero output vector
counts as orthogonal to any other (distance 1).

>>> import numpy as np
>>> from tafa.probes.base import Probes
>>> probes = Probes(np.zeros((2, 3)), extra={"pair": np.ones((2, 3))})
>>> DecisionDistance().inputs(probes).shape
(4, 3)
>>> outputs = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
>>> DecisionDistance().assemble(probes, outputs)["ddv"].round(6).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import numpy as np

from ..functional import rowwise_cosine
from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


def decision_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row decision distance of two ``(N, ...)`` output arrays (see module doc)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape[1] == 1:
        return np.abs(a - b)[:, 0]
    return 1.0 - rowwise_cosine(a, b)


@register_signature("decision-distance")
class DecisionDistance(Measurement):
    """``ddv``: the decision distance of each input pair, shape ``(N,)``; ``2N`` queries."""

    def inputs(self, probes: Probes) -> np.ndarray:
        if "pair" not in probes.extra:
            raise ValueError("The decision-distance signature needs input pairs (probes.extra['pair']); "
                             f"these probes come from {probes.info.get('strategy', 'another strategy')!r}.")
        return np.concatenate([probes.points, probes.extra["pair"]])

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        n = len(probes)
        return {"ddv": decision_distances(outputs[:n], outputs[n:])}
