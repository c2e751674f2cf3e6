"""Extraction: distilling the owner's outputs into a fresh student.

:func:`distill` queries the teacher on inputs the caller chooses (the attacker's data, or
random points of the input domain, e.g. Gaussian latents for a decoder) and trains the
student to match its raw outputs (mean squared error, the ``"match"`` objective of
:func:`tafa.training.fit`; logits for a classifier). :func:`reinitialised` gives a
student of the teacher's own architecture; :func:`mlp_student` one of another.

>>> from tafa.bench.architectures import build
>>> teacher = build("mlp", input_shape=(4,), output_dim=3, seed=0)
>>> x = torch.randn(256, 4)
>>> student = distill(teacher, mlp_student((4,), (3,), seed=1), x, epochs=30, lr=1e-2)
>>> bool(((student(x) - teacher(x)) ** 2).mean() < 0.1 * teacher(x).var())
True
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..errors import check_param
from ..training import TrainingData
from .finetune import train

#: Default number of epochs of a distillation (a student starts from scratch).
DISTILL_EPOCHS = 30


def distill(teacher: nn.Module, student: nn.Module, inputs: torch.Tensor | np.ndarray, *,
            epochs: int = DISTILL_EPOCHS, lr: float = 1e-3, seed: int = 0, batch_size: int = 64) -> nn.Module:
    """A copy of ``student`` trained to reproduce ``teacher``'s outputs on ``inputs``."""
    caller = "distill"
    check_param("epochs", epochs, "an integer >= 0", isinstance(epochs, int) and epochs >= 0, caller=caller)
    check_param("lr", lr, "a number > 0", isinstance(lr, (int, float)) and lr > 0, caller=caller)
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    check_param("inputs", tuple(x.shape), "a batch of at least one input", x.ndim >= 2 and len(x) > 0,
                caller=caller)
    targets = teacher_outputs(teacher, x)
    return train(copy.deepcopy(student), TrainingData(x, targets, "match"), epochs=epochs, lr=lr, seed=seed,
                 batch_size=batch_size).eval()


def teacher_outputs(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``teacher``'s eval-mode outputs on ``x``, leaving its train/eval mode as it was."""
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            return torch.cat([teacher(x[i:i + 1024]) for i in range(0, len(x), 1024)])
    finally:
        teacher.train(was_training)


def reinitialised(model: nn.Module, *, seed: int) -> nn.Module:
    """A copy of ``model`` with every parameter freshly initialised (seeded)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return fresh


def mlp_student(input_shape: tuple[int, ...], output_shape: tuple[int, ...], *, seed: int,
                hidden: tuple[int, ...] = (256, 256)) -> nn.Sequential:
    """A fresh ReLU MLP from ``input_shape`` to ``output_shape`` (another architecture
    than the benchmark's 128-wide MLPs and CNNs), seeded."""
    width = int(np.prod(input_shape))
    layers: list[nn.Module] = [nn.Flatten()]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, int(np.prod(output_shape))))
    if len(output_shape) > 1:
        layers.append(nn.Unflatten(1, tuple(output_shape)))
    return nn.Sequential(*layers)
