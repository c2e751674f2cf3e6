"""A pirate who has read the method: copies that recognise fingerprint queries.

The method is public, so a pirate can serve a copy that recognises tafa's queries and answers them
from an unrelated model (the *decoy*), while ordinary users get the copy. An :class:`Evasion` is one
such strategy, by name, behind one verb, :meth:`Evasion.apply`, which returns an
:class:`EvasiveModel`: a black box that answers every query either from ``copy`` or from ``decoy``
(the *routers*), or from ``copy`` with its answers disturbed (the ripple and the noise). Innocent
services could be wrapped the same way, so the benchmark wraps independent models too.

Routers (each counts the inputs it answered from the decoy in :attr:`EvasiveModel.routed`):

- ``batch``: any batch of more than one input goes to the decoy (users ask one input at a time);
- ``zeros``: inputs with fewer than ``min_zeros`` exact zeros go to the decoy (digit images have
  many zeros, the fingerprint's probes none);
- ``grid``: inputs with a value off the ``1/levels`` grid go to the decoy (digit pixels are k/16);
- ``ranges``: inputs with a feature outside the range the pirate's own data shows go to the decoy
  (needs ``data``);
- ``density``: inputs less likely, under a Gaussian fitted to the pirate's own data, than the 1%
  least likely of that data go to the decoy (needs ``data``): a detector of the task's data;
- ``confidence`` (classifiers): inputs where the copy's own two highest outputs are closer than for
  the 5% least confident of the pirate's data go to the decoy (needs ``data``): a router keyed on
  what the label stage's points share (tafa.label_stage: they sit just across the owner's boundaries);
- ``near_duplicate``: stateful: it remembers every input; one within ``eps`` (Euclidean) of an earlier
  one goes to the decoy, and an input asked again gets exactly its first answer (re-asking finds
  nothing inconsistent).

Continuous routers (a pirate who has read that the evasion check looks for the jump a switch makes):
the answers are ``w(x) copy(x) + (1 - w(x)) decoy(x)``, with a weight ``w`` that ramps from 1 on its
users' inputs to 0 on the rest, so that no jump shows at any resolution (:class:`BlendingRouter`):

- ``soft_zeros``: ``w`` ramps from 0 to 1 as the count of near-zero features (each ``|x| < 1/32``
  counting ``1 - |x| / (1/32)``) goes from 7 to 8 (digit images have many exact zeros);
- ``soft_grid``: ``w`` ramps from 1 to 0 as the features' total distance from the ``1/16`` grid
  (in grid steps) goes from 0 to 1 (narrower ramps, 0.1 of a step, the evasion check finds).

Both in the benchmark's image classifiers alone: a table's rows and a decoder's latents carry neither
exact zeros nor a grid, so there they would serve the decoy to the pirate's own users.

Disturbances: ``ripple`` adds ``amplitude * sin(x R)`` (a fixed random projection ``R`` of high
frequency, which wrecks finite differences at the fingerprint's steps); ``noise`` adds fresh
Gaussian noise of standard deviation ``sigma`` to every answer.

The evasions of the benchmark are registered in :data:`EVASIONS` at import;
:func:`register_evasion` adds more.

>>> import numpy as np, torch
>>> from tafa.models import TorchModel
>>> copy = TorchModel(torch.nn.Linear(3, 2), (3,))
>>> decoy = TorchModel(torch.nn.Linear(3, 2), (3,))
>>> served = get_evasion("batch").apply(copy, decoy)
>>> x = np.ones((4, 3), dtype=np.float32)
>>> bool(np.array_equal(served(x), decoy(x))), bool(np.array_equal(served(x[:1]), copy(x[:1])))
(True, True)
>>> served.queries, served.routed
(5, 4)
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..components import named, register_named
from ..errors import check_param
from ..models.base import Model

#: Builds the served model from the copy, the decoy (``None`` for the disturbances), the pirate's
#: data (``None`` unless the evasion needs it) and a seed.
Builder = Callable[[Model, "Model | None", "np.ndarray | None", int], "EvasiveModel"]


@dataclass(frozen=True)
class Evasion:
    """A named way of serving a copy so that fingerprint queries do not see it."""

    name: str
    build: Builder
    description: str = ""
    #: Whether it answers some queries from a decoy model (a router), or disturbs the copy's answers.
    routes: bool = True
    #: Whether it needs the pirate's own data (``apply(..., data=)``).
    needs_data: bool = False
    #: Its parameters, for reports.
    params: dict[str, Any] = field(default_factory=dict)
    #: The tasks it makes sense for (the benchmark wraps a zoo's models only in its task's evasions).
    tasks: tuple[str, ...] = ("classification", "regression", "generation")

    def apply(self, copy: Model, decoy: Model | None = None, *, data: np.ndarray | None = None,
              seed: int = 0) -> EvasiveModel:
        """``copy`` served through this evasion (neither model is changed; a router needs ``decoy``
        of the same shapes, ``ranges`` the pirate's ``data``, ``(n, *input_shape)``)."""
        caller = f"Evasion({self.name!r}).apply"
        check_param("copy", copy, "a tafa Model", isinstance(copy, Model), caller=caller)
        if self.routes:
            check_param("decoy", decoy, "a tafa Model with the copy's input and output shapes",
                        isinstance(decoy, Model) and decoy.input_shape == copy.input_shape
                        and decoy.output_shape == copy.output_shape, caller=caller)
        if self.needs_data:
            check_param("data", None if data is None else np.shape(data),
                        f"an array of inputs (n, {', '.join(map(str, copy.input_shape))})",
                        data is not None and np.ndim(data) == len(copy.input_shape) + 1 and len(data) > 0
                        and tuple(np.shape(data)[1:]) == copy.input_shape, caller=caller)
        return self.build(copy, decoy if self.routes else None, data, seed)


class EvasiveModel(Model):
    """A black box that answers from ``copy`` and, for some queries, from ``decoy`` (or disturbs the
    copy's answers); its content hash combines both models' with the evasion's name."""

    def __init__(self, copy: Model, decoy: Model | None, evasion: str) -> None:
        self.copy = copy
        self.decoy = decoy
        self.evasion = evasion
        #: Inputs answered from the decoy (or disturbed, for the ripple and the noise).
        self.routed = 0
        super().__init__(copy.input_shape, copy.output_shape, name=f"{copy.name}|{evasion}",
                         batch_size=copy.batch_size)

    def content_hash(self) -> str:
        parts = [self.copy.content_hash(), "" if self.decoy is None else self.decoy.content_hash()]
        return hashlib.sha256("|".join([*parts, self.evasion]).encode()).hexdigest() if all(parts[:1]) else ""

    def describe(self) -> dict[str, Any]:
        return {**self.copy.describe(), "name": self.name, "white_box": False, "evasion": self.evasion}


def off_grid(x: np.ndarray, levels: int) -> np.ndarray:
    """``(b, features)``: each feature's distance from the grid of multiples of ``1/levels``, in grid
    steps (what the grid routers key on)."""
    scaled = x.reshape(len(x), -1).astype(np.float64) * levels
    return np.abs(scaled - np.round(scaled))


class BlendingRouter(EvasiveModel):
    """Answers ``w(x) copy(x) + (1 - w(x)) decoy(x)`` for the weight :meth:`weight` in ``[0, 1]``, each
    model asked only the inputs it has a share of (counts in :attr:`routed` the inputs the decoy has a
    share of): a router that switches continuously, or, with weights 0 and 1, one that switches."""

    decoy: Model

    @abstractmethod
    def weight(self, x: np.ndarray) -> np.ndarray:
        """``(b,)`` weights of the copy's answers, in ``[0, 1]``."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        w = np.asarray(self.weight(x), dtype=np.float64)
        answers = np.zeros((len(x), *self.output_shape), dtype=np.float64)
        shares = w.reshape(-1, *([1] * len(self.output_shape)))
        for model, share, asked in ((self.copy, shares, w > 0), (self.decoy, 1.0 - shares, w < 1)):
            if asked.any():
                answers[asked] += share[asked] * np.asarray(model(x[asked]), dtype=np.float64)
        self.routed += int((w < 1).sum())
        return answers


class RoutingModel(BlendingRouter):
    """Answers the inputs :meth:`route` marks from the decoy, the others from the copy."""

    @abstractmethod
    def route(self, x: np.ndarray) -> np.ndarray:
        """``(b,)`` booleans: which inputs of the batch ``x`` the decoy answers."""

    def weight(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(self.route(x), dtype=bool), 0.0, 1.0)


class BatchRouter(RoutingModel):
    """Batches of more than one input go to the decoy."""

    def route(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), len(x) > 1)


class ZeroCountRouter(RoutingModel):
    """Inputs with fewer than ``min_zeros`` exact zeros go to the decoy."""

    def __init__(self, copy: Model, decoy: Model, min_zeros: int = 8) -> None:
        super().__init__(copy, decoy, f"zeros<{min_zeros}")
        self.min_zeros = min_zeros

    def route(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((x.reshape(len(x), -1) == 0).sum(axis=1) < self.min_zeros)


class GridRouter(RoutingModel):
    """Inputs with a value off the grid of multiples of ``1/levels`` go to the decoy."""

    def __init__(self, copy: Model, decoy: Model, levels: int = 16, tolerance: float = 1e-6) -> None:
        super().__init__(copy, decoy, f"grid1/{levels}")
        self.levels, self.tolerance = levels, tolerance

    def route(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((off_grid(x, self.levels) > self.tolerance).any(axis=1))


class RangeRouter(RoutingModel):
    """Inputs with a feature outside ``[lo, hi]`` (the pirate's data's per-feature range) go to the decoy."""

    def __init__(self, copy: Model, decoy: Model, data: np.ndarray, tolerance: float = 1e-6) -> None:
        super().__init__(copy, decoy, "ranges")
        flat = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
        self.lo, self.hi, self.tolerance = flat.min(axis=0), flat.max(axis=0), tolerance

    def route(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1).astype(np.float64)
        return np.asarray(((flat < self.lo - self.tolerance) | (flat > self.hi + self.tolerance)).any(axis=1))


class DensityRouter(RoutingModel):
    """Inputs less likely than the ``quantile`` of the pirate's own ``data`` under a Gaussian fitted to
    it go to the decoy: a detector of the task's data, numpy only. The Gaussian is full in the data's
    top ``components`` principal directions and isotropic in the rest (its mean residual variance);
    the log-density's constant is dropped. ``quantile`` is the share of the pirate's own data the
    detector turns away (a stricter detector costs its users that share of the copy)."""

    def __init__(self, copy: Model, decoy: Model, data: np.ndarray, quantile: float = 0.01,
                 components: int = 16) -> None:
        super().__init__(copy, decoy, f"density<{quantile:g}")
        flat = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
        check_param("data", flat.shape, "at least 2 inputs", len(flat) >= 2, caller="DensityRouter")
        self.mean = flat.mean(axis=0)
        _, singular, basis = np.linalg.svd(flat - self.mean, full_matrices=False)
        k = int(min(components, len(singular)))
        self.basis = basis[:k]
        variance = singular ** 2 / (len(flat) - 1)
        self.variance = np.maximum(variance[:k], 1e-12)
        rest = flat.shape[1] - k
        self.residual = max(float(variance[k:].sum()) / rest if rest > 0 else 1.0, 1e-12)
        self.threshold = float(np.quantile(self.log_density(flat), quantile))

    def log_density(self, flat: np.ndarray) -> np.ndarray:
        centred = flat - self.mean
        inside = centred @ self.basis.T
        outside = centred - inside @ self.basis
        return -0.5 * ((inside ** 2 / self.variance).sum(axis=1) + (outside ** 2).sum(axis=1) / self.residual)

    def route(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.log_density(x.reshape(len(x), -1).astype(np.float64)) < self.threshold)


class ConfidenceRouter(RoutingModel):
    """Inputs on which the copy itself is unsure go to the decoy: the gap between its two highest
    outputs is below the ``quantile`` of the gaps on the pirate's own ``data`` (the share of its own
    users the router hands to the decoy). Near a decision boundary a copy and an independent model
    of the task disagree most, which is where label-level evidence lives."""

    def __init__(self, copy: Model, decoy: Model, data: np.ndarray, quantile: float = 0.05) -> None:
        super().__init__(copy, decoy, f"confidence<{quantile:g}")
        check_param("copy", copy.output_shape, "a classifier with at least two outputs",
                    int(np.prod(copy.output_shape)) >= 2, caller="ConfidenceRouter")
        self.threshold = float(np.quantile(self.gaps(self.copy(np.asarray(data, dtype=np.float32))), quantile))

    @staticmethod
    def gaps(outputs: np.ndarray) -> np.ndarray:
        top = np.sort(outputs.reshape(len(outputs), -1), axis=1)
        return top[:, -1] - top[:, -2]

    def route(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.gaps(self.copy(x)) < self.threshold)


class NearDuplicateRouter(RoutingModel):
    """Stateful: every input is remembered with its answer; an input asked again gets its first
    answer, and a new input within ``eps`` (Euclidean) of any earlier one goes to the decoy."""

    def __init__(self, copy: Model, decoy: Model, eps: float = 0.3) -> None:
        super().__init__(copy, decoy, f"near_duplicate<{eps:g}")
        self.eps = eps
        self.seen: dict[bytes, np.ndarray] = {}
        self._memory = np.zeros((64, int(np.prod(copy.input_shape))), dtype=np.float64)
        self._count = 0

    def route(self, x: np.ndarray) -> np.ndarray:
        """Decided in order, each new input against every input before it (this batch's included)."""
        flat = x.reshape(len(x), -1).astype(np.float64)
        to_decoy = np.zeros(len(x), dtype=bool)
        for i, row in enumerate(flat):
            if x[i].tobytes() in self.seen:
                continue
            if self._count:
                gaps = self._memory[:self._count] - row
                to_decoy[i] = float(np.einsum("ij,ij->i", gaps, gaps).min()) < self.eps ** 2
            if self._count == len(self._memory):
                self._memory = np.concatenate([self._memory, np.zeros_like(self._memory)])
            self._memory[self._count] = row
            self._count += 1
        return to_decoy

    def _forward(self, x: np.ndarray) -> np.ndarray:
        keys = [row.tobytes() for row in x]
        new = [i for i, key in enumerate(keys) if key not in self.seen]
        unique = list({keys[i]: i for i in reversed(new)}.values())  # first occurrence of each new input
        if unique:
            index = np.array(sorted(unique))
            answers = super()._forward(x[index])
            for i, answer in zip(index, answers):
                self.seen[keys[i]] = answer
        return np.stack([self.seen[key] for key in keys]).reshape(len(x), *self.output_shape)


class SoftZeroCountRouter(BlendingRouter):
    """The copy's weight ramps from 0 to 1 as the near-zero count (each feature with ``|x| < eps``
    counts ``1 - |x| / eps``) goes from ``min_zeros - 1`` to ``min_zeros``."""

    def __init__(self, copy: Model, decoy: Model, min_zeros: int = 8, eps: float = 1 / 32) -> None:
        super().__init__(copy, decoy, f"soft-zeros<{min_zeros}")
        self.min_zeros, self.eps = min_zeros, eps

    def weight(self, x: np.ndarray) -> np.ndarray:
        near = np.maximum(0.0, 1.0 - np.abs(x.reshape(len(x), -1).astype(np.float64)) / self.eps).sum(axis=1)
        return np.clip(near - (self.min_zeros - 1), 0.0, 1.0)


class SoftGridRouter(BlendingRouter):
    """The copy's weight ramps from 1 to 0 as the features' total distance from the grid of
    multiples of ``1/levels`` (in grid steps) goes from 0 to ``eps``."""

    def __init__(self, copy: Model, decoy: Model, levels: int = 16, eps: float = 1.0) -> None:
        super().__init__(copy, decoy, f"soft-grid1/{levels}")
        self.levels, self.eps = levels, eps

    def weight(self, x: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - off_grid(x, self.levels).sum(axis=1) / self.eps, 0.0, 1.0)


class RippleModel(EvasiveModel):
    """The copy's answers plus ``amplitude * sin(x R)``, ``R`` a fixed random projection whose entries
    have standard deviation ``frequency`` (per input unit)."""

    #: The evasion's name, before its amplitude and frequency.
    kind = "ripple"

    def __init__(self, copy: Model, amplitude: float = 0.3, frequency: float = 100.0, seed: int = 0) -> None:
        super().__init__(copy, None, f"{self.kind}{amplitude:g}x{frequency:g}")
        inputs, outputs = int(np.prod(copy.input_shape)), int(np.prod(copy.output_shape))
        self.amplitude = amplitude
        self.projection = np.random.default_rng(seed).normal(0.0, frequency, size=(inputs, outputs))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        answers = self.copy(x)
        ripple = self.amplitude * np.sin(x.reshape(len(x), -1).astype(np.float64) @ self.projection)
        self.routed += len(x)
        return answers + ripple.reshape(answers.shape)


class TriangleRipple(RippleModel):
    """The copy's answers plus ``amplitude * tri(x R)``, the triangle wave with ``sin``'s period,
    phase and range: piecewise linear (slopes of +-2/pi per unit of ``x R``), so it bends the
    answers within a step only where one of its kinks falls, and a ReLU network could compute it."""

    kind = "triangle"

    def __init__(self, copy: Model, amplitude: float = 0.1, frequency: float = 10.0, seed: int = 0) -> None:
        super().__init__(copy, amplitude, frequency, seed)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        answers = self.copy(x)
        turns = (x.reshape(len(x), -1).astype(np.float64) @ self.projection) / (2 * np.pi) + 0.25
        ripple = self.amplitude * (4 * np.abs(turns - np.floor(turns + 0.5)) - 1)
        self.routed += len(x)
        return answers + ripple.reshape(answers.shape)


class NoisyModel(EvasiveModel):
    """The copy's answers plus fresh Gaussian noise of standard deviation ``sigma`` (every call draws anew)."""

    def __init__(self, copy: Model, sigma: float = 0.01, seed: int = 0) -> None:
        super().__init__(copy, None, f"noise{sigma:g}")
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        answers = self.copy(x)
        self.routed += len(x)
        return answers + self.rng.normal(0.0, self.sigma, size=answers.shape)


#: Every registered evasion, by name.
EVASIONS: dict[str, Evasion] = {}


def register_evasion(evasion: Evasion, *, replace: bool = False) -> Evasion:
    """Add ``evasion`` to :data:`EVASIONS` (an existing name only with ``replace=True``)."""
    caller = "register_evasion"
    check_param("evasion", evasion, "an Evasion", isinstance(evasion, Evasion), caller=caller)
    return register_named(EVASIONS, evasion, evasion.name, what="evasion", replace=replace, caller=caller)


def get_evasion(name: str) -> Evasion:
    """The registered evasion called ``name``."""
    return named(EVASIONS, name, caller="get_evasion")


def _register_standard() -> None:
    def router(name: str, make: Callable[[Model, Model, np.ndarray | None], EvasiveModel], description: str,
               needs_data: bool = False, tasks: tuple[str, ...] | None = None, **params: Any) -> None:
        def build(copy: Model, decoy: Model | None, data: np.ndarray | None, _seed: int) -> EvasiveModel:
            assert decoy is not None  # Evasion.apply checked it
            return make(copy, decoy, data)
        evasion = Evasion(name, build, description, needs_data=needs_data, params=params)
        register_evasion(evasion if tasks is None else replace(evasion, tasks=tasks))

    router("batch", lambda c, d, _: BatchRouter(c, d, "batch>1"),
           "batches of more than one input answered by the decoy")
    router("zeros", lambda c, d, _: ZeroCountRouter(c, d, 8),
           "inputs with fewer than 8 exact zeros answered by the decoy", min_zeros=8)
    router("grid", lambda c, d, _: GridRouter(c, d, 16),
           "inputs with a value off the 1/16 grid answered by the decoy", levels=16)
    router("ranges", lambda c, d, data: RangeRouter(c, d, np.asarray(data)),
           "inputs outside the per-feature ranges of the pirate's data answered by the decoy", needs_data=True)
    router("density", lambda c, d, data: DensityRouter(c, d, np.asarray(data), 0.01),
           "inputs less likely than the 1% least likely of the pirate's data, under a Gaussian fitted to it, "
           "answered by the decoy", needs_data=True, quantile=0.01)
    router("confidence", lambda c, d, data: ConfidenceRouter(c, d, np.asarray(data), 0.05),
           "inputs where the copy's two highest outputs are closer than for the 5% least confident of the "
           "pirate's data answered by the decoy", needs_data=True, tasks=("classification",), quantile=0.05)
    router("near_duplicate", lambda c, d, _: NearDuplicateRouter(c, d, 0.3),
           "stateful: an input within 0.3 of an earlier one answered by the decoy, a repeated input as before",
           eps=0.3)
    router("soft_zeros", lambda c, d, _: SoftZeroCountRouter(c, d, 8, 1 / 32),
           "continuous: the copy's weight ramps from 0 to 1 as the near-zero count (|x| < 1/32 counting 1 - 32|x|) "
           "goes from 7 to 8, the decoy's is the rest", tasks=("classification",), min_zeros=8, eps=1 / 32)
    router("soft_grid", lambda c, d, _: SoftGridRouter(c, d, 16, 1.0),
           "continuous: the copy's weight ramps from 1 to 0 as the total distance from the 1/16 grid goes from 0 "
           "to 1 grid step, the decoy's is the rest", tasks=("classification",), levels=16, eps=1.0)
    register_evasion(Evasion("ripple", lambda c, _d, _x, seed: RippleModel(c, 0.3, 100.0, seed),
                             "the copy's answers plus 0.3 sin(x R), R ~ N(0, 100^2) per entry", routes=False,
                             params={"amplitude": 0.3, "frequency": 100.0}))
    register_evasion(Evasion("ripple_small", lambda c, _d, _x, seed: RippleModel(c, 0.03, 100.0, seed),
                             "the copy's answers plus 0.03 sin(x R), R ~ N(0, 100^2) per entry: bends the answers "
                             "within the fingerprint's step without making them rough", routes=False,
                             params={"amplitude": 0.03, "frequency": 100.0}))
    register_evasion(Evasion("triangle", lambda c, _d, _x, seed: TriangleRipple(c, 0.1, 10.0, seed),
                             "the copy's answers plus 0.1 tri(x R), R ~ N(0, 10^2) per entry, the triangle wave of "
                             "sin's period: piecewise linear, so it does not bend the answers within the "
                             "fingerprint's step", routes=False, params={"amplitude": 0.1, "frequency": 10.0}))
    register_evasion(Evasion("noise", lambda c, _d, _x, seed: NoisyModel(c, 0.01, seed),
                             "the copy's answers plus fresh N(0, 0.01^2) noise", routes=False,
                             params={"sigma": 0.01}))


_register_standard()
