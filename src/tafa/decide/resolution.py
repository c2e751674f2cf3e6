"""What a decision would need where an interface leaves too little (issue 20, "honest where impossible").

A suspect whose answers lie on a grid (rounded values, integer logits, 8-bit pixels) or keep only
labels is never cleared: a score below the threshold is no evidence of independence there, and the
verdict is ``undecided``. This module says, beside that, whether more queries could decide it and
about how many, from the measurement the verdict already holds (no query more):

- **A grid, compared as answered** (:func:`grid_resolution`): the owner's coarse signature is
  remade as an exact copy behind the grid would give it (each stepped answer modelled from the owner's
  centre output and averaged derivative, rounded to the grid: :func:`rounded_owner`) and scored by
  the stage's own similarity: what the grid costs an exact copy there. When the suspect's shortfall
  below the threshold is larger, the grid does not explain it, and no number of queries at this stage
  would judge it derived. When it is not, the grid can hide a copy that far below, and asking again
  would not tell: the coarse scale's jittered steps (a few percent of the step) move the answers by
  less than a coarse grid, so its errors are nearly the same at every step and do not average out
  (``python benchmarks/resolution.py`` checks the modelled cost against the real one, docs/method.md).
- **Label-level answers** (:func:`correlation_resolution`, :func:`agreement_resolution`): the label
  stage's score is a correlation over ``n`` values (the data-free stage: points times directions) or
  an agreement over ``n`` points (the owner-data stage); its sampling error is about
  ``1 / sqrt(n - 3)`` in Fisher's z, or ``sqrt(s (1 - s) / n)``. When the shortfall is more than twice
  that, more points would not judge the suspect derived; otherwise about ``n (2 se / shortfall)^2``
  of them would tell (a fingerprint with a larger label stage: its points are fixed when the owner
  fingerprints).

These are estimates under a stated model (the owner's answers near each probe as its coarse
signature says; sampling error alone), never a change of the decision or of its bound. The grid's
step is the smallest gap between the suspect's distinct answers
(:func:`~tafa.signature.interface.grid_spacing`), not the finer grid they may also lie on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: The most queries a stage is ever said to need: beyond, "more than" this.
MOST_QUERIES = 10**9


@dataclass(frozen=True)
class Resolution:
    """Whether more queries at one stage could decide an unresolved suspect, and about how many.

    ``stage``: the stage's name; ``shortfall``: its threshold minus the suspect's score there;
    ``explained``: what the interface costs an exact copy there (a grid), or twice the score's
    sampling error (labels), in the score's units (``None``: not known); ``queries``: about how
    many queries at the stage would decide it (``None``: no number would: the shortfall is not the
    interface's doing, or the grid can hide it whatever is asked again); ``now``: the stage's queries
    as measured; ``more_than``: ``queries`` is a floor (capped at
    :data:`MOST_QUERIES`)."""

    stage: str
    shortfall: float
    explained: float | None
    queries: int | None
    now: int
    text: str
    more_than: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rounded_owner(owner: dict[str, np.ndarray], grid: float, steps: np.ndarray,
                  jitter: Sequence[float]) -> dict[str, np.ndarray]:
    """The owner's coarse signature as an exact copy behind a grid of step ``grid`` would give it: each
    stepped answer modelled as the owner's centre output plus its averaged derivative times the step
    (``outputs`` ``(N, m)``, ``derivatives`` ``(N, K, m)``), rounded to the grid, and the signature
    made from those as :class:`~tafa.signature.scales.JitteredDerivatives` makes it."""
    centres = np.asarray(owner["outputs"], dtype=np.float64)
    derivatives = np.asarray(owner["derivatives"], dtype=np.float64)
    n = len(derivatives)
    h = np.broadcast_to(np.asarray(steps, dtype=np.float64).reshape(-1), (n,)).reshape(n, 1, 1)
    averaged = np.zeros_like(derivatives)
    stepped = np.zeros_like(centres)
    for j in jitter:
        step = h * (1 + j)
        up = np.round((centres[:, None, :] + step * derivatives) / grid) * grid
        down = np.round((centres[:, None, :] - step * derivatives) / grid) * grid
        averaged += (up - down) / (2 * step)
        stepped += (up + down).sum(axis=1)
    model = dict(owner)
    model["derivatives"] = averaged / len(jitter)
    model["outputs"] = np.round(centres / grid) * grid
    if "smoothed" in owner:
        model["smoothed"] = stepped / (2 * derivatives.shape[1] * len(jitter))
    return model


def grid_resolution(stage: str, compare: Callable[[dict[str, np.ndarray]], float], owner: dict[str, np.ndarray],
                    grid: float | None, steps: np.ndarray, jitter: Sequence[float], score: float, threshold: float,
                    now: int) -> Resolution:
    """:class:`Resolution` of a suspect answering on a grid of step ``grid``, decided at the coarse
    scale (module doc). ``compare``: the stage's similarity of a signature to the owner's;
    ``owner``: the owner's signature there; ``steps``: the coarse step per probe; ``jitter``: the
    relative steps each difference is averaged over; ``grid`` ``None``: the answers took one value
    (:func:`~tafa.signature.interface.grid_spacing`); ``now``: the stage's queries."""
    shortfall = threshold - score
    if grid is None:
        return Resolution(stage, shortfall, None, None, now,
                          f"the suspect's answers at stage {stage!r} take a single value: the grid's step cannot be "
                          "read from them, nor how much of a copy it hides")
    explained = max(0.0, compare(dict(owner)) - compare(rounded_owner(owner, grid, steps, jitter)))
    what = (f"rounding to a grid of step {grid:.3g} costs an exact copy about {explained:.3g} of its score at stage "
            f"{stage!r} (modelled from the owner's own signature there)")
    if explained < shortfall:
        return Resolution(stage, shortfall, explained, None, now,
                          f"{what}, less than this suspect's {shortfall:.3g} below the threshold: the grid does not "
                          "explain its score, and no number of queries at this stage would judge it derived")
    return Resolution(stage, shortfall, explained, None, now,
                      f"{what}, as much as this suspect's {shortfall:.3g} below the threshold: the grid can hide a "
                      f"copy this far below it, and asking this stage again would not tell (its {len(jitter)} steps "
                      "around each probe move the answers by less than the grid, so the grid's errors do not average "
                      "out): evidence the grid keeps is needed (for a classifier, the label stage)")


def correlation_resolution(stage: str, values: int, score: float, threshold: float, queries_per_value: float,
                           now: int) -> Resolution:
    """:class:`Resolution` of a suspect decided by a correlation over ``values`` pairs (the data-free
    label stage): its sampling error is about ``1 / sqrt(values - 3)`` in Fisher's z (module doc)."""
    clip = 1 - 1e-9
    gap = math.atanh(min(clip, max(-clip, threshold))) - math.atanh(min(clip, max(-clip, score)))
    error = 1.0 / math.sqrt(max(values - 3, 1))
    slope = 1 - min(score * score, clip)  # d tanh(z) / dz at the score: the error in the score's own units
    return _sampled(stage, threshold - score, gap, error, values, queries_per_value, now, "values",
                    shown=error * slope)


def agreement_resolution(stage: str, points: int, score: float, threshold: float, now: int) -> Resolution:
    """:class:`Resolution` of a suspect decided by the share of ``points`` where its label is the
    owner's (the owner-data label stage): sampling error ``sqrt(s (1 - s) / points)``."""
    p = min(max(score, 1.0 / points), 1 - 1.0 / points)
    error = math.sqrt(p * (1 - p) / points)
    return _sampled(stage, threshold - score, threshold - score, error, points, now / points, now, "points",
                    shown=error)


def _sampled(stage: str, shortfall: float, gap: float, error: float, count: int, per: float, now: int,
             unit: str, *, shown: float) -> Resolution:
    """Shared by the label-level resolutions: ``gap`` and ``error`` in the same units (Fisher's z for
    a correlation), ``shown`` the error in the score's own."""
    what = f"the {stage!r} stage's sampling error over its {count} {unit} is about {shown:.3g}"
    if gap > 2 * error:
        return Resolution(stage, shortfall, 2 * shown, None, now,
                          f"{what}, less than half of this suspect's shortfall: more {unit} would not judge it derived")
    needed = count * (2 * error / max(gap, 1e-12)) ** 2
    queries = int(min(math.ceil(needed * per), MOST_QUERIES))
    return Resolution(stage, shortfall, 2 * shown, queries, now,
                      f"{what}, as much as half of this suspect's shortfall: a label stage of about "
                      f"{int(math.ceil(needed)):,} {unit} (about {queries:,} queries, {now:,} now; the owner "
                      "fingerprints again to make one) would tell", more_than=queries >= MOST_QUERIES)
