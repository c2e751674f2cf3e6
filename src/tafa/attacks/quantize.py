"""Quantization: rounding the weights to fewer bits, kept as float32 tensors.

- :func:`to_float16` rounds every floating parameter and buffer to the nearest float16
  value (the model a float16 deployment would run, computed back in float32).
- :func:`quantize` rounds the weight tensor of every Linear and convolution layer to a
  symmetric per-tensor uniform grid of ``2**bits - 1`` levels: ``scale * k`` for integers
  ``|k| <= 2**(bits-1) - 1`` with ``scale = max|w| / (2**(bits-1) - 1)``; int8 gives at
  most 255 distinct values per tensor, int4 at most 15. Biases stay float32 by default,
  as integer kernels keep them in 32-bit accumulators (``biases=True`` rounds them the
  same way, each on its own grid); BatchNorm parameters stay float32 (they would be
  folded into the weights).

>>> from tafa.bench.architectures import build
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> len(torch.unique(quantize(owner, 4)[1].weight)) <= 16
True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import check_param
from .hidden_units import weighted_layers


def to_float16(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose floating parameters and buffers went through float16."""
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*rounded.parameters(), *rounded.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.float16).to(tensor.dtype))
    return rounded.eval()


def quantize(model: nn.Module, bits: int, *, biases: bool = False) -> nn.Module:
    """A copy of ``model`` with symmetric per-tensor ``bits``-bit weight rounding."""
    check_param("bits", bits, "an integer in [2, 16]",
                isinstance(bits, int) and 2 <= bits <= 16, caller="quantize")
    rounded = copy.deepcopy(model)
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for layer in weighted_layers(rounded):
            tensors = [layer.weight] + ([layer.bias] if biases and layer.bias is not None else [])
            for tensor in tensors:
                scale = tensor.abs().max() / levels
                if scale > 0:
                    tensor.copy_(torch.round(tensor / scale).clamp(-levels, levels) * scale)
    return rounded.eval()
