"""Shared fixtures: real small models of the three task kinds, trained once and committed.

Each kind has an owner, 18 independent reference models (negatives that calibrate the
threshold) and an independent suspect trained on the other half of the data with another
seed. They are trained by ``tests/fixtures/make.py`` (seeded, seconds each) and committed
as safetensors, so that a test asserting a decision gets the same models on every CPU;
here they are only loaded (weights only), once per test session.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from make import KINDS, REFERENCES, load  # noqa: E402 - the fixtures' own loader, beside them

# Small models: one thread is fastest and immune to a loaded machine. TAFA_TORCH_THREADS=2 runs
# the suite with two, as the check that decisions do not depend on the floating-point kernels.
torch.set_num_threads(max(1, int(os.environ.get("TAFA_TORCH_THREADS", "1"))))


@dataclass
class Kind:
    """One task kind's models, with the domain its fingerprint uses."""

    name: str
    domain: str
    input_shape: tuple[int, ...]
    owner: torch.nn.Module
    references: list[torch.nn.Module]
    independent: torch.nn.Module


def _kind(name: str, domain: str) -> Kind:
    models = load(name)
    shape = KINDS[name][0]
    references = [models[f"reference{i:02d}"] for i in range(REFERENCES)]
    return Kind(name, domain, shape, models["owner"], references, models["independent"])


@pytest.fixture(scope="session")
def classifier() -> Kind:
    return _kind("classifier", "box:0,1")


@pytest.fixture(scope="session")
def regressor() -> Kind:
    return _kind("regressor", "box:-2,2")


@pytest.fixture(scope="session")
def generator() -> Kind:
    return _kind("generator", "gaussian")


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


@dataclass
class MoreReferences:
    """The classifier's 40 references (its 18, then the 22 of ``classifier-more.safetensors``: alpha
    0.05 with the default two-stage scheme needs 39 by rank) and a second independent model, the
    decoy in front of independent suspects (never a reference)."""

    references: list[torch.nn.Module]
    independent2: torch.nn.Module


@pytest.fixture(scope="session")
def forty_references(classifier) -> MoreReferences:
    """Loaded on first use only: the tests that do not ask do not pay for the second file."""
    more = load("classifier-more")
    extra = sorted(name for name in more if name.startswith("reference"))
    references = [*classifier.references, *(more[name] for name in extra)]
    assert len(references) == 40, len(references)
    return MoreReferences(references, more["independent2"])
