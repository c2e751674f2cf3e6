"""Where to query: the probe set of a fingerprint, and the one verb every strategy answers.

A :class:`ProbeStrategy` looks at the owner model (white-box where it can, black-box
otherwise) and the declared domain, and returns :class:`Probes`: the query points, and,
for signatures that need them, directions and step sizes. Strategies are registered by
name (:func:`register_probes`, :func:`get_probes`), never chosen by if/elif.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Hashable

import numpy as np

from ..components import Components
from ..domain import Domain
from ..errors import ShapeMismatch
from ..models.base import Model

if TYPE_CHECKING:
    from ..references import References


class Analysis(str, Enum):
    """How probes were chosen: with the owner's internals (white box), from its answers alone
    (black box: no torch module to analyse), or with no analysis (random, data).

    Probes record it as the first word of ``info["analysis"]`` (which may add why, e.g.
    ``"black-box (owner has no torch module)"``); :attr:`Probes.analysis` reads it back.
    """

    WHITE_BOX = "white-box"
    BLACK_BOX = "black-box"
    NONE = "none"

    @classmethod
    def of(cls, text: object) -> "Analysis":
        """The analysis a probes' ``info["analysis"]`` text names (:attr:`NONE` when it names none)."""
        word = str(text or "").split(" ", 1)[0]
        return cls(word) if word in {a.value for a in cls} else cls.NONE

    @staticmethod
    def why(text: object) -> str:
        """The reason an ``info["analysis"]`` text gives in brackets after its first word (the whole
        text when it gives none).

        >>> Analysis.why("black-box (owner has no torch module)"), Analysis.why("white-box")
        ('owner has no torch module', 'white-box')
        """
        rest = str(text or "").partition(" ")[2]
        return rest[1:-1] if rest.startswith("(") and rest.endswith(")") else str(text or "")


