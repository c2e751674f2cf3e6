"""Outputs averaged over a small cloud around each draw: a low-pass view that a disturbance with a
short period cannot survive (issue 21, measured, not built; docs/method.md, "The outputs stage").

The outputs stage (``tafa-outputs``) compares the suspect's outputs at 64 domain draws with the
owner's; a disturbance moves them by its amplitude. Averaged over ``K`` points drawn within
``radius`` (in units of the domain's scale) of each draw, a disturbance whose period is much shorter
than the radius averages out, while a network's outputs, nearly linear at that scale, keep their
value at the draw. Per full-benchmark zoo: the owner's copies behind the sine ripple, the triangle
wave and noise, scored plain (``K = 1``) and averaged, each cell ``score (k)`` with ``k`` the zoo's
calibration models scoring at or above it (averaged the same way); ``64 K`` queries per model.

    python benchmarks/smoothed_outputs.py [--zoos digits-vae diabetes-mlp] [--points 8] [--radius 0.3]
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa.bench.run import copies_behind
from tafa.bench.scenarios import cached_zoo
from tafa.decide.similarity import CentredCorrelation
from tafa.domain import parse_domain
from tafa.models import Model, TorchModel

COPIES = ("owner", "int8", "ft_all_small", "prune50_ft")
FAMILIES = ("ripple", "triangle", "noise")


def smoothed(model: Model, draws: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """``model``'s outputs at each draw averaged over the draw plus each offset of ``cloud``."""
    points = (draws[:, None] + cloud[None]).reshape(-1, *draws.shape[1:])
    answers = np.asarray(model(points.astype(np.float32)), dtype=np.float64).reshape(len(draws), len(cloud), -1)
    return answers.mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-vae", "diabetes-mlp", "friedman-mlp"])
    parser.add_argument("--points", type=int, default=8, help="K: points averaged per draw")
    parser.add_argument("--radius", type=float, default=0.3, help="of the cloud, in units of the domain's scale")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    similarity = CentredCorrelation()
    print("| zoo | copy | K | plain | " + " | ".join(f"`{family}`" for family in FAMILIES) + " |")
    print("|:---|:---|---:|" + "---:|" * (1 + len(FAMILIES)))
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        rng = np.random.default_rng(0)
        domain = parse_domain(spec.domain, spec.input_shape)
        draws = domain.sample(64, rng)
        scale = domain.scale()
        for k in sorted({1, args.points}):
            cloud = np.zeros((1, *draws.shape[1:])) if k == 1 else rng.uniform(
                -args.radius * scale, args.radius * scale, size=(k, *draws.shape[1:]))
            owner = {"outputs": smoothed(TorchModel(zoo.owner, spec.input_shape), draws, cloud)}
            references = np.array([similarity.compare(owner, {"outputs": smoothed(
                TorchModel(model, spec.input_shape), draws, cloud)}).value
                for _, model in zoo.with_role("calibration")])
            for copy, models in copies_behind(zoo, COPIES, FAMILIES).items():
                cells = []
                for model in models:
                    value = similarity.compare(owner, {"outputs": smoothed(model, draws, cloud)}).value
                    cells.append(f"{value:.3f} ({int((references >= value).sum())})")
                print(f"| {name} | `{copy}` | {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
