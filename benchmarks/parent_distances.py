"""How close to the owner are its copies, and its siblings, in a shared-parent zoo (issue 22 item 2)?

In a shared-parent zoo the owner fine-tunes a public parent, and the negatives are *siblings*: the
same parent fine-tuned by others. A test that judges a suspect derived because it is close to the
owner (in its weights, its outputs or its boundaries) can only rank a copy above the siblings
that are farther from the owner than it. This prints, per parent zoo and per scored copy:

- ``weights``: the relative distance ``|S - O| / |O|`` over all parameters (models of the owner's
  architecture whose units keep their order; ``-`` for the others, e.g. a permuted copy);
- ``outputs``: the relative RMS distance of the outputs at the task's own inputs (all of its data;
  classifiers' logits centred per input, as a softmax sees them; the decoder at latent draws);
- ``siblings closer``: how many of the zoo's calibration siblings are closer to the owner than the
  copy, by each distance;
- with ``--results``, the copy's decision by the default (``tafa``) at alpha 0.01 in that benchmark
  run (``derived`` or not), as evidence in decades against the zoo's calibration models.

The summary line per zoo: the siblings' range, and how many kept copies (>= 90% of the owner's
utility, from the run's utility) are farther from the owner than every sibling, by outputs.

    python benchmarks/parent_distances.py --results bench-out/s14-seq/results.json   # 20 s, zoo cached
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tafa.bench.datasets import load_task
from tafa.bench.scenarios import PARENT_ZOOS
from tafa.bench.zoo import build_zoos


def _parameters(model: torch.nn.Module) -> list[np.ndarray]:
    return [p.detach().double().numpy() for p in model.parameters()]


def weight_distance(model: torch.nn.Module, owner: torch.nn.Module) -> float:
    """``|S - O| / |O|`` over all parameters (NaN when the shapes differ)."""
    s, o = _parameters(model), _parameters(owner)
    if [a.shape for a in s] != [b.shape for b in o]:
        return float("nan")
    return float(np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(s, o)) / sum((b ** 2).sum() for b in o)))


def outputs(model: torch.nn.Module, inputs: np.ndarray, centred: bool) -> np.ndarray:
    with torch.no_grad():
        values = model(torch.as_tensor(inputs)).double().numpy().reshape(len(inputs), -1)
    return values - values.mean(axis=1, keepdims=True) if centred else values


def distances_to(owner: torch.nn.Module, inputs: np.ndarray, centred: bool,
                 model: torch.nn.Module) -> tuple[float, float]:
    """The model's weight and output distances to the owner's (module doc)."""
    own = outputs(owner, inputs, centred)
    out = float(np.sqrt(((outputs(model, inputs, centred) - own) ** 2).mean() / (own ** 2).mean()))
    return weight_distance(model, owner), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=[spec.name for spec in PARENT_ZOOS])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--results", default=None, help="a tafa bench results.json: each copy's decision there")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())["scenarios"] if args.results else {}
    for name in args.zoos:
        (spec,) = [spec for spec in PARENT_ZOOS if spec.name == name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        if spec.latent is not None:
            inputs = np.random.default_rng(0).normal(size=(2000, spec.latent)).astype(np.float32)
        else:
            inputs = load_task(spec.task).x
        centred = spec.scenario == "classification"
        distances = partial(distances_to, zoo.owner, inputs, centred)
        siblings = np.array([distances(model) for recipe, model in zoo.with_role("calibration")])
        run = results.get(f"{spec.scenario}: {name}", {}).get("schemes", {}).get("tafa", {})
        recipes = run.get("per_recipe", {})
        print(f"\n## {name}: {len(siblings)} calibration siblings, weights {np.nanmin(siblings[:, 0]):.3f}-"
              f"{np.nanmax(siblings[:, 0]):.3f}, outputs {siblings[:, 1].min():.3f}-{siblings[:, 1].max():.3f} "
              "(relative distance to the owner)\n")
        print("| copy | utility | weights | siblings closer | outputs | siblings closer | tafa derived at 0.01 |")
        print("|:---|---:|---:|---:|---:|---:|:---|")
        beyond = kept = caught = 0
        for recipe, model in zoo.with_role("scored"):
            if recipe.label != 1:
                continue
            weights, out = distances(model)
            known = recipes.get(recipe.name, {})
            utility = known.get("median_utility", float("nan"))
            closer_w = "-" if np.isnan(weights) else str(int(np.sum(siblings[:, 0] < weights)))
            closer_o = int(np.sum(siblings[:, 1] < out))
            detected = known.get("detection", {}).get("0.01")
            if utility >= 0.9:
                kept += 1
                beyond += closer_o == len(siblings)
                caught += bool(detected) and closer_o == len(siblings)
            print(f"| {recipe.name} | {utility:.2f} | {'-' if np.isnan(weights) else f'{weights:.3f}'} | {closer_w} | "
                  f"{out:.3f} | {closer_o} | {'-' if detected is None else ('yes' if detected else 'no')} |")
        print(f"\nkept copies (>= 90% utility) farther from the owner's outputs than every sibling: {beyond} of {kept} "
              f"(of them judged derived by tafa at 0.01: {caught})")


if __name__ == "__main__":
    main()
