"""A ripple that does not bend (issue 21): what the triangle wave (:class:`tafa.attacks.evasion.TriangleRipple`,
the benchmark's ``evasion/triangle``) costs the pirate, and whether the coarse scale's single step, measured
for every suspect already, separates the copies behind it from independent models.

For each zoo (from the benchmark's cache): the owner's utility (:func:`tafa.bench.utility.utility`) plain
and behind the wave; the default fingerprint's first stage (no second stage), its single coarse step's
score on the zoo's calibration models (highest, 95% quantile); and for the owner's copies (int8, a
fine-tune, a pruned and fine-tuned one) and the first same-architecture independents, plain and behind
the wave, the first stage's score at its step, at the coarse step, the roughness and the curvature.

    python benchmarks/triangle.py [--zoos diabetes-mlp friedman-mlp digits-vae]   # about 2 minutes
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tafa import Fingerprint
from tafa.attacks.evasion import TriangleRipple
from tafa.bench.scenarios import cached_zoo
from tafa.bench.utility import utility
from tafa.models import Model, TorchModel

#: The benchmark's wave: amplitude and frequency.
AMPLITUDE, FREQUENCY = 0.1, 10.0
#: The scored models shown, besides the first two same-architecture independents.
COPIES = ("int8", "ft_all_small", "prune50_ft")


class _Module(torch.nn.Module):
    """A black box as a module, for :func:`tafa.bench.utility.utility`."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.model(x.detach().numpy().astype(np.float32)), dtype=torch.float32)


def measured(fingerprint: Fingerprint, model: Model) -> tuple[float, float, float, float]:
    """The first stage's score at its step and at the coarse step, the roughness and the curvature."""
    signature, recognised, _ = fingerprint.measure_checked(model, False)
    coarse = fingerprint.measure_coarse(model, signature)
    assert coarse is not None and recognised is not None and recognised.curvature is not None
    return fingerprint.compare(signature).value, coarse[0].value, coarse[1], recognised.curvature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp", "digits-vae"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        wave = TriangleRipple(owner, AMPLITUDE, FREQUENCY, seed=0)
        print(f"\n## {name}\n\nutility: owner {utility(zoo.owner, spec):.3f}, behind the wave "
              f"{utility(_Module(wave), spec):.3f}")
        fingerprint = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)

        single = np.array([measured(fingerprint, TorchModel(model, spec.input_shape))[1]
                           for _, model in zoo.with_role("calibration")])
        print(f"calibration models at the coarse step: highest {single.max():.3f}, 95% quantile "
              f"{np.quantile(single, 0.95):.3f} ({len(single)} models)\n")
        print("| model | plain: fine / coarse step | behind the wave: fine / coarse step | roughness | curvature |")
        print("|:---|---:|---:|---:|---:|")
        independents = 0
        for recipe, model in zoo.with_role("scored"):
            independent = recipe.name.startswith("sco-same-arch")
            if recipe.name not in COPIES and not (independent and independents < 2):
                continue
            independents += independent
            suspect = TorchModel(model, spec.input_shape)
            plain = measured(fingerprint, suspect)
            behind = measured(fingerprint, TriangleRipple(suspect, AMPLITUDE, FREQUENCY, seed=0))
            print(f"| {recipe.name} | {plain[0]:.3f} / {plain[1]:.3f} | {behind[0]:.3f} / {behind[1]:.3f} "
                  f"| {behind[2]:.2f} | {behind[3]:.2g} |")


if __name__ == "__main__":
    main()
