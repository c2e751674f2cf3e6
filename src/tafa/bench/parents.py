"""Shared public parents: the pretrained networks that owners and innocent siblings fine-tune.

A model marketplace is full of fine-tunes of the same public base. A parent zoo
(:class:`ParentSpec` on a :class:`~tafa.bench.zoo.ZooSpec`) has a public parent pretrained
on other data or another task, the owner's fine-tune of it on the owner's half of the data,
innocent siblings that fine-tune the same parent on the other half (several learning
rates, lengths and data subsets, many seeds), and pirated copies that post-process the
owner's fine-tune. The parent's pretraining data (:data:`PRETRAINING`), all shipped with
packages:

- ``digits-0-4``: the digits of classes 0 to 4 only (a classifier with the full 10-way head,
  or a VAE decoder of those digits): the owner's task adds the other five classes;
- ``friedman-related``: 2,000 fresh Friedman #1 inputs (another seed) with a related target
  (the same terms, other weights), in the Friedman task's standardised feature space.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..training import TrainingData
from .datasets import load_task

#: The pretraining data sets a parent can have (see the module doc).
PRETRAINING = ("digits-0-4", "friedman-related")


@dataclass(frozen=True)
class ParentSpec:
    """How a zoo's shared public parent is pretrained, and how its siblings fine-tune it.

    ``siblings``: recipes ``(learning-rate factor, epochs factor, data fraction)`` relative to
    the owner's fine-tuning (the zoo's ``lr`` and ``epochs``), cycled over the siblings; a
    fraction below 1 fine-tunes on a random subset of the other half (drawn with the sibling's
    seed).
    """

    pretraining: str
    epochs: int
    lr: float = 1e-3
    seed: int = 0
    siblings: tuple[tuple[float, float, float], ...] = (
        (1.0, 1.0, 1.0), (0.5, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 0.5, 1.0), (1.0, 2.0, 1.0), (1.0, 1.0, 0.6))

    def __post_init__(self) -> None:
        if self.pretraining not in PRETRAINING:
            raise ValueError(f"Unknown pretraining {self.pretraining!r}; expected one of {PRETRAINING}.")


def pretraining_data(name: str, generative: bool) -> TrainingData:
    """The parent's training data ``name`` (a decoder's when ``generative``: images only)."""
    if name == "digits-0-4":
        task = load_task("digits")
        keep = task.y < 5
        if generative:
            return TrainingData(task.x[keep], None, "vae")  # type: ignore[arg-type]
        return TrainingData(task.x[keep], task.y[keep], "classify")  # type: ignore[arg-type]
    if name == "friedman-related":
        x, y = _friedman_related()
        return TrainingData(x, y, "regress")  # type: ignore[arg-type]
    raise ValueError(f"Unknown pretraining {name!r}; expected one of {PRETRAINING}.")


@lru_cache(maxsize=None)
def _friedman_related(n: int = 2000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_friedman1

    reference, _ = make_friedman1(n_samples=2000, n_features=10, noise=0.5, random_state=0)
    rng = np.random.default_rng(seed)
    raw = rng.uniform(size=(n, 10))
    target = (10 * np.sin(np.pi * raw[:, 0] * raw[:, 1]) + 10 * (raw[:, 2] - 0.5) ** 2 + 5 * raw[:, 3]
              + 10 * raw[:, 4] + rng.normal(scale=0.5, size=n))
    x = (raw - reference.mean(axis=0)) / reference.std(axis=0)  # the Friedman task's feature scale
    y = (target - target.mean()) / target.std()
    return x.astype(np.float32), y[:, None].astype(np.float32)


def subset(data: TrainingData, fraction: float, seed: int) -> TrainingData:
    """A random ``fraction`` of ``data`` (all of it when ``fraction >= 1``), drawn with ``seed``."""
    if fraction >= 1:
        return data
    index = np.sort(np.random.default_rng(seed).permutation(len(data))[:max(1, int(round(fraction * len(data))))])
    return TrainingData(data.x[index], None if data.y is None else data.y[index], data.objective)
