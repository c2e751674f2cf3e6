"""What each model of a zoo is worth: its utility on data the owner did not train on.

A copy that the fingerprint misses matters less when post-processing destroyed what made
the owner's model worth stealing (80% pruning without fine-tuning leaves a digits CNN at
accuracy 0.29). The benchmark therefore measures every model's utility once, caches it
beside the zoo, and reports detection over the copies that keep at least :data:`KEEP` of
the owner's utility as well as over all copies.

Utility, per output kind, is a skill score (1 is perfect, 0 is a trivial model):

- classification: accuracy;
- regression: R^2;
- generation (a decoder, latent -> image): the *sample R^2*,
  ``1 - (coverage + fidelity) / (2 * variance)``, where ``coverage`` is the mean squared
  distance from each held-out image to the nearest of :data:`SAMPLES` decoded samples
  (latents drawn from the standard normal prior, the same draw for every decoder),
  ``fidelity`` the mean squared distance from each sample to the nearest held-out image,
  and ``variance`` the mean squared distance of the held-out images to their mean (what
  a generator that always draws the mean image pays on coverage). A decoder whose samples
  are noise, or which covers one digit only, scores low; the owner's own decoder about
  0.5 on the digits. No encoder is kept in the zoo (only the decoder is returned by
  training), so reconstruction through the owner's encoder is not available.

The data is the half of the task the owner did not train on (``spec.data("other")``),
held out from the owner's training. The attackers' fine-tunes and the ``other-split``
independents train on that half, so their utility is if anything flattered: the gate
drops only copies that are poor even on their own training data, and the figures over the
kept copies are not flattered by dropping useful ones.

Relative utility is a copy's utility over the owner's (:func:`tafa.bench.metrics.relative_utility`).

Each value is cached as ``<model key>.utility.json`` next to the model in the zoo cache
(the model key is the SHA-256 of its recipe), with :data:`UTILITY_VERSION`: a warm run
reads it back instead of measuring again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..storage import write_atomically
from ..threads import one_torch_thread
from ..training import accuracy
from .datasets import load_task
from .zoo import Zoo, ZooSpec, recipe_key

#: Bump when what a utility value means changes (the measure, the data, the samples).
UTILITY_VERSION = 1
#: The share of the owner's utility a copy must keep to count as worth stealing.
KEEP = 0.9
#: Decoded samples per decoder for the sample R^2.
SAMPLES = 1000
#: The data every utility is measured on.
HELD_OUT = "other"

__all__ = ["HELD_OUT", "KEEP", "SAMPLES", "UTILITY_VERSION", "measure_name", "sample_r2", "utility",
           "zoo_utilities"]


def measure_name(spec: ZooSpec) -> str:
    """What :func:`utility` measures for ``spec``'s models."""
    if spec.latent:
        return "sample R^2"
    return "accuracy" if load_task(spec.task).objective == "classify" else "R^2"


def sample_r2(decoder: nn.Module, images: np.ndarray, latent: int, samples: int = SAMPLES, seed: int = 0) -> float:
    """The sample R^2 of ``decoder`` against held-out ``images`` (see the module docstring).

    >>> images = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    >>> class Mean(nn.Module):
    ...     def forward(self, z): return torch.as_tensor(images.mean(0)).expand(len(z), 4)
    >>> 0.0 < sample_r2(Mean(), images, latent=2, samples=20) < 0.6  # the mean image: fidelity only
    True
    """
    x = torch.as_tensor(images, dtype=torch.float32).reshape(len(images), -1)
    z = torch.randn(samples, latent, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        generated = decoder.eval()(z).reshape(samples, -1).float()
    distances = torch.cdist(x, generated) ** 2
    coverage = float(distances.min(dim=1).values.mean())
    fidelity = float(distances.min(dim=0).values.mean())
    variance = float(((x - x.mean(dim=0)) ** 2).sum(dim=1).mean())
    return 1.0 - (coverage + fidelity) / (2.0 * variance)


def utility(model: nn.Module, spec: ZooSpec) -> float:
    """``model``'s utility on the held-out half of ``spec``'s task (:func:`measure_name`)."""
    if spec.latent:
        return sample_r2(model, np.asarray(load_task(spec.task).split(HELD_OUT).x), spec.latent)
    return accuracy(model, spec.data(HELD_OUT))


def _cached(path: Path, measure: str) -> float | None:
    """The value cached at ``path`` if it is one this version wrote for ``measure``."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != UTILITY_VERSION or record.get("measure") != measure \
            or record.get("data") != HELD_OUT:
        return None
    value = record.get("utility")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def zoo_utilities(zoo: Zoo, cache: Path | None, roles: tuple[str, ...] | None = None) -> dict[str, float]:
    """The utility of the owner and of every model of ``roles`` (all when ``None``) loaded in
    ``zoo``, by name, read from ``cache`` where measured before and measured (then cached)
    otherwise."""
    measure = measure_name(zoo.spec)
    values: dict[str, float] = {}
    with one_torch_thread():
        for name, model in zoo.models.items():
            if roles is not None and name != "owner" and zoo.recipes[name].role not in roles:
                continue
            path = None if cache is None else Path(cache) / f"{recipe_key(zoo.spec, zoo.recipes[name])}.utility.json"
            value = None if path is None else _cached(path, measure)
            if value is None:
                value = utility(model, zoo.spec)
                if path is not None:
                    record = {"version": UTILITY_VERSION, "measure": measure, "data": HELD_OUT, "utility": value}
                    write_atomically(path, json.dumps(record).encode())
            values[name] = value
    return values
