"""The small piecewise-linear networks the benchmark, the demo and the tests train.

All are ``nn.Sequential`` of Linear / Conv2d / ReLU / MaxPool2d / Flatten (plus an optional
monotone head), so the attack library can walk their layers generically. Each builder is
seeded: the same seed gives the same initial weights.

>>> net = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn


def mlp(input_shape: tuple[int, ...], output_dim: int, hidden: tuple[int, ...] = (128, 128)) -> nn.Sequential:
    """Flatten, then Linear-ReLU blocks, then a Linear output."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(np.prod(input_shape))
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


def small_cnn(input_shape: tuple[int, ...], output_dim: int, channels: tuple[int, int] = (16, 32)) -> nn.Sequential:
    """Two Conv-ReLU-MaxPool blocks and two Linear layers (for 8x8 digits)."""
    side = input_shape[-1] // 4
    return nn.Sequential(
        nn.Conv2d(input_shape[0], channels[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels[0], channels[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(channels[1] * side * side, 64), nn.ReLU(), nn.Linear(64, output_dim))


def lenet(input_shape: tuple[int, ...], output_dim: int) -> nn.Sequential:
    """LeNet-5 style: Conv(6,5)-ReLU-MaxPool, Conv(16,5)-ReLU-MaxPool, 120-84-out (for 28x28)."""
    side = ((input_shape[-1] - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, output_dim))


def decoder(latent_dim: int, output_shape: tuple[int, ...], hidden: tuple[int, ...] = (128, 256)) -> nn.Sequential:
    """A VAE decoder: latent vector -> Linear-ReLU blocks -> sigmoid image of ``output_shape``."""
    layers: list[nn.Module] = []
    width = latent_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers += [nn.Linear(width, int(np.prod(output_shape))), nn.Sigmoid(), nn.Unflatten(1, output_shape)]
    return nn.Sequential(*layers)


ARCHITECTURES: dict[str, Callable[..., nn.Sequential]] = {
    "mlp": mlp,
    "mlp_wide": lambda input_shape, output_dim: mlp(input_shape, output_dim, (256, 256)),
    "mlp_deep": lambda input_shape, output_dim: mlp(input_shape, output_dim, (128, 128, 128)),
    "mlp_small": lambda input_shape, output_dim: mlp(input_shape, output_dim, (64, 64)),
    "cnn": small_cnn,
    "cnn_wide": lambda input_shape, output_dim: small_cnn(input_shape, output_dim, (32, 64)),
    "lenet": lenet,
    "decoder": lambda input_shape, output_dim: decoder(input_shape[0], (1, 8, 8) if output_dim == 64 else (1, 28, 28)),
    "decoder_wide": lambda input_shape, output_dim: decoder(
        input_shape[0], (1, 8, 8) if output_dim == 64 else (1, 28, 28), (256, 256)),
}


def build(name: str, *, input_shape: tuple[int, ...], output_dim: int, seed: int) -> nn.Sequential:
    """A freshly initialised network of architecture ``name``, seeded."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}.")
    torch.manual_seed(seed)
    return ARCHITECTURES[name](input_shape, output_dim)
