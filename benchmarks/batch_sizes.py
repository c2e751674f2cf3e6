"""Does the boundary geometry's score depend on how its queries are batched? (session 24)

``tafa verify`` asks the geometry stage's lines a few at a time (the first 4, then one per look:
:func:`tafa.decide.sequential.stops`); a model's last bits can depend on the size of its batch. Per
zoo (the benchmark's cache, the default fingerprint, seed 0), every plain scored model's stage score
asked in one batch (:meth:`Fingerprint.score`) and line by line, never stopped
(:meth:`Fingerprint.score_until` without a threshold, as references are asked since session 24):
how many models' scores differ at all, by how much at most, and which.

    python benchmarks/batch_sizes.py [--zoos diabetes-mlp friedman-mlp]   # 1 minute
"""

from __future__ import annotations

import argparse

from tafa import Fingerprint
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print("| zoo | models | scores that differ | largest difference | lines that differ "
          "| which (one batch -> line by line) |")
    print("|:---|---:|---:|---:|---:|:---|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, shape, name="owner"), spec.domain, seed=0)
        stage = fingerprint.second
        assert stage is not None, f"{name}: no geometry stage"
        differ, lines, largest, which = 0, 0, 0.0, []
        models = zoo.plain()
        for recipe, model in models:
            whole = stage.score(TorchModel(model, shape))
            looked, _ = stage.score_until(TorchModel(model, shape), None)
            if whole.value != looked.value:
                differ += 1
                lines += int((whole.per_point != looked.per_point).sum())
                largest = max(largest, abs(whole.value - looked.value))
                which.append(f"`{recipe.name}` {whole.value:.4f} -> {looked.value:.4f}")
        print(f"| {name} | {len(models)} | {differ} | {largest:.3g} | {lines} | {', '.join(which) or '-'} |",
              flush=True)


if __name__ == "__main__":
    main()
