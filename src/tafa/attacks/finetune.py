"""Fine-tuning a copy of the owner's model on the attacker's data.

The four forms of the benchmark are the four combinations of two switches of
:func:`finetune`: which layers move (``layers="last"`` or ``"all"``) and whether the last
layer is re-initialised first (``reinitialise_last``). "Last layer" is the last Linear or
convolution layer in module order. The objective is whatever the attacker's
:class:`~tafa.training.TrainingData` says (``classify``, ``regress``, ``match`` for copies
labelled by the owner, ``vae`` for a decoder).

>>> from tafa.bench.architectures import build
>>> from tafa.training import TrainingData
>>> owner = build("mlp", input_shape=(4,), output_dim=1, seed=0)
>>> data = TrainingData(torch.randn(32, 4), torch.randn(32, 1), "regress")
>>> copy = finetune(owner, data, lr=1e-2, layers="last", epochs=2, seed=0)
>>> bool(torch.equal(copy[1].weight, owner[1].weight)), bool(torch.equal(copy[-1].weight, owner[-1].weight))
(True, False)
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import check_param
from ..training import TrainingData, fit
from .hidden_units import last_layer, weighted_layers

#: Default number of epochs of every attack that trains (the context may override it).
DEFAULT_EPOCHS = 10


def finetune(model: nn.Module, data: TrainingData, *, lr: float, layers: Literal["all", "last"] = "all",
             reinitialise_last: bool = False, epochs: int = DEFAULT_EPOCHS, seed: int = 0,
             batch_size: int = 64, keep_zeros: bool = False) -> nn.Module:
    """A fine-tuned copy of ``model`` (Adam at learning rate ``lr``), in eval mode.

    ``layers="last"`` trains the last layer only; BatchNorm running statistics are then
    frozen too, so nothing else changes. ``reinitialise_last`` draws fresh weights for the
    last layer first (seeded). ``keep_zeros`` keeps every weight of a Linear/convolution
    layer that is exactly zero before training at zero (fine-tuning a pruned model).
    """
    caller = "finetune"
    check_param("lr", lr, "a number > 0", isinstance(lr, (int, float)) and lr > 0, caller=caller)
    check_param("layers", layers, "'all' or 'last'", layers in ("all", "last"), caller=caller)
    check_param("epochs", epochs, "an integer >= 0", isinstance(epochs, int) and epochs >= 0, caller=caller)
    check_param("data", data, "a TrainingData", isinstance(data, TrainingData), caller=caller)
    tuned = copy.deepcopy(model)
    last = last_layer(tuned, caller=caller)
    if reinitialise_last:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            last.reset_parameters()
    masks = [(layer.weight, layer.weight != 0) for layer in weighted_layers(tuned)] if keep_zeros else []

    def keep_pruned() -> None:
        with torch.no_grad():
            for weight, mask in masks:
                weight.mul_(mask)

    parameters = list(last.parameters()) if layers == "last" else None
    frozen = [m for m in tuned.modules() if isinstance(m, _BatchNorm)] if layers == "last" else []
    momenta = [m.momentum for m in frozen]
    for module in frozen:
        module.momentum = 0.0  # running statistics stay as they are
    train(tuned, data, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, parameters=parameters,
          after_step=keep_pruned if masks else None)
    for module, momentum in zip(frozen, momenta):
        module.momentum = momentum
    return tuned.eval()


def train(model: nn.Module, data: TrainingData, **options) -> nn.Module:
    """:func:`tafa.training.fit` with the global random state restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        return fit(model, data, **options)
