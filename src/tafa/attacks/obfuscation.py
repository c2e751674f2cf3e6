"""Function-preserving obfuscation: the same function, written with other weights.

- :func:`permute_units` reorders the hidden units (or channels) of every hidden layer,
  reordering the next layer's inputs to match (and any BatchNorm, pooling, Flatten or
  Unflatten in between);
- :func:`rescale_units` multiplies each hidden unit's incoming weights and bias by a
  factor ``c > 0`` drawn log-uniformly in ``[1/max_factor, max_factor]`` and its outgoing
  weights by ``1/c``. ReLU and max-pooling commute with ``c``, so the function is the
  same; a unit followed by BatchNorm is scaled at the BatchNorm's affine output, and a
  unit followed by a non-homogeneous activation (Sigmoid, Tanh, ...) is left alone;
- :func:`fold_batchnorm` folds every BatchNorm (eval mode: a per-channel affine map) into
  the convolution or Linear layer that feeds it alone, and replaces it by ``nn.Identity``:
  what a deployment toolchain does before export, and a copy whose BatchNorm parameters
  and weights both differ from the owner's.

The first two act on ``nn.Sequential`` networks (nested ones included) and on networks whose
blocks declare their chains of units (a residual block's inner channels, see
:mod:`tafa.attacks.hidden_units`); the third on any network ``torch.fx`` can trace. All
leave the outputs equal up to float rounding.

>>> from tafa.bench.architectures import build
>>> owner = build("cnn", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> copy_ = rescale_units(permute_units(owner, seed=1), seed=2)
>>> x = torch.rand(4, 1, 8, 8)
>>> bool(torch.allclose(owner(x), copy_(x), atol=1e-5)), bool(torch.equal(owner[0].weight, copy_[0].weight))
(True, False)
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import InvalidParameter, check_param
from .hidden_units import WEIGHTED, _out_axis, hidden_boundaries, reindex_units, scale_units


def permute_units(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with the units of every hidden layer randomly permuted."""
    caller = "permute_units"
    permuted = copy.deepcopy(model)
    boundaries = hidden_boundaries(permuted, caller=caller)
    if not boundaries:
        raise InvalidParameter(f"The 'model' parameter of {caller} must have hidden units "
                               f"between two Linear or convolution layers. Got none instead.")
    rng = np.random.default_rng(seed)
    for boundary in boundaries:
        reindex_units(boundary, torch.as_tensor(rng.permutation(boundary.units)))
    return permuted.eval()


def rescale_units(model: nn.Module, *, seed: int = 0, max_factor: float = 2.0) -> nn.Module:
    """A copy of ``model`` with every rescalable hidden unit multiplied by a positive factor
    (log-uniform in ``[1/max_factor, max_factor]``) and divided back out downstream."""
    caller = "rescale_units"
    check_param("max_factor", max_factor, "a number >= 1",
                isinstance(max_factor, (int, float)) and max_factor >= 1, caller=caller)
    rescaled = copy.deepcopy(model)
    boundaries = [b for b in hidden_boundaries(rescaled, caller=caller) if b.scale_at is not None]
    if not boundaries:
        raise InvalidParameter(f"The 'model' parameter of {caller} must have hidden units behind "
                               f"a ReLU-like activation between two Linear or convolution layers. "
                               f"Got none instead.")
    rng = np.random.default_rng(seed)
    spread = math.log(max_factor)
    for boundary in boundaries:
        factors = np.exp(rng.uniform(-spread, spread, size=boundary.units))
        scale_units(boundary, torch.as_tensor(factors, dtype=torch.float64))
    return rescaled.eval()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm whose only input is a Linear or convolution
    layer (used nowhere else) folded into that layer's weights and bias."""
    caller = "fold_batchnorm"
    folded = copy.deepcopy(model).eval()
    pairs = _layers_before_batchnorms(folded, caller)
    if not pairs:
        raise InvalidParameter(f"The 'model' parameter of {caller} must have a BatchNorm right after a Linear or "
                               f"convolution layer. Got {type(model).__name__} without one instead.")
    with torch.no_grad():
        for layer_name, norm_name in pairs:
            layer, norm = folded.get_submodule(layer_name), folded.get_submodule(norm_name)
            assert isinstance(layer, WEIGHTED) and isinstance(norm, _BatchNorm)  # by _layers_before_batchnorms
            assert norm.running_mean is not None and norm.running_var is not None
            gain = torch.rsqrt(norm.running_var + norm.eps)
            shift = -norm.running_mean * gain
            if norm.affine:
                gain, shift = gain * norm.weight, shift * norm.weight + norm.bias
            shape = [1] * layer.weight.ndim
            shape[_out_axis(layer)] = -1
            bias = layer.bias if layer.bias is not None else torch.zeros_like(gain)
            layer.weight = nn.Parameter(layer.weight * gain.reshape(shape))
            layer.bias = nn.Parameter(bias * gain + shift)
            parent, _, child = norm_name.rpartition(".")
            setattr(folded.get_submodule(parent), child, nn.Identity())
    return folded


def _layers_before_batchnorms(model: nn.Module, caller: str) -> list[tuple[str, str]]:
    """``(layer, batchnorm)`` submodule names where the BatchNorm's input is the layer's output
    and that output goes nowhere else (read off the ``torch.fx`` graph of ``model``)."""
    from torch import fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, ...) on dynamic code
        raise InvalidParameter(f"The 'model' parameter of {caller} must be traceable by torch.fx. "
                               f"Got {type(model).__name__}, which is not ({type(error).__name__}).") from None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(str(node.target)), _BatchNorm):
            continue
        norm = model.get_submodule(str(node.target))
        source = node.args[0] if node.args else None
        if (not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1
                or calls[str(node.target)] != 1 or calls[str(source.target)] != 1
                or norm.running_var is None or not norm.track_running_stats):
            continue  # a module called twice (shared weights) would be folded twice
        layer = model.get_submodule(str(source.target))
        if (isinstance(layer, WEIGHTED) and getattr(layer, "groups", 1) == 1
                and layer.weight.shape[_out_axis(layer)] == norm.num_features):
            pairs.append((str(source.target), str(node.target)))
    return pairs
