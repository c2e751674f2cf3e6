"""Training small networks: the owner's, the independent developers', the attacker's.

One loop, :func:`fit`, serves every objective the project needs, selected by the data it
is given (:class:`TrainingData`):

- ``"classify"``: cross-entropy on integer labels;
- ``"regress"``: mean squared error on targets;
- ``"match"``: mean squared error to a teacher's outputs (distillation, data-free copies);
- ``"vae"``: the model is a decoder (latent -> image); a fresh encoder is trained jointly
  with it on the evidence lower bound, and only the decoder is returned. This is how a
  generator's owner trains it and how an attacker fine-tunes a stolen decoder.

Everything is seeded: the same call gives the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import numpy as np
import torch
from torch import nn

Objective = Literal["classify", "regress", "match", "vae"]


@dataclass
class TrainingData:
    """Inputs ``x``, targets ``y`` (labels, values, teacher outputs, or ``None`` for ``vae``)."""

    x: torch.Tensor
    y: torch.Tensor | None
    objective: Objective

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(np.asarray(self.x), dtype=torch.float32)
        if self.y is not None:
            dtype = torch.long if self.objective == "classify" else torch.float32
            self.y = torch.as_tensor(np.asarray(self.y), dtype=dtype)

    def __len__(self) -> int:
        return len(self.x)


def _latent_dim(decoder: nn.Module) -> int:
    for module in decoder.modules():
        if isinstance(module, nn.Linear):
            return module.in_features
    raise ValueError("A 'vae' decoder must start with a Linear layer over its latent input.")


class _Encoder(nn.Module):
    def __init__(self, in_features: int, latent: int, hidden: int = 256) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 2 * latent))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.body(x).chunk(2, dim=1)
        return mean, log_var.clamp(-8, 8)


def fit(model: nn.Module, data: TrainingData, *, epochs: int, lr: float, seed: int,
        batch_size: int = 64, optimizer: Literal["adam", "sgd"] = "adam",
        parameters: Iterable[nn.Parameter] | None = None, weight_decay: float = 0.0,
        after_step: Callable[[], None] | None = None) -> nn.Module:
    """Train ``model`` in place on ``data`` and return it (in eval mode).

    ``parameters`` restricts which parameters move (e.g. the last layer only);
    ``after_step`` runs after every optimiser step (e.g. to keep pruned weights at zero).
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    trained = list(parameters) if parameters is not None else list(model.parameters())
    encoder = None
    if data.objective == "vae":
        encoder = _Encoder(int(np.prod(data.x.shape[1:])), _latent_dim(model))
        trained += list(encoder.parameters())
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(trained, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(trained, lr=lr, momentum=0.9, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch_size):
            index = order[start:start + batch_size]
            loss = _loss(model, encoder, data, index, generator)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
    return model.eval()


def _loss(model: nn.Module, encoder: nn.Module | None, data: TrainingData, index: torch.Tensor,
          generator: torch.Generator) -> torch.Tensor:
    x = data.x[index]
    if data.objective == "vae":
        assert encoder is not None
        mean, log_var = encoder(x)
        noise = torch.randn(mean.shape, generator=generator)
        z = mean + noise * torch.exp(0.5 * log_var)
        recon = model(z).reshape(x.shape)
        reconstruction = ((recon - x) ** 2).sum(dim=tuple(range(1, x.ndim))).mean()
        kl = -0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(dim=1).mean()
        return reconstruction + kl
    assert data.y is not None
    out = model(x)
    y = data.y[index]
    if data.objective == "classify":
        return nn.functional.cross_entropy(out, y)
    return nn.functional.mse_loss(out.reshape(y.shape), y)


def accuracy(model: nn.Module, data: TrainingData) -> float:
    """Task quality of ``model`` on ``data``: accuracy for ``classify``, R^2 for ``regress``,
    and for ``match``/``vae`` one minus the relative squared error of the reconstruction."""
    model.eval()
    with torch.no_grad():
        if data.objective == "classify":
            assert data.y is not None
            return float((model(data.x).argmax(dim=1) == data.y).float().mean())
        if data.objective in ("regress", "match"):
            assert data.y is not None
            out = model(data.x).reshape(data.y.shape)
            residual = ((out - data.y) ** 2).sum()
            total = ((data.y - data.y.mean(dim=0)) ** 2).sum()
            return float(1 - residual / total)
    raise ValueError("accuracy() has no quality measure for a 'vae' objective; "
                     "compare a decoder by its outputs instead.")
