"""The boundary geometry of a clipped regressor, as it answers and through its own clip
(docs/method.md, "The geometry through the clip").

Per full-benchmark regressor zoo: the owner's copies served clipped to [-1, 1] (the benchmark's
``interface/clip``), the second stage's score read on the answers as they are (the clip's kinks
taken for the network's) and through the suspect's clip (``Fingerprint.uncensored``'s view: an
answer at a bound unknown), with the zoo's calibration models asked through the same clip (the
references of that score: their 99th percentile and highest).

    python benchmarks/clip_geometry.py [--cache .tafa-cache/zoo]     # about 30 s with the zoo cached
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.attacks.interface import get_interface
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel

ZOOS = ("diabetes-mlp", "friedman-mlp")
COPIES = ("owner", "int8", "ft_all_small", "prune50_ft")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    clip = get_interface("clip")
    print("| copy behind the clip | geometry, as answered | through the clip | references through the clip: "
          "99th pct / highest |")
    print("|:---|---:|---:|---:|")
    for name in ZOOS:
        spec, zoo = cached_zoo(name, args.cache)
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        fingerprint = Fingerprint.create(owner, spec.domain, seed=0)
        assert fingerprint.second is not None
        scored = {recipe.name: model for recipe, model in zoo.with_role("scored")}
        scored["owner"] = zoo.owner
        asked: dict[str, list[float]] = {}  # per clip: the references asked once
        for copy in COPIES:
            suspect = clip.apply(TorchModel(scored[copy], spec.input_shape, name=copy))
            signature, recognised, _ = fingerprint.measure_checked(suspect, check=False)
            view, _, _ = fingerprint.uncensored(signature, recognised)
            through = view.second
            assert through is not None
            bounds = repr(through.scheme.signature_params["clip"])
            if bounds not in asked:
                asked[bounds] = [through.score(TorchModel(model, spec.input_shape)).value
                                 for _, model in zoo.with_role("calibration")]
            scores = asked[bounds]
            print(f"| {name} `{copy}` | {fingerprint.second.score(suspect).value:.3f} | "
                  f"{through.score(suspect).value:.3f} | {np.quantile(scores, 0.99):.3f} / {max(scores):.3f} |")


if __name__ == "__main__":
    main()
