"""The declared input domain: where probes may be drawn, with no data.

Two kinds, both with per-feature parameters broadcast to the model's input shape:

- :class:`Box`: uniform on ``[lo, hi]`` per feature (pixels in ``[0, 1]``, standardised
  tabular features in ``[-2, 2]``);
- :class:`Gaussian`: ``N(mean, std^2)`` per feature (latent inputs of generators).

>>> box = parse_domain("box:0,1", (2, 2))
>>> box.sample(3, seed=0).shape
(3, 2, 2)
>>> parse_domain("gaussian", (4,)).describe()
'gaussian(mean=0, std=1)'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DomainError, one_line
from .storage import MAX_JSON_BYTES, strict_json
from .storage import read_regular


@dataclass(frozen=True, eq=False)
class Domain(ABC):
    """An input distribution over one sample of shape ``shape``."""

    shape: tuple[int, ...]

    @abstractmethod
    def sample(self, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
        """``n`` points, float64, of shape ``(n, *shape)``."""

    @abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature lower and upper bounds (float64, ``shape``) that probes stay within."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, inverse of :func:`domain_from_dict`."""

    @abstractmethod
    def describe(self) -> str:
        """One short human-readable line."""

    def scale(self) -> float:
        """A typical per-feature width of the domain (median of ``hi - lo``, or of 2 std)."""
        lo, hi = self.bounds()
        return float(np.median(hi - lo))

    def clip(self, x: np.ndarray) -> np.ndarray:
        """``x`` clipped into :meth:`bounds`."""
        lo, hi = self.bounds()
        return np.clip(x, lo, hi)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _broadcast(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(array, shape).copy()
    except ValueError:
        raise DomainError(f"The domain's {name} has shape {array.shape}, which does not fit the "
                          f"model's input shape {shape}.") from None


#: Largest magnitude of a bound, a width, a mean or 4 std: probes and their steps must stay
#: finite in float32 (what models are queried with) with room to spare.
MAX_MAGNITUDE = 1e30
#: Smallest width or std: float32's smallest normal number (a subnormal scale loses its
#: precision, and finite differences over steps that small overflow).
MIN_SCALE = float(np.finfo(np.float32).tiny)


def _check_scale(kind: str, values: dict[str, np.ndarray], what: str, scale: Any) -> None:
    """Refuse ``values`` beyond :data:`MAX_MAGNITUDE`, then a ``scale()`` (computed only when
    the values are in range, so it cannot overflow) beyond it or below :data:`MIN_SCALE`."""
    for name, array in values.items():
        if np.any(np.abs(array) > MAX_MAGNITUDE):
            raise DomainError(f"The {kind} domain's {name} must be at most {MAX_MAGNITUDE:g} in magnitude "
                              f"(got {_short(array)}).")
    width = scale()
    if np.any(width > MAX_MAGNITUDE) or np.any(width < MIN_SCALE):
        raise DomainError(f"The {kind} domain's {what} must be between {MIN_SCALE:.3g} (float32's smallest normal "
                          f"number) and {MAX_MAGNITUDE:g} (got {_short(width)}).")


def _short(array: np.ndarray) -> str:
    flat = np.unique(array)
    return f"{flat[0]:g}" if flat.size == 1 else f"[{array.min():g}..{array.max():g}]"


def bounds_and_rest(domain: Domain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The domain's per-feature bounds, flattened, and each feature *at rest*: 0 where the domain
    holds 0, else its lower bound (a blank pixel, a standardised table's mean): what inputs in the
    style of real data keep many features at (:func:`tafa.signature.consistency.data_like`,
    :class:`tafa.probes.datalike.DataLikeProbes`).

    >>> [a.tolist() for a in bounds_and_rest(Box((2,), 0.5, 1.0))]
    [[0.5, 0.5], [1.0, 1.0], [0.5, 0.5]]
    """
    lo, hi = (np.broadcast_to(np.asarray(b, dtype=np.float64), domain.shape).reshape(-1) for b in domain.bounds())
    return lo, hi, np.where((lo <= 0) & (hi >= 0), 0.0, lo)


@dataclass(frozen=True, eq=False)
class Box(Domain):
    """Uniform on ``[lo, hi]``, per feature."""

    lo: np.ndarray
    hi: np.ndarray

    def __init__(self, shape: tuple[int, ...], lo: Any, hi: Any) -> None:
        shape = tuple(int(s) for s in shape)
        lo_array, hi_array = _broadcast(lo, shape, "lower bound"), _broadcast(hi, shape, "upper bound")
        if not (np.all(np.isfinite(lo_array)) and np.all(np.isfinite(hi_array))):
            raise DomainError("The box domain's bounds must be finite numbers.")
        if np.any(hi_array <= lo_array):
            raise DomainError("The box domain's upper bounds must exceed its lower bounds "
                              f"(got lo={_short(lo_array)}, hi={_short(hi_array)}).")
        _check_scale("box", {"lower bounds": lo_array, "upper bounds": hi_array}, "width (hi - lo)",
                     lambda: hi_array - lo_array)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "lo", lo_array)
        object.__setattr__(self, "hi", hi_array)

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
        return _rng(seed).uniform(self.lo, self.hi, size=(n, *self.shape))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo, self.hi

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "box", "shape": list(self.shape), "lo": self.lo.ravel().tolist(),
                "hi": self.hi.ravel().tolist()}

    def describe(self) -> str:
        return f"box[{_short(self.lo)}, {_short(self.hi)}]"


@dataclass(frozen=True, eq=False)
class Gaussian(Domain):
    """``N(mean, std^2)`` per feature; probes stay within ``mean +- 4 std``."""

    mean: np.ndarray
    std: np.ndarray

    def __init__(self, shape: tuple[int, ...], mean: Any = 0.0, std: Any = 1.0) -> None:
        shape = tuple(int(s) for s in shape)
        mean_array, std_array = _broadcast(mean, shape, "mean"), _broadcast(std, shape, "std")
        if not (np.all(np.isfinite(mean_array)) and np.all(np.isfinite(std_array))):
            raise DomainError("The Gaussian domain's mean and std must be finite numbers.")
        if np.any(std_array <= 0):
            raise DomainError(f"The Gaussian domain's std must be > 0 (got {_short(std_array)}).")
        _check_scale("Gaussian", {"mean": mean_array}, "std", lambda: std_array)
        if np.any(np.abs(mean_array) + 4 * std_array > MAX_MAGNITUDE):
            raise DomainError(f"The Gaussian domain's mean +- 4 std must stay within +-{MAX_MAGNITUDE:g} "
                              f"(got mean={_short(mean_array)}, std={_short(std_array)}).")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "mean", mean_array)
        object.__setattr__(self, "std", std_array)

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> np.ndarray:
        return _rng(seed).normal(self.mean, self.std, size=(n, *self.shape))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean - 4 * self.std, self.mean + 4 * self.std

    def scale(self) -> float:
        return float(np.median(2 * self.std))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gaussian", "shape": list(self.shape), "mean": self.mean.ravel().tolist(),
                "std": self.std.ravel().tolist()}

    def describe(self) -> str:
        return f"gaussian(mean={_short(self.mean)}, std={_short(self.std)})"


def domain_from_dict(data: dict[str, Any]) -> Domain:
    """Rebuild a domain written by :meth:`Domain.to_dict`."""
    try:
        shape = tuple(int(s) for s in data["shape"])
        if data["kind"] == "box":
            return Box(shape, np.reshape(data["lo"], shape), np.reshape(data["hi"], shape))
        if data["kind"] == "gaussian":
            return Gaussian(shape, np.reshape(data["mean"], shape), np.reshape(data["std"], shape))
    except (KeyError, TypeError, ValueError) as error:
        raise DomainError(f"The stored domain is malformed: {error}") from None
    raise DomainError(f"Unknown domain kind {data.get('kind')!r}; expected 'box' or 'gaussian'.")


def _numbers(text: str, spec: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise DomainError(f"Cannot read numbers from domain spec {spec!r}; "
                          "expected e.g. 'box:0,1' or 'gaussian:0,1'.") from None


def parse_domain(spec: str, shape: tuple[int, ...]) -> Domain:
    """Read a domain spec for inputs of ``shape``.

    ``box:LO,HI`` (all features), ``box:FILE.json`` (``{"lo": [...], "hi": [...]}``, per
    feature, each a number or a list that broadcasts to ``shape``), ``gaussian`` or
    ``gaussian:MEAN,STD``.
    """
    kind, _, rest = str(spec).strip().partition(":")
    kind = kind.lower()
    if kind == "box":
        if rest.endswith(".json"):
            data = read_regular(rest, limit=MAX_JSON_BYTES, what="Domain bounds file", error=DomainError)
            try:
                bounds = strict_json(data, what=f"Domain bounds file {rest!r}")
                return Box(shape, bounds["lo"], bounds["hi"])
            except (ValueError, RecursionError, KeyError, TypeError) as error:
                raise DomainError(f"Domain bounds file {rest!r} must be JSON with 'lo' and 'hi' "
                                  f"({type(error).__name__}: {one_line(error)[:200]}).") from None
        values = _numbers(rest, spec)
        if len(values) != 2:
            raise DomainError(f"Domain spec {spec!r} must give two numbers, 'box:LO,HI'.")
        return Box(shape, values[0], values[1])
    if kind == "gaussian":
        values = _numbers(rest, spec) if rest else [0.0, 1.0]
        if len(values) != 2:
            raise DomainError(f"Domain spec {spec!r} must give two numbers, 'gaussian:MEAN,STD'.")
        return Gaussian(shape, values[0], values[1])
    raise DomainError(f"Unknown domain spec {spec!r}; expected 'box:LO,HI', 'box:FILE.json', "
                      "'gaussian' or 'gaussian:MEAN,STD'.")
