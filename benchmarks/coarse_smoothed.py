"""The coarse scale's smoothed outputs: what each part of its score sees behind a disturbance.

For an owner answering a single value or an image (the regressors, the decoder), the coarse scale
that decides rough, rippled or rounded suspects scores the mean of two parts read from the same
answers (docs/method.md, "The coarse scale's smoothed outputs"): the averaged derivatives' cosine
(the score before) and the ``|cosine|`` of the outputs averaged over each probe's 32 jittered steps,
centred over the probes. Per zoo: the owner and three of its copies behind the disturbances of the
evasion and interface families the coarse scale decides, each cell ``derivatives / smoothed /
score (k)`` with ``k`` the zoo's calibration models scoring at or above the score (0: above every
one of them); then the calibration models' highest score and the scored independents behind the
same families above it.

    python benchmarks/coarse_smoothed.py [--zoos diabetes-mlp friedman-mlp digits-vae]   # about 30 s
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel

FAMILIES = ("ripple", "ripple_small", "triangle", "noise", "round1", "pixels8")


def parts(stage: Fingerprint, model) -> tuple[float, float, float]:
    """The averaged derivatives' score, the smoothed outputs' and the coarse scale's (their mean)."""
    score = stage.score(model)
    return score.parts.get("differences", score.value), score.parts.get("smoothed", float("nan")), score.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp", "digits-vae"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain, seed=0,
                                         second_stage=False)
        stage = fingerprint.coarse_stage(averaged=True)
        assert stage is not None
        references = np.array([parts(stage, TorchModel(model, spec.input_shape))[2]
                               for _, model in zoo.with_role("calibration")])
        rows = [row for row in evasion_suspects(zoo) + interface_suspects(zoo)
                if row[2].split("/")[1] in FAMILIES]
        families = [f for f in FAMILIES if any(row[2] == f"{kind}/{f}" for row in rows
                                               for kind in ("evasion", "interface"))]
        print(f"\n{name}: {len(references)} calibration models, highest score {references.max():.3f}")
        print("| copy | " + " | ".join(f"`{family}`" for family in families) + " |")
        print("|:---|" + "---:|" * len(families))
        by_row = {(row[0].split("%")[0].split("@")[0], row[2].split("/")[1]): row for row in rows if row[1] == 1}
        for copy in ("owner", "int8", "ft_all_small", "prune50_ft"):
            cells = []
            for family in families:
                row = by_row.get((copy, family))
                if row is None:
                    cells.append("-")
                    continue
                derivatives, smoothed, value = parts(stage, row[3])
                cells.append(f"{derivatives:.3f} / {smoothed:.3f} / {value:.3f} ({int((references >= value).sum())})")
            print(f"| `{copy}` | " + " | ".join(cells) + " |")
        independents = [parts(stage, row[3])[2] for row in rows if row[1] == 0]
        print(f"scored independents behind these families above every calibration model: "
              f"{sum(v > references.max() for v in independents)} of {len(independents)}")


if __name__ == "__main__":
    main()
