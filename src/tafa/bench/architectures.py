"""The small networks the benchmark, the demo and the tests train.

The small ones are ``nn.Sequential`` of Linear / Conv2d / ReLU / MaxPool2d / Flatten (plus an
optional monotone head), so the attack library can walk their layers generically. The
real-size ones are residual networks (:class:`ResNet`: BatchNorm, residual additions,
max-pooling, global average pooling), built in plain torch. Two families lie outside the
piecewise-linear (ReLU) family, where networks are going: GELU MLPs (``mlp_gelu``) and a
small pre-norm transformer encoder over image patches (:class:`Transformer`: LayerNorm,
softmax attention, GELU feed-forward). Each builder is seeded: the same seed gives the same
initial weights.

>>> net = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn


def mlp(input_shape: tuple[int, ...], output_dim: int, hidden: tuple[int, ...] = (128, 128),
        activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """Flatten, then Linear-activation (ReLU unless told) blocks, then a Linear output."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(np.prod(input_shape))
    for size in hidden:
        layers += [nn.Linear(width, size), activation()]
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


class Patches(nn.Module):
    """``(batch, C, H, W)`` -> ``(batch, tokens, C * size * size)``: the image cut into
    non-overlapping ``size`` x ``size`` patches, row-major (16 tokens of 4 pixels for 8x8 digits)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        s = self.size
        x = x.reshape(batch, channels, height // s, s, width // s, s).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(batch, (height // s) * (width // s), channels * s * s)


class PositionEmbedding(nn.Module):
    """A learned vector per token position, added to the tokens."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(tokens, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention over ``(batch, tokens, dim)``, written out with four
    ``nn.Linear`` maps (query, key, value, output) so that the attack library sees its weights
    (what ``nn.MultiheadAttention`` computes, without dropout or masks)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"The attention width {dim} is not a multiple of its {heads} heads.")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:  # (batch, heads, tokens, dim / heads)
            return y.reshape(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder layer: ``x + attention(norm1(x))``, then
    ``x + fc2(gelu(fc1(norm2(x))))`` (``nn.TransformerEncoderLayer`` with ``norm_first=True``,
    ``activation="gelu"``, no dropout). The feed-forward's hidden units are a chain of units
    (``unit_chains``): the attack library permutes or removes them; nothing else is
    reindexed (the residual stream and the heads' features are shared across the block)."""

    unit_chains = (("fc1", "act", "fc2"),)

    def __init__(self, dim: int, heads: int, feedforward: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, feedforward)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(feedforward, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Transformer(nn.Module):
    """A small vision transformer: patches, a linear patch embedding plus a learned position
    embedding, pre-norm :class:`EncoderBlock` layers, a final LayerNorm, the mean over tokens
    and a linear head. Not piecewise-linear (LayerNorm, softmax, GELU): the white-box analysis
    refuses it and a fingerprint of it is made black-box."""

    def __init__(self, input_shape: tuple[int, ...], output_dim: int, dim: int = 32, heads: int = 4,
                 feedforward: int = 64, layers: int = 2, patch: int = 2) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.patches = Patches(patch)
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.position = PositionEmbedding((height // patch) * (width // patch), dim)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, feedforward) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, output_dim)  # registered last: the attack library's "last layer"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(self.position(self.embed(self.patches(x))))
        return self.head(self.norm(tokens).mean(dim=1))


def transformer(input_shape: tuple[int, ...], output_dim: int, dim: int = 32) -> Transformer:
    """The benchmark's attention network on 8x8 digits: 16 patches of 2x2, width ``dim``, 4 heads,
    two pre-norm GELU layers with a feed-forward of twice the width (18k parameters at 32)."""
    return Transformer(input_shape, output_dim, dim=dim, heads=4, feedforward=2 * dim, layers=2, patch=2)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "mlp_wide": lambda input_shape, output_dim: mlp(input_shape, output_dim, (256, 256)),
    "mlp_deep": lambda input_shape, output_dim: mlp(input_shape, output_dim, (128, 128, 128)),
    "mlp_small": lambda input_shape, output_dim: mlp(input_shape, output_dim, (64, 64)),
    "mlp_gelu": lambda input_shape, output_dim: mlp(input_shape, output_dim, (128, 128), nn.GELU),
    "mlp_gelu_wide": lambda input_shape, output_dim: mlp(input_shape, output_dim, (256, 256), nn.GELU),
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
    "transformer": transformer,
    "transformer_wide": lambda input_shape, output_dim: transformer(input_shape, output_dim, dim=48),
}


def build(name: str, *, input_shape: tuple[int, ...], output_dim: int, seed: int) -> nn.Module:
    """A freshly initialised network of architecture ``name``, seeded."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}.")
    torch.manual_seed(seed)
    return ARCHITECTURES[name](input_shape, output_dim)
