"""The small piecewise-linear networks the benchmark, the demo and the tests train.

The small ones are ``nn.Sequential`` of Linear / Conv2d / ReLU / MaxPool2d / Flatten (plus an
optional monotone head), so the attack library can walk their layers generically. The
real-size ones are residual networks (:class:`ResNet`: BatchNorm, residual additions,
max-pooling, global average pooling), built in plain torch. Each builder is seeded: the same
seed gives the same initial weights.

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


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, added to the (projected) input, then ReLU.

    ``unit_chains`` names the submodules that carry the block's inner channels, in forward
    order (producer, what lies between, consumer): the attack library permutes, rescales or
    removes those channels (:func:`tafa.attacks.hidden_units.hidden_boundaries`).
    """

    expansion = 1
    unit_chains = (("conv1", "bn1", "relu", "conv2"),)

    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.shortcut = _projection(inputs, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 (reduce), 3x3, 1x1 (expand x4) convolutions with BatchNorm, residual addition, ReLU."""

    expansion = 4
    unit_chains = (("conv1", "bn1", "relu", "conv2"), ("conv2", "bn2", "relu", "conv3"))

    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(inputs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.shortcut = _projection(inputs, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


def _projection(inputs: int, outputs: int, stride: int) -> nn.Module:
    if stride == 1 and inputs == outputs:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))


class ResNet(nn.Module):
    """A residual network (He et al. 2016) of :class:`BasicBlock` or :class:`Bottleneck` stages.

    ``stem="small"`` (inputs up to 64 pixels a side): one 3x3 convolution; ``"pooled"``: one
    3x3 convolution and a 2x2 max-pooling (half the side, a quarter of the cost); ``"imagenet"``:
    a 7x7 stride-2 convolution and a 3x3 stride-2 max-pooling. Then one stage per entry of
    ``blocks`` (the first at stride 1, the others at stride 2), global average pooling and a
    linear head.
    """

    def __init__(self, input_shape: tuple[int, ...], output_dim: int, blocks: tuple[int, ...],
                 widths: tuple[int, ...], bottleneck: bool = False, stem: str = "small") -> None:
        super().__init__()
        block: type[BasicBlock] | type[Bottleneck] = Bottleneck if bottleneck else BasicBlock
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(input_shape[0], widths[0], 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        elif stem == "pooled":
            self.stem = nn.Sequential(nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(2))
        else:
            self.stem = nn.Sequential(nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages: list[nn.Module] = []
        inputs = widths[0]
        for index, (count, width) in enumerate(zip(blocks, widths)):
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                stages.append(block(inputs, width, stride))
                inputs = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(inputs, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet18(input_shape: tuple[int, ...], output_dim: int, width: int = 64) -> ResNet:
    """ResNet-18 (11.2M parameters at ``width=64`` with 10 outputs)."""
    stem = "imagenet" if input_shape[-1] > 64 else "small"
    return ResNet(input_shape, output_dim, (2, 2, 2, 2), tuple(width * 2 ** i for i in range(4)), stem=stem)


def resnet50(input_shape: tuple[int, ...], output_dim: int, width: int = 64) -> ResNet:
    """ResNet-50 (25.6M parameters at ``width=64`` with 1000 outputs; 23.5M with 10)."""
    stem = "imagenet" if input_shape[-1] > 64 else "small"
    return ResNet(input_shape, output_dim, (3, 4, 6, 3), tuple(width * 2 ** i for i in range(4)), bottleneck=True,
                  stem=stem)


def zoo_resnet(input_shape: tuple[int, ...], output_dim: int, widths: tuple[int, ...] = (16, 32, 64)) -> ResNet:
    """The benchmark's residual network: a pooled 3x3 stem and one basic block per stage
    (78k parameters at the default widths on 1x28x28 with 10 outputs; seconds per MNIST-5k epoch)."""
    return ResNet(input_shape, output_dim, (1,) * len(widths), widths, stem="pooled")


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
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
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet_zoo": zoo_resnet,
    "resnet_zoo_narrow": lambda input_shape, output_dim: zoo_resnet(input_shape, output_dim, (8, 16, 32)),
}


def build(name: str, *, input_shape: tuple[int, ...], output_dim: int, seed: int) -> nn.Module:
    """A freshly initialised network of architecture ``name``, seeded."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}.")
    torch.manual_seed(seed)
    return ARCHITECTURES[name](input_shape, output_dim)
