"""Function-preserving obfuscation: the same function, written with other weights.

- :func:`permute_units` reorders the hidden units (or channels) of every hidden layer,
  reordering the next layer's inputs to match (and any BatchNorm, pooling, Flatten or
  Unflatten in between);
- :func:`rescale_units` multiplies each hidden unit's incoming weights and bias by a
  factor ``c > 0`` drawn log-uniformly in ``[1/max_factor, max_factor]`` and its outgoing
  weights by ``1/c``. ReLU and max-pooling commute with ``c``, so the function is the
  same; a unit followed by BatchNorm is scaled at the BatchNorm's affine output, and a
  unit followed by a non-homogeneous activation (Sigmoid, Tanh, ...) is left alone.

Both act on ``nn.Sequential`` networks (nested ones included) and leave the outputs equal
up to float rounding.

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

from ..errors import InvalidParameter, check_param
from .hidden_units import hidden_boundaries, reindex_units, scale_units


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
