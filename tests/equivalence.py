"""Checks that a transformed network computes the same function (obfuscations, BatchNorm folding)."""

from __future__ import annotations

import torch
from torch import nn


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def assert_same_function(original: nn.Module, copy_: nn.Module, x: torch.Tensor, tolerance: float = 1e-4) -> None:
    """Same output shape, and outputs equal to ``tolerance`` of the original's largest output."""
    expected, got = outputs(original, x), outputs(copy_, x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()
