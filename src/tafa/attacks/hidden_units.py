"""The chains of layers of a network and the hidden units that connect them.

Several attacks act on *hidden units*: a Linear layer's output features or a convolution's
output channels, together with everything that carries them to the next weighted layer
(ReLU, pooling, BatchNorm, Flatten, Unflatten) and that next layer's input weights.
A :class:`Boundary` describes one such connection; :func:`hidden_boundaries` finds them
all, :func:`reindex_units` keeps or reorders units (permutation, structured pruning) and
:func:`scale_units` multiplies them by positive factors undone downstream (rescaling).

A unit is a channel wherever the hidden tensor has a channel axis and a feature otherwise;
across a ``Flatten`` a channel becomes a block of consecutive features (channel-major, as
``Flatten`` lays them out), across an ``Unflatten`` a block of features becomes a channel.
Linear layers are assumed to see ``(batch, features)`` inputs, as in every network of
:mod:`tafa.bench.architectures`.

An ``nn.Sequential`` is one chain (its forward order is its module order). A network of
another shape (a residual network) declares its chains itself: any submodule with a
``unit_chains`` attribute (a tuple of tuples of its submodules' names, producer first,
consumer last, in forward order) has a boundary per chain, e.g. a residual block's
``("conv1", "bn1", "relu", "conv2")``: the block's inner channels, which nothing outside the
block sees. The channels of a residual stream (added to a shortcut) are never reindexed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from ..errors import InvalidParameter

#: The layers whose weights the attacks act on (their weights are the model's "weights").
WEIGHTED = (nn.Linear, _ConvNd)
#: The type of one such layer (its ``weight`` is a tensor).
Weighted = nn.Linear | _ConvNd

# Modules that map each unit to itself and commute with multiplication by c > 0.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                nn.Dropout3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
                nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten)
# Elementwise but not positively homogeneous: units may be permuted across them, not rescaled.
_ELEMENTWISE = (nn.Sigmoid, nn.Tanh, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Softplus, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softsign)


def weighted_layers(model: nn.Module) -> list[Weighted]:
    """The Linear and convolution layers of ``model``, in module order."""
    return [module for module in model.modules() if isinstance(module, WEIGHTED)]


def last_layer(model: nn.Module, *, caller: str) -> Weighted:
    """The last Linear or convolution layer of ``model`` in module order."""
    layers = weighted_layers(model)
    if not layers:
        raise InvalidParameter(f"The 'model' parameter of {caller} must contain a Linear or "
                               f"convolution layer. Got {type(model).__name__} without one instead.")
    return layers[-1]


def _out_axis(layer: nn.Module) -> int:
    return 1 if isinstance(layer, _ConvTransposeNd) else 0


def _in_axis(layer: nn.Module) -> int:
    return 0 if isinstance(layer, _ConvTransposeNd) else 1


def _leaves(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


@dataclass(eq=False)
class Boundary:
    """The hidden units between two consecutive weighted layers of a sequential network.

    ``units`` is the number of units; ``scale_at`` is the module whose output a positive
    per-unit factor may multiply (the producer, or the last BatchNorm before the
    nonlinearity), or ``None`` when something not positively homogeneous lies after it.
    """

    producer: Weighted
    between: list[nn.Module]
    consumer: Weighted
    units: int
    scale_at: Weighted | _BatchNorm | None


def hidden_boundaries(model: nn.Module, *, caller: str) -> list[Boundary]:
    """Every boundary of ``model`` whose units can be reindexed: an ``nn.Sequential``'s, or
    those of the chains its submodules declare (``unit_chains``, see the module's docstring).

    A boundary with a module this file does not know (or a grouped convolution) is left
    out: the attacks then leave those units alone, which keeps them function-preserving.
    """
    if isinstance(model, nn.Sequential):
        return _sequential_boundaries(model)
    declared = [(module, chains) for module in model.modules() if (chains := getattr(module, "unit_chains", None))]
    if not declared:
        raise InvalidParameter(f"The 'model' parameter of {caller} must be an nn.Sequential (its forward order "
                               f"must be its module order) or declare its chains of units (unit_chains). "
                               f"Got {type(model).__name__} instead.")
    found = []
    for module, chains in declared:
        for chain in chains:
            items = [getattr(module, name, None) for name in chain]
            producer, consumer = items[0], items[-1]
            if (len(items) < 2 or not all(isinstance(item, nn.Module) for item in items)
                    or not isinstance(producer, WEIGHTED) or not isinstance(consumer, WEIGHTED)):
                continue
            boundary = _boundary(producer, items[1:-1], consumer)  # type: ignore[arg-type]
            if boundary is not None:
                found.append(boundary)
    return found


def _sequential_boundaries(model: nn.Sequential) -> list[Boundary]:
    items = _leaves(model)
    positions = [i for i, item in enumerate(items) if isinstance(item, WEIGHTED)]
    found = []
    for start, end in zip(positions, positions[1:]):
        producer, consumer = items[start], items[end]
        assert isinstance(producer, WEIGHTED) and isinstance(consumer, WEIGHTED)  # by positions
        boundary = _boundary(producer, items[start + 1:end], consumer)
        if boundary is not None:
            found.append(boundary)
    return found


def _boundary(producer: Weighted, between: list[nn.Module], consumer: Weighted) -> Boundary | None:
    if getattr(producer, "groups", 1) != 1 or getattr(consumer, "groups", 1) != 1:
        return None
    spatial = isinstance(producer, _ConvNd)
    reshaped = False
    for module in between:
        if isinstance(module, nn.Flatten):
            if (module.start_dim, module.end_dim) != (1, -1):
                return None
            if spatial:
                if reshaped:
                    return None
                spatial, reshaped = False, True
        elif isinstance(module, nn.Unflatten):
            if module.dim != 1 or spatial or reshaped:
                return None
            spatial, reshaped = True, True
        elif isinstance(module, _BatchNorm):
            pass
        elif not isinstance(module, _HOMOGENEOUS + _ELEMENTWISE):
            return None
    if spatial != isinstance(consumer, _ConvNd):
        return None
    produced = producer.weight.shape[_out_axis(producer)]
    consumed = consumer.weight.shape[_in_axis(consumer)]
    units = min(produced, consumed)
    if max(produced, consumed) % units or (not reshaped and produced != consumed):
        return None
    for module in between:
        if isinstance(module, _BatchNorm) and module.num_features % units:
            return None
    return Boundary(producer, list(between), consumer, units, _scale_site(producer, between))


def _scale_site(producer: Weighted, between: list[nn.Module]) -> Weighted | _BatchNorm | None:
    for module in reversed(between):
        if isinstance(module, _HOMOGENEOUS):
            continue
        if isinstance(module, _BatchNorm) and module.affine:
            return module
        return None
    return producer


def _expand(index: torch.Tensor, units: int, size: int) -> torch.Tensor:
    """Indices into an axis of ``size`` entries laid out as ``units`` consecutive blocks."""
    block = size // units
    return (index[:, None] * block + torch.arange(block)).reshape(-1)


def _take(tensor: torch.Tensor, axis: int, index: torch.Tensor, units: int) -> torch.Tensor:
    return tensor.index_select(axis, _expand(index, units, tensor.shape[axis])).clone()


def _replace(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        setattr(module, name, value)


def reindex_units(boundary: Boundary, index: torch.Tensor) -> None:
    """Keep the units ``index`` of ``boundary``, in that order (in place).

    A permutation reorders the units; a subset removes the others and shrinks the layers
    (and any BatchNorm or Unflatten between them) accordingly.
    """
    units, kept = boundary.units, len(index)
    producer, consumer = boundary.producer, boundary.consumer
    with torch.no_grad():
        axis = _out_axis(producer)
        _replace(producer, "weight", _take(producer.weight, axis, index, units))
        if producer.bias is not None:
            _replace(producer, "bias", _take(producer.bias, 0, index, units))
        _set_size(producer, "out", producer.weight.shape[axis])
        for module in boundary.between:
            if isinstance(module, _BatchNorm):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(module, name, None) is not None:
                        _replace(module, name, _take(getattr(module, name), 0, index, units))
                module.num_features = module.num_features // units * kept
            elif isinstance(module, nn.Unflatten):
                size = tuple(module.unflattened_size)
                module.unflattened_size = (kept, *size[1:])
        axis = _in_axis(consumer)
        _replace(consumer, "weight", _take(consumer.weight, axis, index, units))
        _set_size(consumer, "in", consumer.weight.shape[axis])
    boundary.units = kept


def _set_size(layer: nn.Module, side: str, size: int) -> None:
    if isinstance(layer, nn.Linear):
        setattr(layer, f"{side}_features", size)
    else:
        setattr(layer, f"{side}_channels", size)


def scale_units(boundary: Boundary, factors: torch.Tensor) -> None:
    """Multiply each unit of ``boundary`` by ``factors`` (> 0) and divide it back out in
    the consumer's input weights (in place); the network computes the same function."""
    site = boundary.scale_at
    if site is None:
        raise InvalidParameter("This boundary has no place to rescale its units "
                               "(a non-homogeneous module follows its last affine map).")
    units = boundary.units
    with torch.no_grad():
        axis = _out_axis(site) if site is boundary.producer else 0
        _multiply(site.weight, axis, factors, units)
        if site.bias is not None:
            _multiply(site.bias, 0, factors, units)
        _multiply(boundary.consumer.weight, _in_axis(boundary.consumer), 1 / factors, units)


def _multiply(tensor: torch.Tensor, axis: int, factors: torch.Tensor, units: int) -> None:
    expanded = factors.to(tensor.dtype).repeat_interleave(tensor.shape[axis] // units)
    shape = [1] * tensor.ndim
    shape[axis] = -1
    tensor.mul_(expanded.reshape(shape))
