"""How many calls (requests, for a service) one verification sends, beside how many queries (session 28).

A service on the network answers each call after a round trip, so a verification's time there is
the number of its calls times the latency, whatever the size of each. Per zoo (the benchmark's
cache, the default fingerprint, seed 0), the owner's independent models of the first role
verified with no references (every stage measured: the most a suspect can be asked), counting the
calls each model's ``_forward`` receives and the queries in them.

    python benchmarks/calls_per_verify.py [--zoos digits-mlp diabetes-mlp] [--models 3]   # 1 minute
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa import Fingerprint
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel


class Counted(TorchModel):
    """A torch model that counts the calls it answers."""

    calls = 0

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return super()._forward(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "diabetes-mlp"])
    parser.add_argument("--models", type=int, default=3, help="independent models per zoo")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print("| zoo | model | calls | queries | queries per stage |")
    print("|:---|:---|---:|---:|:---|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, shape, name="owner"), spec.domain, seed=0)
        independents = [(recipe, model) for recipe, model in zoo.plain() if recipe.label == 0]
        for recipe, model in independents[:args.models]:
            suspect = Counted(model, shape, name=recipe.name)
            verdict = fingerprint.verify(suspect)
            stages = ", ".join(f"{s['name']} {s['queries']}" for s in verdict.to_dict()["stages"])
            print(f"| {name} | `{recipe.name}` | {suspect.calls} | {suspect.queries} | {stages} |", flush=True)


if __name__ == "__main__":
    main()
