"""Shared fixtures: real small models of the three task kinds, trained in seconds.

Each kind has an owner, a few independent reference models (negatives that calibrate the
threshold) and an independent suspect trained on the other half of the data with another
seed. Everything is seeded, and built once per test session.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from tafa.bench.architectures import build
from tafa.bench.datasets import load_task
from tafa.training import TrainingData, fit

torch.set_num_threads(1)  # small models: one thread is fastest and immune to a loaded machine


@dataclass
class Kind:
    """One task kind's models, with the domain its fingerprint uses."""

    name: str
    domain: str
    input_shape: tuple[int, ...]
    owner: torch.nn.Module
    references: list[torch.nn.Module]
    independent: torch.nn.Module


def _classifier(arch: str, seed: int, part: str) -> torch.nn.Module:
    task = load_task("digits")
    model = build(arch, input_shape=task.input_shape, output_dim=10, seed=seed)
    return fit(model, task.split(part), epochs=15, lr=1e-3, seed=seed)


def _regressor(arch: str, seed: int, part: str) -> torch.nn.Module:
    task = load_task("diabetes")
    model = build(arch, input_shape=task.input_shape, output_dim=1, seed=seed)
    return fit(model, task.split(part), epochs=60, lr=1e-3, seed=seed, weight_decay=1e-3)


def _generator(arch: str, seed: int, part: str) -> torch.nn.Module:
    task = load_task("digits")
    model = build(arch, input_shape=(8,), output_dim=64, seed=seed)
    return fit(model, TrainingData(task.split(part).x, None, "vae"), epochs=15, lr=2e-3, seed=seed)


def _kind(name: str, domain: str, shape: tuple[int, ...], train, archs: tuple[str, ...]) -> Kind:
    owner = train(archs[0], 0, "owner")
    references = [train(arch, 10 + i, "owner" if i % 2 else "other") for i, arch in enumerate(archs * 6)]
    return Kind(name, domain, shape, owner, references, train(archs[0], 99, "other"))


@pytest.fixture(scope="session")
def classifier() -> Kind:
    return _kind("classifier", "box:0,1", (1, 8, 8), _classifier, ("mlp", "mlp_small", "cnn"))


@pytest.fixture(scope="session")
def regressor() -> Kind:
    return _kind("regressor", "box:-2,2", (10,), _regressor, ("mlp_small", "mlp", "mlp_small"))


@pytest.fixture(scope="session")
def generator() -> Kind:
    return _kind("generator", "gaussian", (8,), _generator, ("decoder", "decoder_wide", "decoder"))


@pytest.fixture(scope="session", params=["classifier", "regressor", "generator"])
def kind(request) -> Kind:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def held_out():
    """``held_out(kind, n)``: references to fit on (int8, 50%-pruned and 5%-noise copies; the
    first ``n`` independent references) and disjoint models to score (int4, 70%-pruned and
    10%-noise copies; the other references and the independent suspect)."""
    from tafa.attacks import add_weight_noise, magnitude_prune, quantize
    from tafa.references import References

    def make(kind: Kind, n: int) -> tuple[References, list[torch.nn.Module], list[torch.nn.Module]]:
        owner = kind.owner
        train = References([quantize(owner, 8), magnitude_prune(owner, 0.5), add_weight_noise(owner, 0.05, seed=1)],
                           kind.references[:n])
        positives = [quantize(owner, 4), magnitude_prune(owner, 0.7), add_weight_noise(owner, 0.1, seed=2)]
        negatives = [*kind.references[n:], kind.independent]
        seen = {id(m) for m in [*train.positives, *train.negatives]}
        assert not seen & {id(m) for m in [*positives, *negatives]}  # never scored where fitted
        return train, positives, negatives

    return make
