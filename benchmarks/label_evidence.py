"""Label-level evidence without data (issue 20): can a service that answers only labels (one-hot,
rounded probabilities, integer logits) be told apart by the labels it gives near the owner's
decision boundaries?

For the default classification zoo (digits MLP, from the benchmark's cache), points near the
owner's boundaries are found white-box and data-free (IPGuard's optimisation started from domain
draws, :class:`tafa.probes.ipguard.IPGuardProbes`, at margins 0.01, 0.5 and 2), plus plain domain
draws; and lines through 60 boundary points along the owner's normal, asked at 7 offsets each way
(``0.002 .. 0.2`` of the domain's diagonal). Statistics per model: the label match rate with the
owner on each probe set; on the lines, the fraction whose labels flip within the 3 smallest
offsets ("near-flip"), the mean index of the first flip, and the match rate. Each is thresholded
at the maximum over the zoo's 40 calibration models (about 1/41 by rank), and the fraction of
each family's scored models above it is printed.

    python benchmarks/label_evidence.py [--zoo digits-mlp] [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.domain import parse_domain
from tafa.models import TorchModel
from tafa.probes.ipguard import IPGuardProbes
from tafa.signature.labels import predicted_labels

OFFSETS = np.array([0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
LINES = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="digits-mlp")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    (spec,) = [spec for spec in FULL if spec.name == args.zoo]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    domain = parse_domain(spec.domain, spec.input_shape)
    sets = {f"boundary, margin {margin:g}": IPGuardProbes(margin=margin, steps=300).select(
        owner, domain, n=200, k=0, seed=0).points for margin in (0.01, 0.5, 2.0)}
    sets["domain draws"] = domain.sample(200, 1)
    lines = IPGuardProbes(margin=0.01, steps=300).select(owner, domain, n=LINES, k=0, seed=0)
    base = lines.points.reshape(LINES, -1)
    i, j = (torch.tensor(lines.extra["classes"][:, k].astype(int))[:, None] for k in (0, 1))
    x = torch.tensor(base, dtype=torch.float32, requires_grad=True)
    out = zoo.owner(x.reshape(-1, *spec.input_shape))
    (out.gather(1, j) - out.gather(1, i)).sum().backward()
    normal = x.grad.numpy().astype(np.float64)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    draws = domain.sample(2000, 3).reshape(2000, -1)
    offsets = OFFSETS * float(draws.max() - draws.min()) * np.sqrt(base.shape[1])
    points = np.concatenate([base[:, None, :] + sign * offsets[None, :, None] * normal[:, None, :]
                             for sign in (-1, 1)], axis=1).reshape(-1, *spec.input_shape)
    owner_sets = {name: predicted_labels(owner(points_)) for name, points_ in sets.items()}
    owner_lines = predicted_labels(owner(points)).reshape(LINES, 2, len(OFFSETS))

    def statistics(model: TorchModel) -> dict[str, float]:
        found = {f"match, {name}": float(np.mean(predicted_labels(model(points_)) == owner_sets[name]))
                 for name, points_ in sets.items()}
        labels = predicted_labels(model(points)).reshape(LINES, 2, len(OFFSETS))
        differs = labels[:, 0, :] != labels[:, 1, :]
        first = np.where(differs.any(axis=1), differs.argmax(axis=1), len(OFFSETS))
        found["lines: near-flip"] = float(np.mean(first <= 2))
        found["lines: minus mean first flip"] = -float(np.mean(first))
        found["lines: match"] = float(np.mean(labels == owner_lines))
        return found

    rows = [(role, recipe, statistics(TorchModel(model, spec.input_shape)))
            for role in ("calibration", "scored") for recipe, model in zoo.with_role(role)]
    for name in rows[0][2]:
        calibration = [found[name] for role, _, found in rows if role == "calibration"]
        line = max(calibration)
        families: dict[tuple[int, str], list[bool]] = {}
        for role, recipe, found in rows:
            if role == "scored":
                families.setdefault((recipe.label, recipe.family), []).append(found[name] > line)
        print(f"\n{name}: above the highest of {len(calibration)} calibration models ({line:.3f})")
        for (label, family), above in sorted(families.items()):
            print(f"  {'copy' if label else 'independent':<11} {family:<24} {np.mean(above):.2f} ({len(above)})")


if __name__ == "__main__":
    main()
