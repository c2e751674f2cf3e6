"""What choosing probes costs, counted from the owner's network (never timed): the
multiply-accumulates of one forward pass, priced at the reference machine's nominal speed.

A plan depends on the model and the budget only, never on the load of the moment, so the same
owner, seed and budget give the same fingerprint anywhere. The region analysis plans with these
counts (:meth:`tafa.probes.relu.ReluProbes.plan`), and so do the strategies that search the
owner's gradients (IPGuard's boundary search in the data-free label stage, the pull towards
confident inputs in the extraction stage): ``Fingerprint.create`` leaves such a later stage out
when its search would take longer than the time budget.

>>> import torch
>>> from tafa.domain import Box
>>> forward_macs(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)), Box((4,), 0, 1))
56.0
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ..domain import Domain

if TYPE_CHECKING:
    import torch

#: Nominal speed of one idle core of the reference machine (2-core x86-64, torch CPU, one
#: thread): multiply-accumulates per second of a forward pass in each precision.
MACS_PER_SECOND = {"float32": 3.5e10, "float64": 8e9}
#: A backward pass through the network costs about twice its forward pass: one step of a search
#: on the owner's gradients costs this many forward passes.
PASSES_PER_GRADIENT_STEP = 3


@contextmanager
def counting_macs(module: torch.nn.Module) -> Iterator[list[float]]:
    """While open, every forward pass of ``module`` adds its multiply-accumulates to the one
    value of the list yielded (convolutions and linear layers by their weights, a recurrent layer
    by its matrices at every step; one per output value for every other leaf module)."""
    import torch

    macs = [0.0]

    def count(layer: torch.nn.Module, inputs: object, output: object) -> None:
        if isinstance(layer, (torch.nn.RNNBase, torch.nn.RNNCellBase)):
            # every step multiplies its input and its state by the layer's matrices
            first = inputs[0] if isinstance(inputs, tuple) and inputs else None
            if isinstance(first, torch.Tensor):
                vectors = first.numel() / max(first.shape[-1], 1)
                macs[0] += vectors * sum(p.numel() for name, p in layer.named_parameters() if p.ndim >= 2)
            return
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(layer, torch.nn.modules.conv._ConvNd):
            macs[0] += output.numel() * layer.in_channels / layer.groups * math.prod(layer.kernel_size)
        elif isinstance(layer, torch.nn.Linear):
            macs[0] += output.numel() * layer.in_features
        else:
            macs[0] += output.numel()

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        yield macs
    finally:
        for handle in handles:
            handle.remove()


def forward_macs(module: torch.nn.Module, domain: Domain) -> float:
    """The multiply-accumulates of one forward pass of ``module`` at one input of ``domain``
    (any network: run on a float32 copy in eval mode, without gradients)."""
    import torch

    analysed = copy.deepcopy(module).float().eval()
    point = torch.as_tensor(domain.sample(1, np.random.default_rng(0)), dtype=torch.float32)
    with counting_macs(analysed) as macs, torch.no_grad():
        analysed(point)
    return macs[0]


def search_seconds(module: torch.nn.Module, domain: Domain, rows: int, steps: int, queries: int = 0) -> float:
    """Seconds at the reference speed for a search of ``steps`` gradient steps on ``rows``
    inputs of ``module`` at once, plus ``queries`` forward passes."""
    passes = rows * steps * PASSES_PER_GRADIENT_STEP + queries
    return passes * forward_macs(module, domain) / MACS_PER_SECOND["float32"]
