"""Weight noise: Gaussian perturbation relative to each weight tensor's spread.

Every Linear and convolution weight tensor ``w`` receives independent noise of standard
deviation ``scale * std(w)``; biases and BatchNorm parameters are left alone.

>>> from tafa.bench.architectures import build
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> noisy = add_weight_noise(owner, 0.1, seed=0)
>>> change = (noisy[1].weight - owner[1].weight).std() / owner[1].weight.std()
>>> bool(0.09 < change < 0.11)
True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import check_param
from .hidden_units import weighted_layers


def add_weight_noise(model: nn.Module, scale: float, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with seeded Gaussian noise of ``scale`` times each weight
    tensor's standard deviation added to it."""
    check_param("scale", scale, "a number >= 0",
                isinstance(scale, (int, float)) and scale >= 0, caller="add_weight_noise")
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in weighted_layers(noisy):
            weight = layer.weight
            spread = weight.std(correction=0)
            weight.add_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * scale * spread)
    return noisy.eval()
