"""Can data-free inputs tell a regressor's distilled student from an independent regressor (issue 22
item 3, regression)?

A regressor has no confident inputs. Per regression zoo, the owner, its two students (distilled on
the owner's answers over the attacker's data), the calibration models and the scored independent
models are asked at 256 domain draws, the same shrunk towards the domain's centre (half and a quarter
of the box, nearer the standardised data) and the box's corners. Statistics of a model's answers
``g`` against the owner's ``f``: ``corr`` (their correlation over the inputs) and ``values`` (the
median of ``1 / (1 + |g - f| / s)``, ``s`` the owner's spread). Printed: the highest calibration
model, the students, and how many scored independent models lie above that highest one.

    python benchmarks/extraction_regression.py [--zoos diabetes-mlp friedman-mlp]
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


def statistics(owner: np.ndarray, answers: np.ndarray) -> tuple[float, float]:
    corr = float(np.corrcoef(owner, answers)[0, 1])
    values = float(np.median(1 / (1 + np.abs(owner - answers) / owner.std())))
    return corr, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for zoo_name in args.zoos:
        (spec,) = [spec for spec in FULL if spec.name == zoo_name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        shape = spec.input_shape
        domain = parse_domain(spec.domain, shape)
        draws = domain.sample(256, np.random.default_rng(0))
        styles = {"box": draws, "half box": 0.5 * draws, "quarter box": 0.25 * draws,
                  "corners": np.where(draws >= 0, domain.bounds()[1], domain.bounds()[0])}
        scored = zoo.with_role("scored")
        groups = {"calibration": [m for _, m in zoo.with_role("calibration")],
                  "students": [m for r, m in scored if r.family == "extraction"],
                  "independents": [m for r, m in scored if r.label == 0]}
        for style, x in styles.items():
            owner = TorchModel(zoo.owner, shape)(x).ravel()
            found = {name: [statistics(owner, TorchModel(m, shape)(x).ravel()) for m in models]
                     for name, models in groups.items()}
            for column, statistic in enumerate(("corr", "values")):
                top = max(row[column] for row in found["calibration"])
                students = " ".join(f"{row[column]:.3f}" for row in found["students"])
                above = sum(row[column] > top for row in found["independents"])
                print(f"{zoo_name:<13} {style:<11} {statistic:<6} calibration top {top:.3f} | students {students} | "
                      f"independents above it {above}/{len(found['independents'])}")


if __name__ == "__main__":
    main()
