"""Weight evidence: is a suspect's file derived from the owner's weights?

Two statistics are computed after :func:`~tafa.weights.align.align` has matched the units of
each fitting layer (see docs/method.md, "Weight evidence for file suspects"):

- **order** (an exact, data-free p-value). Read the owner units matched to the suspect's
  units, in the suspect's unit order: a copy that kept its units in place (fine-tuning,
  pruning, structured pruning, quantization, noise, rescaling) lists them in increasing
  order. Under the null "the suspect was initialised independently of the owner", and
  because the owner's initialisation and training treat its hidden units alike (i.i.d.
  initial weights, a permutation-equivariant optimiser), relabelling the owner's units by any
  fixed permutation leaves the joint law unchanged, so the matching is a *uniformly random*
  permutation whatever the data and whatever the suspect. The chance that ``m`` uniformly
  ordered values hold an increasing run of length ``k`` (a longest increasing subsequence) is
  at most ``C(m, k) / k!`` (union bound over the k-subsets): that bound is the layer's
  p-value, and the smallest over the layers times their number (Bonferroni) is the
  evidence's. It is valid, conservative, and needs nothing but the two files.
- **alignment** (robust to permutation). The mean cosine of matched units, and for each
  hidden layer after the first how far its units' best cosines with the owner's stand above
  the same after the previous layer's matching was shuffled (a z-score); the statistic is the
  largest.
  Permuting units defeats the order statistic but not this one. No data-free null exists
  for a statistic that ignores unit labels (relabelling the owner is then the same as
  relabelling the suspect, so the only symmetry of the null leaves it unchanged), and
  independently trained models of the same task do share structure (their z-scores reach
  8-42 in the benchmark): its p-value is taken against independent reference models when
  they are given, by rank (exact when the suspect is exchangeable with them, as the black-box
  threshold assumes) and by Cantelli's bound on their mean and spread.

>>> import torch
>>> torch.manual_seed(0) and None
>>> owner = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> copy = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> _ = copy.load_state_dict(owner.state_dict())
>>> found = compare(unit_layers(owner), unit_layers(copy))
>>> found.applicable, found.p_value < 1e-30, round(found.cosine, 3)
(True, True, 1.0)
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .align import Matching, align, blocks, carry, cosine_matrix
from .layers import UnitLayer, unit_layers

#: Shuffles of the previous layer's matching behind each alignment z-score.
SHUFFLES = 20

__all__ = ["SHUFFLES", "WeightEvidence", "compare", "increasing_run", "order_p_value", "unit_layers"]


def increasing_run(values: Sequence[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for value in values:
        at = bisect_left(tails, value)
        if at == len(tails):
            tails.append(value)
        else:
            tails[at] = value
    return len(tails)


def order_p_value(run: int, count: int) -> float:
    """``min(1, C(count, run) / run!)``: a bound on the chance that ``count`` values in uniformly
    random order hold an increasing subsequence of length ``run``."""
    if run <= 0 or count <= 0:
        return 1.0
    log = (math.lgamma(count + 1) - math.lgamma(run + 1) - math.lgamma(count - run + 1)) - math.lgamma(run + 1)
    return float(min(1.0, math.exp(log))) if log < 0 else 1.0


@dataclass(frozen=True)
class LayerEvidence:
    """What one matched layer shows."""

    name: str
    owner_units: int
    suspect_units: int
    matched: int
    cosine: float
    increasing: int
    order_p: float
    hidden: bool
    shuffled_cosine: float | None = None
    z: float | None = None


@dataclass
class WeightEvidence:
    """The weight evidence for one suspect (see the module doc).

    ``applicable`` is false (with a ``reason``) when the first layers do not read the inputs
    alike (another architecture) or when weights could not be read: that is no evidence either
    way, not an error. ``p_value`` is the order test's (exact, data-free);
    ``reference_p_value`` the alignment statistic's rank among independent references, when
    they were given (exact when the suspect is exchangeable with them; never below
    ``1 / (n + 1)``), and ``reference_moment_p`` Cantelli's bound ``1 / (1 + k^2)`` for a
    statistic ``k`` standard deviations above the references' mean (distribution-free given
    the mean and spread, which are estimated).
    """

    applicable: bool
    reason: str = ""
    p_value: float | None = None
    cosine: float | None = None
    alignment_z: float | None = None
    alignment_layer: str | None = None
    layers: list[LayerEvidence] = field(default_factory=list)
    reference_p_value: float | None = None
    reference_statistics: list[float] | None = None
    reference_moment_p: float | None = None

    @property
    def combined_p_value(self) -> float | None:
        """Both tests at once (Bonferroni): ``min(1, 2 min(order p, Cantelli p))`` when references
        were given, else the order test's p-value."""
        if self.p_value is None or self.reference_moment_p is None:
            return self.p_value
        return min(1.0, 2 * min(self.p_value, self.reference_moment_p))

    @property
    def statistic(self) -> float | None:
        """The alignment statistic ranked against references: the largest z-score of the hidden
        layers after the first (the mean first-layer cosine when no such layer fits)."""
        return self.alignment_z if self.alignment_z is not None else self.cosine

    def with_references(self, statistics: Sequence[float]) -> "WeightEvidence":
        """This evidence with the alignment statistic ranked among the ``statistics`` of
        independent reference models: ``(1 + #{reference >= suspect}) / (n + 1)``."""
        kept = [float(s) for s in statistics if s is not None and math.isfinite(s)]
        if not self.applicable or self.statistic is None or not kept:
            return self
        above = sum(1 for s in kept if s >= self.statistic)
        self.reference_statistics = kept
        self.reference_p_value = (1 + above) / (len(kept) + 1)
        if len(kept) >= 3 and np.std(kept) > 0:
            # Cantelli's one-sided inequality: P(X - mean >= k sd) <= 1 / (1 + k^2) for any law
            # with that mean and variance (here estimated from the references)
            k = (self.statistic - float(np.mean(kept))) / float(np.std(kept, ddof=1))
            self.reference_moment_p = 1.0 if k <= 0 else 1.0 / (1.0 + k * k)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"applicable": self.applicable, "reason": self.reason, "p_value": self.p_value,
                "cosine": self.cosine, "alignment_z": self.alignment_z, "alignment_layer": self.alignment_layer,
                "combined_p_value": self.combined_p_value, "reference_p_value": self.reference_p_value,
                "reference_moment_p": self.reference_moment_p,
                "n_references": None if self.reference_statistics is None else len(self.reference_statistics),
                "layers": [asdict(layer) for layer in self.layers]}

    def render(self) -> str:
        """One line for people."""
        if not self.applicable:
            return f"weights: not applicable ({self.reason})"
        first = self.layers[0]
        order = (f"p = {self.p_value:.2g} (unit order kept, exact; permuting units defeats this test)"
                 if any(layer.hidden for layer in self.layers) else
                 "p = 1 (no matched layer's unit order is free: each reaches an output, or is split or reshaped "
                 "by its units' place, or the network could not be traced; no order test)")
        parts = [order, f"{first.matched}/{first.owner_units} first-layer units matched, cosine {first.cosine:.2f}"]
        if self.alignment_z is not None:
            layer = next(layer for layer in self.layers if layer.name == self.alignment_layer)
            parts.append(f"layer {layer.name!r} cosine {layer.cosine:.2f} (best {layer.shuffled_cosine:.2f} with the "
                         f"previous matching shuffled; z = {self.alignment_z:.1f})")
        if self.reference_p_value is None:
            parts.append("alignment has no data-free p-value (pass --references to rank it)")
        else:
            parametric = ("" if self.reference_moment_p is None
                          else f", {self.reference_moment_p:.2g} by Cantelli's bound on their mean and spread")
            parts.append(f"alignment p = {self.reference_p_value:.2g} by rank among "
                         f"{len(self.reference_statistics or [])} references{parametric}; both tests: "
                         f"p = {self.combined_p_value:.2g}")
        return "weights: " + "; ".join(parts)


