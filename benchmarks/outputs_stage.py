"""The outputs stage of regressors and decoders, behind the disturbances that swamp finite differences
(docs/method.md, "The outputs stage").

Per full-benchmark zoo (the two regressors and the decoder): the owner's copies plain and behind the
evasion families that add a disturbance to the answers (the sine ripples, the triangle wave, noise;
``tafa.attacks.evasion``), scored by the outputs stage (``tafa-outputs``: each output centred over 64
domain draws, ``|cosine|`` with the owner's), each cell ``score (k)`` with ``k`` the zoo's calibration
models scoring at or above it (0: above every one of them); then the highest calibration score and
how many of the scored independents score above the calibration models' 99th percentile.

    python benchmarks/outputs_stage.py [--cache .tafa-cache/zoo]     # about 30 s with the zoo cached
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import copies_behind
from tafa.bench.scenarios import cached_zoo
from tafa.fingerprint import OUTPUTS_STAGE
from tafa.models import TorchModel

ZOOS = ("diabetes-mlp", "friedman-mlp", "digits-vae")
COPIES = ("owner", "int8", "ft_all_small", "prune50_ft")
FAMILIES = ("ripple", "ripple_small", "triangle", "noise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print("| zoo | copy | plain | " + " | ".join(f"`{family}`" for family in FAMILIES) + " |")
    print("|:---|:---|" + "---:|" * (1 + len(FAMILIES)))
    notes = []
    for name in ZOOS:
        spec, zoo = cached_zoo(name, args.cache)
        stage = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain,
                                   scheme=OUTPUTS_STAGE, seed=0, second_stage=False, free_labels=False)
        references = np.array([stage.score(TorchModel(model, spec.input_shape)).value
                               for _, model in zoo.with_role("calibration")])
        for copy, models in copies_behind(zoo, COPIES, FAMILIES).items():
            cells = [cell(stage, references, model) for model in models]
            print(f"| {name} | `{copy}` | " + " | ".join(cells) + " |")
        independents = [stage.score(TorchModel(model, spec.input_shape)).value
                        for recipe, model in zoo.with_role("scored") if recipe.label == 0]
        notes.append(f"{name}: calibration models' highest {references.max():.3f}, 99th percentile "
                     f"{np.quantile(references, 0.99):.3f}; scored independents above it: "
                     f"{sum(v > np.quantile(references, 0.99) for v in independents)} of {len(independents)}")
    print()
    print("\n".join(notes))


def cell(stage: Fingerprint, references: np.ndarray, model) -> str:
    """``score (k)``: the model's score and how many references score at or above it."""
    value = stage.score(model).value
    return f"{value:.3f} ({int((references >= value).sum())})"


if __name__ == "__main__":
    main()
