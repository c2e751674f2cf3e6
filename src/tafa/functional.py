"""The functional core: the pure maths that more than one stage computes.

Pure functions of arrays (numpy, and torch tensors for the one small network trained on
both sides: torch is imported by those functions alone, so that scoring a suspect needs
numpy only), no state, no models, importing nothing of tafa: the probe
strategies (choosing probes where references disagree), the signatures and the decisions
(scoring a suspect) all import it *downward*, and the classes of those stages wrap it
(as torchmetrics' ``functional/`` sits under its ``Metric`` classes).

The directional derivatives are measured here once, for the owner's white-box probe
selection and for every model's black-box signature alike: the stepped inputs
``x_i +- h_i u_ik`` (:func:`stepped_inputs`) and the central differences of the answers
there (:func:`central_differences`). The local-cosine evidence of the method is computed
here once too: per probe, the cosine of the owner's and the suspect's derivative matrices after centring each within its
direction group (:func:`local_cosines`), beside the raw per-probe cosine
(:func:`rowwise_cosine`). So is MetaV's meta-verifier, which the ``metav`` probe strategy
trains jointly with its inputs and the ``meta-verifier`` decision trains again and applies
(:func:`standardisation`, :func:`initial_parameters`, :func:`verifier_logits`,
:func:`balanced_bce`).

>>> import numpy as np
>>> a = np.array([[1.0, 0.0], [1.0, 1.0]])
>>> rowwise_cosine(a, np.array([[2.0, 0.0], [0.0, 0.0]])).tolist()
[1.0, 0.0]
>>> derivatives = np.random.default_rng(0).normal(size=(4, 2, 3))
>>> local_cosines(derivatives, derivatives, np.array([0.0, 0.0, 1.0, 1.0])).round(6).tolist()
[1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def stepped_inputs(points: np.ndarray, directions: np.ndarray, steps: float | np.ndarray) -> np.ndarray:
    """The ``2nk`` inputs ``x_i + h_i u_ik`` (all of them), then ``x_i - h_i u_ik``: ``points``
    ``(n, *shape)``, ``directions`` ``(n, k, *shape)``, one step ``h`` or one per point."""
    n, k = directions.shape[:2]
    offsets = np.asarray(steps, dtype=np.float64).reshape(-1, *([1] * (directions.ndim - 1))) * directions
    shape = points.shape[1:]
    return np.concatenate([(points[:, None] + offsets).reshape(n * k, *shape),
                           (points[:, None] - offsets).reshape(n * k, *shape)])


def central_differences(answers: np.ndarray, n: int, k: int, steps: float | np.ndarray) -> np.ndarray:
    """``(n, k, m)`` directional derivatives ``(f(x+hu) - f(x-hu)) / 2h`` from a model's
    ``answers`` at :func:`stepped_inputs` (in that order).

    >>> points, directions = np.zeros((1, 2)), np.eye(2)[None]
    >>> answers = (stepped_inputs(points, directions, 0.5) @ np.array([[3.0], [-1.0]]))
    >>> central_differences(answers, 1, 2, 0.5).ravel().tolist()
    [3.0, -1.0]
    """
    flat = answers.reshape(2, n, k, -1)
    return (flat[0] - flat[1]) / (2 * np.asarray(steps, dtype=np.float64).reshape(-1, 1, 1))


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two ``(N, ...)`` arrays (0 where a row is zero)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened (0 if either is zero)."""
    return float(rowwise_cosine(a.reshape(1, -1), b.reshape(1, -1))[0])


def centred_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two ``(N, m)`` matrices after centring each column over the N points."""
    return cosine(a - a.mean(axis=0), b - b.mean(axis=0))


def aggregate(values: np.ndarray, how: str) -> float:
    """Combine per-point values robustly: ``median``, ``mean`` or ``trimmed`` (10% each side)."""
    if how == "median":
        return float(np.median(values))
    if how == "mean":
        return float(np.mean(values))
    if how == "trimmed":
        cut = int(0.1 * len(values))
        ordered = np.sort(values)
        return float(ordered[cut:len(values) - cut].mean())
    raise ValueError(f"Unknown aggregation {how!r}; expected 'median', 'mean' or 'trimmed'.")


def group_centred(derivatives: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Derivatives minus their mean over the points of the same direction group.

    Independent models of one task share much of their average local map; what a derived
    copy inherits, and an independent model does not, is how the map changes from one of
    the owner's regions to the next. Centring within a group of points that share their
    directions keeps exactly that change.
    """
    centred = np.array(derivatives, dtype=np.float64, copy=True)
    for label in np.unique(groups):
        members = groups == label
        centred[members] -= centred[members].mean(axis=0)
    return centred