def best_cosine(owner: np.ndarray, moved: np.ndarray) -> float:
    """Mean over the suspect's live units of their best cosine with any owner unit (no
    assignment: cheap enough to repeat for every shuffle)."""
    live = np.linalg.norm(moved, axis=1) > 0
    if not live.any():
        return 0.0
    return float(np.mean(cosine_matrix(owner, moved[live]).max(axis=1)))


def _shuffled(layer: UnitLayer, owner: UnitLayer, previous: UnitLayer, matching: Matching, size: int,
              shuffles: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`best_cosine` of ``layer`` (a suspect's) after the previous matching was shuffled."""
    values = []
    for _ in range(shuffles):
        order = rng.permutation(len(matching))
        shuffled = Matching(matching.suspect, matching.owner[order], matching.cosines, matching.scales)
        values.append(best_cosine(owner.vectors, carry(layer, shuffled, previous.units, size)))
    return np.asarray(values)


def compare(owner: list[UnitLayer], suspect: list[UnitLayer], *, shuffles: int = SHUFFLES,
            seed: int = 0) -> WeightEvidence:
    """The weight evidence of ``suspect``'s layers against ``owner``'s (see the module doc)."""
    if not owner or not suspect:
        return WeightEvidence(False, "no Linear or convolution layers could be read")
    matchings = align(owner, suspect)
    if not matchings:
        o, s = owner[0], suspect[0]
        return WeightEvidence(False, f"the first layers differ (owner {o.kind} with fan-in {o.fan_in}, suspect "
                                     f"{s.kind} with fan-in {s.fan_in}): another architecture")
    rng = np.random.default_rng(seed)
    layers: list[LayerEvidence] = []
    for depth, matching in enumerate(matchings):
        run = increasing_run(matching.owner[np.argsort(matching.suspect)].tolist())
        shuffled_cosine = z = None
        if depth >= 1 and shuffles > 0:
            size = blocks(owner[depth], owner[depth - 1])
            assert size is not None
            null = _shuffled(suspect[depth], owner[depth], owner[depth - 1], matchings[depth - 1], size, shuffles,
                             rng)
            best = best_cosine(owner[depth].vectors, carry(suspect[depth], matchings[depth - 1], owner[depth - 1].units,
                                                           size))
            shuffled_cosine = float(null.mean())
            z = float((best - null.mean()) / max(float(null.std()), 1e-6))
        layers.append(LayerEvidence(owner[depth].name, owner[depth].units, suspect[depth].units, len(matching),
                                    float(np.mean(matching.cosines)) if len(matching) else 0.0, run,
                                    order_p_value(run, len(matching)), owner[depth].hidden, shuffled_cosine, z))
    hidden = [layer.order_p for layer in layers if layer.hidden]
    p_value = min(1.0, len(hidden) * min(hidden)) if hidden else 1.0
    deeper = [layer for layer in layers[1:] if layer.hidden and layer.z is not None]
    strongest = max(deeper, key=lambda layer: float(layer.z or 0.0)) if deeper else None
    return WeightEvidence(True, p_value=p_value, cosine=layers[0].cosine,
                          alignment_z=None if strongest is None else strongest.z,
                          alignment_layer=None if strongest is None else strongest.name, layers=layers)


def module_evidence(owner: Any, suspect: Any, **options: Any) -> WeightEvidence:
    """:func:`compare` on two torch modules (their layers read by :func:`unit_layers`)."""
    return compare(unit_layers(owner, source="the owner"), unit_layers(suspect, source="the suspect"), **options)
