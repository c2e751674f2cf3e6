"""The label-only signature (IPGuard): the class a model predicts at each probe.

The label is the argmax of the output vector; for a single output (a binary classifier
with one logit) it is whether that output is positive. Labels are stored as floats, like
every signature array.

>>> import numpy as np
>>> from tafa.probes.base import Probes
>>> Labels().assemble(Probes(np.zeros((2, 1))), np.array([[0.1, 0.7, 0.2], [3.0, -1.0, 0.0]]))["labels"].tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import numpy as np

from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


def predicted_labels(outputs: np.ndarray) -> np.ndarray:
    """Predicted class per row of ``(N, ...)`` outputs, as float64 (see module doc)."""
    flat = outputs.reshape(len(outputs), -1)
    labels = (flat[:, 0] > 0) if flat.shape[1] == 1 else flat.argmax(axis=1)
    return labels.astype(np.float64)


@register_signature("labels")
class Labels(Measurement):
    """``labels``: the predicted class at each probe point, shape ``(N,)``."""

    def inputs(self, probes: Probes) -> np.ndarray:
        return probes.points

    accepts_labels = True

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        return {"labels": predicted_labels(outputs)}

    def from_labels(self, probes: Probes, labels: np.ndarray) -> Signature:
        return {"labels": np.asarray(labels, dtype=np.float64).reshape(len(labels))}