def local_cosines(owner: np.ndarray, suspect: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-probe cosine of two ``(N, K, m)`` derivative arrays, each centred within the
    owner's direction ``groups`` (:func:`group_centred`): the method's local evidence."""
    return rowwise_cosine(group_centred(owner, groups), group_centred(suspect, groups))


def centred_over(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` centred along the last axis over the entries ``known`` (booleans broadcast to them),
    0 at the others: a shift common to the known outputs (a log-probability's log-sum-exp) removed.

    >>> centred_over(np.array([[1.0, 3.0, 9.0]]), np.array([[True, True, False]])).tolist()
    [[-1.0, 1.0, 0.0]]
    """
    known = np.broadcast_to(known, np.shape(values))
    values = np.where(known, np.asarray(values, dtype=np.float64), 0.0)
    count = np.maximum(known.sum(axis=-1, keepdims=True), 1)
    return np.where(known, values - values.sum(axis=-1, keepdims=True) / count, 0.0)


def shown_cosines(owner: np.ndarray, suspect: np.ndarray, shown: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """:func:`local_cosines` on the outputs a suspect shows: per probe, only the outputs ``shown``
    (``(N, m)`` booleans) enter; both ``(N, K, m)`` derivative arrays are centred across those
    outputs (a shift common to them, as a log-probability's log-sum-exp, is no evidence), then
    within the direction ``groups`` with each output's mean over the group's probes that show it.
    NaN for a probe showing fewer than two outputs.

    >>> d = np.arange(12.0).reshape(2, 2, 3) ** 2
    >>> shown = np.array([[True, True, False], [True, True, True]])
    >>> np.round(shown_cosines(d, 3 * d + 1, shown, np.array([0, 0])), 6).tolist()
    [1.0, 1.0]
    """
    mask = np.asarray(shown, dtype=bool)[:, None, :]

    def centred(values: np.ndarray) -> np.ndarray:
        values = centred_over(values, mask)
        out = values.copy()
        for label in np.unique(groups):
            members = groups == label
            mean = values[members].sum(axis=0) / np.maximum(mask[members].sum(axis=0), 1)
            out[members] = np.where(mask[members], values[members] - mean, 0.0)
        return out

    cosines = rowwise_cosine(centred(owner), centred(suspect))
    return np.where(mask.sum(axis=2)[:, 0] >= 2, cosines, np.nan)


# ---------------------------------------------------------------- MetaV's meta-verifier
def standardisation(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate mean and scale of ``rows`` (``(M, D)``): the standard deviation over
    the rows, floored at ``1e-3`` times its median (1 where every coordinate is constant)."""
    rows = np.asarray(rows, dtype=np.float64)
    mean = rows.mean(axis=0)
    deviation = rows.std(axis=0)
    typical = float(np.median(deviation))
    if typical <= 0:
        typical = float(deviation.max())
    floor = 1e-3 * typical if typical > 0 else 1.0
    return mean, np.maximum(deviation, floor)


def initial_parameters(d: int, hidden: int, seed: int) -> list[torch.Tensor]:
    """``[w1 (hidden, d), b1 (hidden,), w2 (hidden,), b2 (1,)]``, float64, uniform in
    ``+-1/sqrt(fan_in)`` (torch's ``nn.Linear`` rule), from a generator seeded by ``seed``."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        bound = 1.0 / np.sqrt(fan_in)
        values = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        return values.requires_grad_(True)

    return [uniform((hidden, d), d), uniform((hidden,), d), uniform((hidden,), hidden), uniform((1,), hidden)]


def verifier_logits(parameters: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """The verifier's logit for each row of standardised outputs ``z`` (``(M, D)``)."""
    import torch

    w1, b1, w2, b2 = parameters
    return torch.relu(z @ w1.T + b1) @ w2 + b2


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with each class weighted to half of the total."""
    import torch

    positives = labels > 0.5
    weights = torch.where(positives, 0.5 / positives.sum().clamp(min=1), 0.5 / (~positives).sum().clamp(min=1))
    losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (weights * losses).sum()
