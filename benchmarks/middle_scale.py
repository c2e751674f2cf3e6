"""A scale between the fine and the coarse step for disturbed regressors (issue 21, measured, not
built): does the first stage's derivative cosine at a middle step find the pruned-and-fine-tuned
copies behind a ripple, a triangle wave or a rounding that the coarse scale misses?

Per zoo (from the benchmark's cache; regressors and the decoder), the owner's fingerprint (the
default scheme, seed 0) and its probes at ``MULTIPLE`` times their own step (the coarse step is about
70 times it); each model's derivative cosine with the owner's there (the owner asked at the same
step, as a fingerprint storing the scale would hold it). The zoo's evasion and interface rows behind
the disturbances the coarse scale decides are scored four ways: the coarse scale as it decides today
(the mean of its averaged differences' cosine and its smoothed outputs' ``|cosine|``), that mean with
the middle step's cosine as a third part, the middle step alone, and the coarse differences with the
middle step. Printed per zoo and way: copies above every calibration model (alpha 0.01 by rank with
the 100 calibration models), the independents above them, and the copies missed, each with how
many calibration models score at or above it.

    python benchmarks/middle_scale.py [--zoos diabetes-mlp friedman-mlp digits-vae] [--multiple 16]   # 2 minutes
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel
from tafa.signature.scales import coarse_probes

FAMILIES = ("ripple", "ripple_small", "triangle", "noise", "round1", "pixels8")
#: Parts of each way: 0 the coarse differences, 1 the smoothed outputs, 2 the middle step.
WAYS = {"coarse scale today": [0, 1], "with the middle step": [0, 1, 2], "middle step alone": [2],
        "coarse differences and middle step": [0, 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp", "digits-vae"])
    parser.add_argument("--multiple", type=float, default=16.0)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        table(name, args.multiple, args.cache)


def table(name: str, multiple: float, cache: str) -> None:
    """One zoo's lines (module doc)."""
    spec, zoo = cached_zoo(name, cache)
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    fingerprint = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)
    coarse = fingerprint.coarse_stage(averaged=True)
    assert coarse is not None
    measurement, similarity = fingerprint.scheme.make_signature(), fingerprint.scheme.make_similarity()
    middle = coarse_probes(fingerprint.probes, fingerprint.probes.steps * multiple)
    inputs = measurement.inputs(middle)
    at_middle = measurement.assemble(middle, owner(inputs))

    def parts(model) -> list[float]:
        score = coarse.score(model)
        mid = similarity.compare(at_middle, measurement.assemble(middle, model(inputs))).value
        return [score.parts.get("differences", score.value), score.parts.get("smoothed", np.nan), mid]

    references = np.array([parts(TorchModel(m, spec.input_shape)) for _, m in zoo.with_role("calibration")])
    rows = [(row[0], row[1], parts(row[3])) for row in evasion_suspects(zoo) + interface_suspects(zoo)
            if row[2].split("/")[1] in FAMILIES]
    print(f"\n{name}: the middle step is {multiple:g} times the first stage's; {len(references)} calibration models")
    print("| way | copies above every calibration model | independents above them | copies missed (models at "
          "or above) |")
    print("|:---|---:|---:|:---|")
    for way, columns in WAYS.items():
        against = np.nanmean(references[:, columns], axis=1)
        top = against.max()
        values = [(row, label, float(np.nanmean(np.asarray(p)[columns]))) for row, label, p in rows]
        caught = sum(1 for _, label, v in values if label == 1 and v > top)
        copies = sum(label for _, label, _ in values)
        false = sum(1 for _, label, v in values if label == 0 and v > top)
        missed = ", ".join(f"`{row}` ({int((against >= v).sum())})" for row, label, v in values
                           if label == 1 and v <= top)
        print(f"| {way} | {caught} of {copies} | {false} of {len(values) - copies} | {missed or 'none'} |")


if __name__ == "__main__":
    main()
