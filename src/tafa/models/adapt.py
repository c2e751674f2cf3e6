"""A suspect that takes the owner's input in another layout or another normalisation.

A copy can be served behind another *input* interface at no cost to its pirate: the same
network fed a flat vector of 64 values instead of a ``(1, 8, 8)`` image, or with the owner's
input normalisation folded out of it (the caller normalises, the network does not). The
verifier declares what it knows of the suspect's input, and these wrappers make the suspect
take the owner's input again, so that a fingerprint queries it unchanged
(:meth:`~tafa.fingerprint.Fingerprint.check_shapes` then sees the owner's shape):

- :class:`Reshaped` ``(model, owner_shape)``: each query, of the owner's shape, is reshaped
  (C order, as ``numpy.reshape``) to the shape ``model`` takes; both hold the same number of
  values, else :class:`~tafa.errors.ShapeMismatch` names both sizes.
- :class:`Normalised` ``(model, mean, std)``: ``model`` receives ``(x - mean) / std`` of each
  query ``x``, i.e. it expects inputs normalised that way. ``mean`` and ``std`` are scalars or
  per-channel lists along the first axis of the query (the ``C`` of ``(C, H, W)``; each
  feature of a flat input). For the other direction (the suspect normalises by itself inputs
  the owner took already normalised as ``(r - m) / s``), give ``mean = -m / s`` and
  ``std = 1 / s``.
- :func:`adapt_input` composes both from what ``tafa verify --input-layout SHAPE
  --input-affine MEAN,STD`` declares: ``Normalised(Reshaped(model, owner_shape), mean, std)``
  (the normalisation acts in the owner's layout, then the query is reshaped).

The wrappers answer the same small interface as any :class:`~tafa.models.Model`: queries are
counted once (the wrapped model's count), and a service's labels-only flag, consistency and
query budget are the wrapped model's. They need only numpy.

>>> import numpy as np
>>> from tafa.models import TorchModel
>>> import torch
>>> flat = TorchModel(torch.nn.Linear(64, 10), (64,), name="flat")
>>> suspect = Reshaped(flat, (1, 8, 8))
>>> suspect.input_shape, suspect.output_shape
((1, 8, 8), (10,))
>>> x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
>>> bool(np.array_equal(suspect(x), flat(x.reshape(3, 64)))), suspect.queries
(True, 3)
>>> Reshaped(flat, (1, 9, 9))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tafa.errors.ShapeMismatch: flat takes inputs of shape (64,) (64 values); the fingerprint's owner takes (1, 9, 9) (81 ...
>>> Normalised(suspect, mean=0.5, std=[0.0])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tafa.errors.InvalidParameter: The 'std' parameter of Normalised must be a finite nonzero number, or one per channel ...
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidParameter, ShapeMismatch, check_param
from .base import Model

#: Most values of one input sample a declared layout may hold (``tafa.models.files.MAX_ELEMENTS``:
#: 2**24) and most axes it may have: a shape beyond them is refused before anything is allocated.
MAX_LAYOUT_ELEMENTS = 1 << 24
MAX_LAYOUT_AXES = 32


def layout_size(shape: Sequence[int], what: str = "input layout") -> int:
    """The number of values of a per-sample ``shape``, refused (:class:`~tafa.errors.ShapeMismatch`)
    when an axis is not an integer >= 1, when it has more than :data:`MAX_LAYOUT_AXES` axes, or
    when it holds more than :data:`MAX_LAYOUT_ELEMENTS` values (checked as it multiplies, so an
    absurd shape is refused without computing or allocating it)."""
    shape = tuple(shape)
    if not 1 <= len(shape) <= MAX_LAYOUT_AXES:
        raise ShapeMismatch(f"The {what} must have 1 to {MAX_LAYOUT_AXES} axes; got {len(shape)}.")
    size = 1
    for axis in shape:
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or axis < 1:
            raise ShapeMismatch(f"The {what} {shape} has an axis that is not an integer >= 1.")
        size *= int(axis)
        if size > MAX_LAYOUT_ELEMENTS:
            raise ShapeMismatch(f"The {what} {_short(shape)} holds more than {MAX_LAYOUT_ELEMENTS} values per "
                                "sample; refused before allocating it.")
    return size


def _short(shape: tuple[Any, ...]) -> str:
    text = str(tuple(shape))
    return text if len(text) <= 80 else text[:77] + "..."


class AdaptedInput(Model):
    """A model queried through a change of its input (see the module doc): its queries have
    ``input_shape``; :meth:`adapt` turns them into what the wrapped :attr:`model` takes. Every
    other question (output shape, name, content hash, labels-only flag, consistency, query
    budget, query count) is answered by the wrapped model."""

    def __init__(self, model: Model, input_shape: Sequence[int]) -> None:
        if not isinstance(model, Model):
            raise InvalidParameter(f"The 'model' parameter of {type(self).__name__} must be a tafa Model "
                                   f"(wrap a torch module in tafa.models.TorchModel). Got {type(model).__name__} "
                                   "instead.")
        layout_size(tuple(input_shape), "owner's input shape")
        self.model = model
        super().__init__(tuple(input_shape), model.output_shape, name=model.name, batch_size=model.batch_size)

    @abstractmethod
    def adapt(self, x: np.ndarray) -> np.ndarray:
        """Queries ``(b, *input_shape)`` as the wrapped model takes them."""

    @abstractmethod
    def adaptation(self) -> str:
        """What :meth:`adapt` does, for reports."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ShapeMismatch(f"{self.name} takes inputs of shape {self.input_shape} (adapted); "
                                f"the fingerprint queries with shape {x.shape[1:]}.")
        before = self.model.queries
        try:
            return self.model(self.adapt(x))
        finally:
            self.queries += self.model.queries - before

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.model(self.adapt(x))

    # -- everything else is the wrapped model's --------------------------------------------
    @property
    def labels_only(self) -> bool:  # type: ignore[override]
        return self.model.labels_only

    @property
    def consistency(self) -> Any:  # type: ignore[override]
        return self.model.consistency

    def check_budget(self, queries: int | np.ndarray) -> int | None:
        if isinstance(queries, np.ndarray):
            return self.model.check_budget(self.adapt(np.asarray(queries, dtype=np.float32)))
        return self.model.check_budget(queries)

    def content_hash(self) -> str:
        return self.model.content_hash()

    def import_notice(self) -> str | None:
        return self.model.import_notice()

    def close(self) -> None:
        closer = getattr(self.model, "close", None)
        if closer is not None:
            closer()

    def describe(self) -> dict[str, Any]:
        inner = self.model.describe()
        steps = [self.adaptation()]
        if isinstance(inner.get("input_adapted"), list):  # a wrapped wrapper: the steps in query order
            steps += inner.pop("input_adapted")
        return {**inner, "input_shape": list(self.input_shape), "input_adapted": steps}