@dataclass
class Probes:
    """The inputs a fingerprint queries.

    ``points`` is ``(N, *input_shape)``; ``directions`` ``(N, K, *input_shape)`` and
    ``steps`` ``(N,)`` are present for derivative signatures; ``extra`` holds strategy-specific
    arrays (e.g. the second input of each ModelDiff pair); ``info`` is JSON-able provenance
    (white- or black-box path, radii, ...).
    """

    points: np.ndarray
    directions: np.ndarray | None = None
    steps: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def analysis(self) -> Analysis:
        """How these probes were chosen (see :class:`Analysis`)."""
        return Analysis.of(self.info.get("analysis"))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, by a stable name (for the fingerprint file)."""
        arrays = {"points": self.points}
        if self.directions is not None:
            arrays["directions"] = self.directions
        if self.steps is not None:
            arrays["steps"] = self.steps
        arrays.update({f"extra.{key}": value for key, value in self.extra.items()})
        return arrays

    def subset(self, keep: np.ndarray) -> "Probes":
        """These probes at the points ``keep`` selects (booleans or indices); per-point arrays of
        ``extra`` follow them.

        >>> probes = Probes(np.arange(6.0).reshape(3, 2), extra={"group": np.array([0.0, 0.0, 1.0])})
        >>> part = probes.subset(np.array([True, False, True]))
        >>> part.points.tolist(), part.extra["group"].tolist()
        ([[0.0, 1.0], [4.0, 5.0]], [0.0, 1.0])
        """
        n = len(self.points)

        def take(values: np.ndarray) -> np.ndarray:
            values = np.asarray(values)
            return values[keep] if values.ndim and len(values) == n else values

        return replace(self, points=self.points[keep],
                       directions=None if self.directions is None else take(self.directions),
                       steps=None if self.steps is None else take(self.steps),
                       extra={key: take(value) for key, value in self.extra.items()},
                       info={**self.info, "subset": f"{len(self.points[keep])} of {n} points"})

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "Probes":
        """Inverse of :meth:`arrays`."""
        return cls(points=arrays["points"], directions=arrays.get("directions"), steps=arrays.get("steps"),
                   extra={key[6:]: value for key, value in arrays.items() if key.startswith("extra.")},
                   info=info)


@dataclass
class CandidateCache:
    """Candidate probes of one owner, kept by a caller that selects probes again.

    A strategy that chooses its probes among costly candidates (the region-centred probes
    with reference selection: one linear program per candidate) computes them once per
    cache and key, so that selecting again with other references (the benchmark's
    leave-one-family-out runs) reuses them. The caller owns the cache and hands it over
    (:attr:`ProbeStrategy.candidate_cache`, or ``Scheme(candidate_cache=...)``); without
    one, every selection computes its candidates afresh. One owner at a time: a new key
    replaces the entry.
    """

    key: Hashable = None
    candidates: Probes | None = None
    #: How many times the candidates were computed (for tests and reports).
    computed: int = 0

    def get(self, key: Hashable, make: Callable[[], Probes]) -> Probes:
        """The candidates stored under ``key``, made by ``make()`` if absent."""
        if self.candidates is None or self.key != key:
            self.candidates, self.key = make(), key
            self.computed += 1
        return self.candidates


@dataclass
class CostPlan:
    """What choosing probes will cost, and the parameters that keep it within a time budget.

    ``seconds``: the estimate for the whole fingerprint (probes and the owner's signature);
    ``params``: probe parameters to add to the scheme's (empty when the exact analysis fits);
    ``shortcuts``: what the plan gave up, in words (recorded in the fingerprint's metadata);
    ``owner_check``: whether the owner's own int8 copy is still scored (one more signature);
    ``summary``: one line for people, e.g. ``"64 probes, 64 LPs in 64-dim slices"``.
    """

    seconds: float
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    shortcuts: list[str] = field(default_factory=list)
    owner_check: bool = True


class ProbeStrategy(ABC):
    """Chooses probes for an owner model over a domain; same seed, same probes."""

    name: str = ""
    #: Where a strategy with costly candidates keeps them between selections (see
    #: :class:`CandidateCache`); ``None``: nothing is kept.
    candidate_cache: CandidateCache | None = None

    @abstractmethod
    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        """Probes for ``owner``: ``n`` points (and ``k`` directions each where used).

        ``data`` (inputs of the owner's own data, ``(M, *input_shape)``) is offered to the
        baselines whose papers start from data (IPGuard, SAC-m, ModelDiff); the project's
        method never uses it. ``references`` (positive and negative reference models) is for
        strategies that learn their probes (MetaV); the others ignore it.
        """

    def plan(self, owner: Model, domain: Domain, *, n: int, k: int, signature_queries: int,
             budget: float | None) -> CostPlan | None:
        """Estimate the cost of :meth:`select` plus ``signature_queries`` owner queries and,
        when it exceeds ``budget`` seconds, the cheaper parameters to use instead. ``None``:
        the strategy has nothing costly to plan (the default)."""
        return None


PROBES: Components[ProbeStrategy] = Components("probe strategy")

#: Class decorator: make a probe strategy available by name.
register_probes = PROBES.register


def get_probes(name: str, **params: Any) -> ProbeStrategy:
    """The registered probe strategy ``name``, built with ``params``."""
    return PROBES.create(name, **params)


def unavailable_reason(owner: Model) -> str:
    """Why an owner gets no white-box analysis when it is not a torch module: the import's own
    failure when it has one (an ONNX file whose operators are outside the piecewise-linear set)."""
    notice = owner.import_notice()
    return f"the white-box import failed: {notice}" if notice else "the owner is not available as a torch module"


def direction_groups(n: int, group: int) -> np.ndarray:
    """Group index of each of ``n`` points: consecutive runs of ``group`` points, a short last
    run merged into the one before (so no group has a single point unless ``n`` < 2)."""
    labels = np.arange(n) // max(1, group)
    if group > 1 and n % group == 1 and n > 1:
        labels[-1] = labels[-2]
    return labels


def orthonormal_directions(n: int, k: int, shape: tuple[int, ...], rng: np.random.Generator,
                           group: int = 1) -> np.ndarray:
    """``k`` orthonormal random directions per point, ``(n, k, *shape)``; points of the same
    :func:`direction_groups` group share their directions."""
    d = int(np.prod(shape))
    if k > d:
        raise ValueError(f"Cannot draw {k} orthonormal directions in a {d}-dimensional input space.")
    labels = direction_groups(n, group)
    gaussian = rng.normal(size=(int(labels.max()) + 1, d, k))
    q, _ = np.linalg.qr(gaussian)
    return np.ascontiguousarray(np.transpose(q, (0, 2, 1))[labels]).reshape(n, k, *shape)


def seed_inputs(domain: Domain, n: int, rng: np.random.Generator,
                data: np.ndarray | None) -> tuple[np.ndarray, str]:
    """``n`` starting inputs for a data-based baseline: distinct rows of ``data`` (drawn
    with replacement only when it has fewer than ``n``), else draws from ``domain``.

    Returns the inputs (float64, ``(n, *domain.shape)``) and where they came from
    (``"data"`` or ``"domain"``).
    """
    if data is None:
        return domain.sample(n, rng), "domain"
    pool = np.asarray(data, dtype=np.float64)
    if pool.shape[1:] != domain.shape or len(pool) == 0:
        raise ShapeMismatch(f"The owner's data has shape {pool.shape}; expected (M, *{domain.shape}) "
                            "with M >= 1, the model's input shape.")
    index = rng.choice(len(pool), size=n, replace=len(pool) < n)
    return pool[index].copy(), "data"
