"""SAC's sample-correlation matrix: how alike a model's outputs on every pair of probes are.

``correlation[a, b]`` is the cosine similarity of the model's output vectors at probes
``a`` and ``b`` (``N x N``, ones on the diagonal; 0 where an output vector is zero). The
matrix, not the outputs, is the fingerprint: it survives any change that keeps the
geometry of the outputs, such as a rotation of the output space.

The authors' code stores ``(1 - cos) / 2`` instead; that is an affine map of this matrix,
so distances between matrices differ by the factor 1/2 only (see ``correlation-l1``).

>>> import numpy as np
>>> from tafa.probes.base import Probes
>>> Correlation().assemble(Probes(np.zeros((3, 1))), np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))[
...     "correlation"].round(4).tolist()
[[1.0, 0.0, 0.7071], [0.0, 1.0, 0.7071], [0.7071, 0.7071, 1.0]]
"""

from __future__ import annotations

import numpy as np

from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


def correlation_matrix(outputs: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows of ``(N, ...)`` outputs, ``(N, N)``."""
    flat = outputs.reshape(len(outputs), -1)
    norms = np.linalg.norm(flat, axis=1)
    unit = flat / np.where(norms > 0, norms, 1.0)[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


@register_signature("correlation")
class Correlation(Measurement):
    """``correlation``: the ``N x N`` cosine-similarity matrix of the outputs at the probes."""

    def inputs(self, probes: Probes) -> np.ndarray:
        return probes.points

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        return {"correlation": correlation_matrix(outputs)}
