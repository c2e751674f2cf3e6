"""A pirate with a detector of the task's data (issue 21, "honest where impossible"): how strong must
the detector be to hide a copy from the evasion check, and what does the owner's own data change?

The digits MLP zoo of the full benchmark (from its cache): the owner's int8 copy is served behind
:class:`tafa.attacks.evasion.DensityRouter`, a Gaussian density model fitted to the pirate's digits
(the half the owner did not train on) that answers every input less likely than its ``quantile`` of
those digits from a decoy (a scored independent model). Stricter detectors (a larger quantile) turn
away more of the pirate's own users. Printed per quantile: the share of the owner's held-out digits
the copy answers (what the pirate's users keep), the share of the fingerprint's queries and of the
check's data-free starting points (rest point, data-like inputs) the copy answers, and how often the
evasion check (:func:`tafa.signature.consistency.check_evasion`, seeds 0..N-1) flags the service,
made from the domain alone and started from the owner's own digits (``tafa verify --owner-data``).

    python benchmarks/density_router.py [--seeds 10] [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.attacks.evasion import DensityRouter
from tafa.bench.datasets import load_task
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.domain import parse_domain
from tafa.models import TorchModel
from tafa.signature.consistency import check_evasion, data_like, rest_point

QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    started = time.perf_counter()
    (spec,) = [spec for spec in FULL if spec.name == "digits-mlp"]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored"])
    decoy_module = next(model for recipe, model in zoo.with_role("scored") if recipe.label == 0)
    shape = spec.input_shape
    copy, decoy = TorchModel(quantize(zoo.owner, 8), shape, name="int8 copy"), TorchModel(decoy_module, shape)
    task = load_task("digits")
    pirate, owner_digits = task.split("other").x.numpy(), task.split("owner").x.numpy()
    fingerprint = Fingerprint.create(TorchModel(zoo.owner, shape), spec.domain, seed=0, second_stage=False)
    inputs = fingerprint.scheme.make_signature().inputs(fingerprint.probes)
    domain = parse_domain(spec.domain, shape)
    free_starts = np.concatenate([rest_point(domain), data_like(domain, 400, np.random.default_rng(0))])
    print("| detector quantile | users' digits answered by the copy | fingerprint queries by the copy | "
          "data-free starts by the copy | flagged, domain alone | flagged, with the owner's digits |")
    print("|---:|---:|---:|---:|---:|---:|")
    for quantile in QUANTILES:
        served = DensityRouter(copy, decoy, pirate, quantile=quantile)
        kept = 1 - served.route(owner_digits).mean()
        answers = served(inputs)
        flagged = [sum(check_evasion(served, inputs, answers, domain, anchors=anchors, seed=seed).evasive
                       for seed in range(args.seeds)) for anchors in (None, owner_digits)]
        print(f"| {quantile:g} | {kept:.3f} | {1 - served.route(inputs).mean():.3f} | "
              f"{1 - served.route(free_starts.astype(np.float32)).mean():.3f} | {flagged[0]}/{args.seeds} | "
              f"{flagged[1]}/{args.seeds} |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