class Reshaped(AdaptedInput):
    """``model`` (which takes another shape with as many values) queried with inputs of
    ``owner_shape``, each reshaped in C order (``numpy.reshape``)."""

    def __init__(self, model: Model, owner_shape: Sequence[int]) -> None:
        owner_shape = tuple(owner_shape)
        owner_size = layout_size(owner_shape, "owner's input shape")
        if isinstance(model, Model):
            size = layout_size(model.input_shape, "suspect's input shape")
            if size != owner_size:
                raise ShapeMismatch(f"{model.name} takes inputs of shape {model.input_shape} ({size} values); the "
                                    f"fingerprint's owner takes {owner_shape} ({owner_size} values): a reshaped input "
                                    "must hold the same number of values.")
        super().__init__(model, owner_shape)

    def adapt(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x).reshape((len(x), *self.model.input_shape))

    def adaptation(self) -> str:
        return f"reshaped from {list(self.input_shape)} to {list(self.model.input_shape)} (C order)"


def _per_channel(name: str, value: float | Sequence[float], channels: int, shape: tuple[int, ...],
                 nonzero: bool) -> np.ndarray:
    values = [value] if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else value
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        array = np.asarray([np.nan])
    ok = array.size in (1, channels) and bool(np.all(np.isfinite(array))) and (not nonzero or bool(np.all(array != 0)))
    what = "a finite nonzero number" if nonzero else "a finite number"
    check_param(name, value, f"{what}, or one per channel ({channels} for input shape {shape})", ok,
                caller="Normalised")
    # along the first axis of a sample (the channels of (C, H, W)); broadcast over the others
    return array.reshape((1, array.size) + (1,) * (len(shape) - 1))


