"""The data-like stage on its own: how it ranks each zoo's copies among the zoo's calibration models,
plain and behind the routers (docs/method.md, "The data-like stage").

Per full-benchmark zoo: the stage as the default fingerprint makes it (``tafa-datalike``, the owner's
derivatives at 32 inputs in the style of real data: most features exactly at rest, the others on a
1/16 grid of the domain's range), every calibration model scored, then every plain scored copy
(``above all``: how many score above every calibration model; ``median k``: the median count of
calibration models at or above a copy), the scored independents above the calibration models' 99th
percentile, and, for the zoos with evasion rows, the copies behind each router family scoring above
every calibration model (the families a data-like input passes: a router must answer its users'
inputs, which these imitate, from the copy).

    python benchmarks/datalike_stage.py [--zoos digits-mlp diabetes-mlp] [--cache .tafa-cache/zoo]  # ~3 min, all zoos
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects
from tafa.bench.scenarios import FULL, cached_zoo
from tafa.models import TorchModel

ROUTERS = ("batch", "zeros", "grid", "soft_zeros", "soft_grid", "ranges", "density")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=[spec.name for spec in FULL])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print("| zoo | calibration models' highest | plain copies above all | median k | independents above the 99th "
          "percentile | " + " | ".join(f"`{router}`" for router in ROUTERS) + " |")
    print("|:---|---:|---:|---:|---:|" + "---:|" * len(ROUTERS))
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        stage = Fingerprint.create(TorchModel(zoo.owner, shape, name="owner"), spec.domain, scheme="tafa-datalike",
                                   seed=0, second_stage=False, free_labels=False)
        references = np.array([stage.score(TorchModel(model, shape)).value
                               for _, model in zoo.with_role("calibration")])
        copies, independents = [], []
        for recipe, model in zoo.with_role("scored"):
            if recipe.family.split("/")[0] in ("interface", "evasion"):
                continue
            value = stage.score(TorchModel(model, shape)).value
            (copies if recipe.label == 1 else independents).append(value)
        above = [int((references >= value).sum()) for value in copies]
        top99 = float(np.quantile(references, 0.99))
        routed: dict[str, list[bool]] = defaultdict(list)
        for _, label, family, served in evasion_suspects(zoo):
            router = family.split("/")[1]
            if label == 1 and router in ROUTERS:
                routed[router].append(bool(stage.score(served).value > references.max()))
        cells = [f"{sum(routed[router])} / {len(routed[router])}" if routed[router] else "-" for router in ROUTERS]
        print(f"| {name} | {references.max():.3f} | {sum(k == 0 for k in above)} / {len(above)} | "
              f"{np.median(above):g} | {sum(v > top99 for v in independents)} / {len(independents)} | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
