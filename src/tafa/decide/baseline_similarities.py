"""The baselines' similarities: one per ported paper, each behind :meth:`Similarity.compare`.

- ``ddv-cosine`` (ModelDiff): cosine similarity of the two decision distance vectors.
- ``match-rate`` (IPGuard): the fraction of probes where the suspect predicts the owner's label.
- ``correlation-l1`` (SAC-m): one minus the mean absolute difference of the two
  sample-correlation matrices.

Each returns a :class:`~tafa.decide.similarity.Score` whose ``per_point`` values average
to the score, so the verdict's spread table reads the same way for every scheme.

>>> import numpy as np
>>> DDVCosine().compare({"ddv": np.array([1.0, 0.0])}, {"ddv": np.array([1.0, 1.0])}).value  # doctest: +ELLIPSIS
0.7071...
>>> MatchRate().compare({"labels": np.array([0.0, 1.0, 2.0, 3.0])}, {"labels": np.array([0.0, 1.0, 0.0, 3.0])}).value
0.75
"""

from __future__ import annotations

import numpy as np

from ..signature.base import Signature
from .similarity import Score, Similarity, register_similarity


@register_similarity("ddv-cosine")
class DDVCosine(Similarity):
    """ModelDiff: ``cos(ddv_owner, ddv_suspect)``, in ``[0, 1]`` as distances are >= 0.

    ``per_point[i] = N * a_i b_i / (|a| |b|)``, the share pair ``i`` adds (their mean is the
    score). A zero DDV (a constant model) is orthogonal to every other: score 0.
    """

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        a, b = np.ravel(owner["ddv"]), np.ravel(suspect["ddv"])
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        per_point = len(a) * a * b / norms if norms > 0 else np.zeros_like(a)
        value = float(per_point.mean()) if norms > 0 else 0.0
        return Score(value, per_point, {"ddv": value})


@register_similarity("match-rate")
class MatchRate(Similarity):
    """IPGuard: the fraction of probes where the two predicted labels are equal, in ``[0, 1]``."""

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        matches = (np.ravel(owner["labels"]) == np.ravel(suspect["labels"])).astype(np.float64)
        value = float(matches.mean())
        return Score(value, matches, {"labels": value})


@register_similarity("correlation-l1")
class CorrelationL1(Similarity):
    """SAC-m: ``1 - mean |C_owner - C_suspect|`` over all ``N x N`` entries.

    The paper's decision statistic is the distance ``mean |C_owner - C_suspect|`` (small for
    a stolen copy); tafa's similarities grow with likeness, so the score is one minus it,
    in ``[-1, 1]`` (cosine matrices differ by at most 2 per entry). The authors' code
    stores ``(1 - cos) / 2``, which halves the distance: their distance ``d`` is our
    ``(1 - score) / 2``, and rankings (hence AUC) are the same. ``per_point[a]`` is one
    minus the mean absolute difference of row ``a``.
    """

    def compare(self, owner: Signature, suspect: Signature) -> Score:
        difference = np.abs(np.asarray(owner["correlation"]) - np.asarray(suspect["correlation"]))
        per_point = 1.0 - difference.mean(axis=1)
        value = 1.0 - float(difference.mean())
        return Score(value, per_point, {"distance": float(difference.mean())})