class Normalised(AdaptedInput):
    """``model`` receives ``(x - mean) / std`` of each query ``x`` (it expects inputs normalised
    that way); ``mean`` and ``std`` are scalars or one value per channel (the first axis of a
    sample)."""

    def __init__(self, model: Model, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        if not isinstance(model, Model):
            super().__init__(model, ())  # refuses it, saying what it must be
        shape = tuple(model.input_shape)
        self.mean = _per_channel("mean", mean, shape[0], shape, nonzero=False)
        self.std = _per_channel("std", std, shape[0], shape, nonzero=True)
        super().__init__(model, shape)

    def adapt(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float64) - self.mean) / self.std

    def adaptation(self) -> str:
        def listed(values: np.ndarray) -> str:
            flat = [f"{v:g}" for v in values.reshape(-1)]
            return flat[0] if len(flat) == 1 else "[" + ", ".join(flat) + "]"

        return f"normalised as (x - {listed(self.mean)}) / {listed(self.std)}"


def adapt_input(model: Model, owner_shape: Sequence[int], *, layout: Sequence[int] | None = None,
                mean: float | Sequence[float] | None = None,
                std: float | Sequence[float] | None = None) -> Model:
    """``model`` as a suspect taking ``owner_shape`` (a fingerprint's input shape): reshaped from
    ``layout`` (the shape ``model`` takes; it must be what it declares) and normalised by
    ``mean`` and ``std`` (both or neither), in that order of wrapping:
    ``Normalised(Reshaped(model, owner_shape), mean, std)``. With neither, ``model`` itself."""
    owner_shape = tuple(int(s) for s in owner_shape)
    if (mean is None) != (std is None):
        raise InvalidParameter("adapt_input takes mean and std together (the suspect receives (x - mean) / std).")
    adapted: Model = model
    if layout is not None:
        layout = tuple(layout)
        layout_size(layout)
        if tuple(model.input_shape) != layout:
            raise ShapeMismatch(f"{model.name} takes inputs of shape {model.input_shape}, not the declared input "
                                f"layout {layout}.")
        if layout != owner_shape:
            adapted = Reshaped(model, owner_shape)
    if mean is not None:
        adapted = Normalised(adapted, mean, std)  # type: ignore[arg-type]
    return adapted


def check_layout(layout: Sequence[int], owner_shape: Sequence[int]) -> None:
    """Refuse, before any model is opened, a ``layout`` that cannot hold the owner's input:
    a different number of values (the error names both sizes)."""
    layout, owner_shape = tuple(layout), tuple(owner_shape)
    size, owner_size = layout_size(layout), layout_size(owner_shape, "owner's input shape")
    if size != owner_size:
        raise ShapeMismatch(f"The input layout {','.join(map(str, layout))} holds {size} values; the fingerprint's "
                            f"owner takes inputs of shape {owner_shape} ({owner_size} values): a reshaped input must "
                            "hold the same number of values.")


__all__ = ["MAX_LAYOUT_AXES", "MAX_LAYOUT_ELEMENTS", "AdaptedInput", "Normalised", "Reshaped", "adapt_input",
           "check_layout", "layout_size"]
