"""The coarse step's screen: is the roughness at a few probes enough to clear a suspect?

Every suspect on the fine path is also asked at the coarse step, 576 queries, to tell its roughness
(the median over the probes of its derivative-size ratio between the two steps, relative to the
owner's; above 2, the coarse scale decides). ``Fingerprint.measure_coarse`` screens: the first
``--probes`` probes (16: 144 queries) first, and a suspect whose ratios there have their upper
quartile below ``--limits`` (1.5) times the owner's median is not asked at the others. For every
row of each zoo (calibration models, scored copies and independents, the interface and evasion
rows) whose answers are not clipped, on a grid or label-like, this prints the roughness over every
probe against the screen's upper quartile at the first probes: how many rows read rough over every
probe, the lowest screen value among them (the limit must stay below it), the highest among the
others, and the share of the others the screen clears at each limit.

    python benchmarks/coarse_screen.py [--zoos digits-mlp diabetes-mlp friedman-mlp digits-vae digits-cnn]
    # about 20 s, the zoo cached
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel
from tafa.signature.censoring import at_points
from tafa.signature.scales import ROUGHNESS_LIMIT, SCREEN_LIMIT, SCREEN_PROBES, bend_of, coarse_decides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "diabetes-mlp", "friedman-mlp", "digits-vae",
                                                      "digits-cnn"])
    parser.add_argument("--probes", type=int, default=SCREEN_PROBES)
    parser.add_argument("--limits", nargs="+", type=float, default=[1.25, SCREEN_LIMIT, 2.0])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print("| zoo | rows | rough over every probe | their lowest screen value | the others' highest | "
          + " | ".join(f"others cleared below {limit:g}" for limit in args.limits) + " |")
    print("|:---|---:|---:|---:|---:|" + "---:|" * len(args.limits))
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain, seed=0,
                                         second_stage=False)
        stage = fingerprint.coarse_stage()
        assert stage is not None
        first = np.arange(args.probes)
        screened_fingerprint, screened_stage = fingerprint.at_probes(first), stage.at_probes(first)
        models = ([TorchModel(model, spec.input_shape) for _, model in zoo.with_role("calibration")]
                  + [TorchModel(model, spec.input_shape) for _, model in zoo.with_role("scored")]
                  + [model for _, _, _, model in evasion_suspects(zoo) + interface_suspects(zoo)])
        pairs = []
        for model in models:
            fine, recognised, _ = fingerprint.measure_checked(model, False)
            if model.labels_only or coarse_decides(0.0, *bend_of(recognised)) or \
                    (recognised is not None and recognised.clipped):
                continue  # not screened: something besides its roughness sends it to the coarse scale, or none
            full = fingerprint._coarse_at(model, fine, stage)[1]
            part = screened_fingerprint._coarse_at(model, at_points(fine, first, len(fingerprint.probes)),
                                                   screened_stage)[3]
            pairs.append((full, part))
        values = np.array(pairs)
        rough, other = values[values[:, 0] > ROUGHNESS_LIMIT], values[values[:, 0] <= ROUGHNESS_LIMIT]
        lowest = f"{rough[:, 1].min():.2f}" if len(rough) else "-"
        print(f"| {name} | {len(values)} | {len(rough)} | {lowest} | {other[:, 1].max():.2f} | "
              + " | ".join(f"{np.mean(other[:, 1] < limit):.2f}" for limit in args.limits) + " |")


if __name__ == "__main__":
    main()
