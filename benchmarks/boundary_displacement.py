"""How far post-processing moves the owner's first-layer hyperplanes, and how much it turns them.

For a zoo with an MLP owner (first layer ``nn.Linear``), the crossing points of the
``tafa-boundary`` fingerprint lie on owner units' hyperplanes. For each post-processed copy
(same unit order: fine-tuning and pruning keep it), the same unit's hyperplane is measured at
the crossing point: its distance from it (how far the position moved) and the cosine between
the copy's and the owner's weights (how much the orientation turned). The owner's median
distance from a crossing to its next switch (the kink spacing) is printed for scale.

    python benchmarks/boundary_displacement.py digits-mlp ft_all_large prune80 [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.fingerprint import Fingerprint
from tafa.models.base import TorchModel


def first_linear(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    return layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zoo", help="a full-size zoo with an MLP owner (digits-mlp, diabetes-mlp, friedman-mlp)")
    parser.add_argument("recipes", nargs="+", help="post-processed copies of the owner, by recipe name")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = next(s for s in FULL if s.name == args.zoo)
    zoo = build_zoos([spec], Path(args.cache), jobs=1, progress=False, roles=["scored"])[0]
    fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape), spec.domain, scheme="tafa-boundary")
    probes = fingerprint.probes
    points = probes.points.reshape(len(probes), -1)
    normals = probes.directions[:, 0].reshape(len(probes), -1)
    owner_weight, _ = first_linear(zoo.owner)
    units = np.argmax(np.abs(owner_weight / np.linalg.norm(owner_weight, axis=1, keepdims=True) @ normals.T), axis=0)
    print(f"{args.zoo}: {len(points)} crossings; owner's distance to its next switch, median "
          f"{probes.info['isolation_median']:.4f}")
    for name in args.recipes:
        weight, bias = first_linear(zoo.models[name])
        norms = np.linalg.norm(weight[units], axis=1)
        alive = norms > 0  # pruning can zero a unit's every weight: it has no hyperplane left
        w, b, norms = weight[units][alive], bias[units][alive], norms[alive]
        distance = np.abs(np.einsum("nd,nd->n", w, points[alive]) + b) / norms
        cosine = np.abs(np.einsum("nd,nd->n", w, normals[alive])) / norms
        print(f"  {name:22s} moved: median {np.median(distance):.3f} (90% {np.quantile(distance, 0.9):.3f});"
              f" weight cosine to the owner's unit: median {np.median(cosine):.3f}"
              f"{'' if alive.all() else f' ({int((~alive).sum())} of {len(alive)} units pruned away)'}")


if __name__ == "__main__":
    main()
