"""Pruning: zeroing small weights, or removing whole hidden units.

:func:`magnitude_prune` zeroes, in every Linear and convolution layer separately, the
``fraction`` of its weights with the smallest magnitude (layer-wise, not global: each
weight tensor loses exactly that share, so no layer is ever emptied, and the stated
fraction holds for the whole model too). Biases are kept. Fine-tune afterwards with
``finetune(..., keep_zeros=True)`` to keep the pruned weights at zero.

:func:`structured_prune` removes the ``fraction`` of the hidden units (Linear outputs) or
channels (convolution outputs) of every hidden layer with the smallest L1 norm of their
incoming weights, shrinking that layer, any BatchNorm after it and the next layer's
inputs (block-wise across ``Flatten``). The network's input and output shapes stay.

>>> from tafa.bench.architectures import build
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> sparse = magnitude_prune(owner, 0.5)
>>> float((sparse[1].weight == 0).float().mean())
0.5
>>> thin = structured_prune(owner, 0.25)
>>> [layer.out_features for layer in thin if isinstance(layer, nn.Linear)]
[96, 96, 10]
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn

from ..errors import InvalidParameter, check_param
from .hidden_units import Weighted, _out_axis, hidden_boundaries, reindex_units, weighted_layers


def magnitude_prune(model: nn.Module, fraction: float, *, scope: Literal["layer", "global"] = "layer") -> nn.Module:
    """A copy of ``model`` with the smallest-magnitude ``fraction`` of its weights set to 0.

    ``scope="layer"`` (the default, used by the benchmark) ranks each weight tensor on its
    own; ``"global"`` ranks all Linear/convolution weights together.
    """
    caller = "magnitude_prune"
    check_param("fraction", fraction, "a number in [0, 1]",
                isinstance(fraction, (int, float)) and 0 <= fraction <= 1, caller=caller)
    check_param("scope", scope, "'layer' or 'global'", scope in ("layer", "global"), caller=caller)
    pruned = copy.deepcopy(model)
    weights = [layer.weight for layer in weighted_layers(pruned)]
    if not weights:
        raise InvalidParameter(f"The 'model' parameter of {caller} must contain a Linear or "
                               f"convolution layer. Got {type(model).__name__} without one instead.")
    groups = [[w] for w in weights] if scope == "layer" else [weights]
    with torch.no_grad():
        for group in groups:
            magnitudes = torch.cat([w.detach().abs().reshape(-1) for w in group])
            count = math.floor(fraction * magnitudes.numel() + 0.5)
            mask = torch.ones_like(magnitudes)
            mask[torch.argsort(magnitudes, stable=True)[:count]] = 0
            offset = 0
            for w in group:
                w.mul_(mask[offset:offset + w.numel()].reshape(w.shape))
                offset += w.numel()
    return pruned.eval()


def structured_prune(model: nn.Module, fraction: float = 0.25) -> nn.Module:
    """A copy of ``model`` (an ``nn.Sequential``) with the ``fraction`` of every hidden
    layer's units of smallest incoming L1 norm removed (at least one unit stays)."""
    caller = "structured_prune"
    check_param("fraction", fraction, "a number in [0, 1)",
                isinstance(fraction, (int, float)) and 0 <= fraction < 1, caller=caller)
    pruned = copy.deepcopy(model)
    boundaries = hidden_boundaries(pruned, caller=caller)
    if not boundaries:
        raise InvalidParameter(f"The 'model' parameter of {caller} must have hidden units "
                               f"between two Linear or convolution layers. Got none instead.")
    keep = [_strongest(b.producer, b.units, fraction) for b in boundaries]
    for boundary, index in zip(boundaries, keep):
        reindex_units(boundary, index)
    return pruned.eval()


def _strongest(producer: Weighted, units: int, fraction: float) -> torch.Tensor:
    weight = producer.weight.detach().abs()
    norms = weight.movedim(_out_axis(producer), 0).reshape(units, -1).sum(dim=1)
    removed = min(math.floor(fraction * units + 0.5), units - 1)
    order = torch.argsort(norms, descending=True, stable=True)
    return order[:units - removed].sort().values

