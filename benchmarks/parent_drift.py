"""What a pirate's fine-tune leaves of an owner that is itself a fine-tune of a public parent
(issue 22 item 2, measured white-box: the ceiling of any evidence in the first layer).

Per shared-parent zoo of the full benchmark (from its cache), on the first weighted layer's weights
(``W``; the owner's ``O``, the parent's ``P``): how far each copy and each scored sibling lies from the
owner, in units of the owner's own fine-tune ``|O - P|``; and how much of the owner's own change the
copy keeps once the change every fine-tune of the task shares is taken out: the cosine between
``W - P - m`` and ``O - P - m``, ``m`` the mean change of the zoo's calibration siblings (each
calibration sibling against the mean of the others, its highest printed as the null's top).

    python benchmarks/parent_drift.py [--zoos digits-mlp-parent friedman-mlp-parent digits-vae-parent]   # 20 s
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tafa.bench.scenarios import cached_zoo
from tafa.weights.layers import unit_layers


def first_layer(module: torch.nn.Module) -> np.ndarray:
    """The first weighted layer's weights (BatchNorm folded, biases left out), flattened."""
    return unit_layers(module, max_layers=1)[0].vectors[:, :-1].reshape(-1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp-parent", "friedman-mlp-parent", "digits-vae-parent"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        scored = {recipe.name: (recipe, model) for recipe, model in zoo.with_role("scored")}
        parent, owner = first_layer(scored["parent"][1]), first_layer(zoo.owner)
        change = owner - parent
        size = float(np.linalg.norm(change))
        siblings = np.array([first_layer(m) - parent for _, m in zoo.with_role("calibration")])
        common = siblings.mean(axis=0)
        n = len(siblings)
        others = [(common * n - siblings[i]) / (n - 1) for i in range(n)]  # each sibling against the rest
        null = max(cosine(siblings[i] - others[i], change - others[i]) for i in range(n))
        scored_siblings = [float(np.linalg.norm(first_layer(m) - owner)) / size for key, (r, m) in scored.items()
                           if r.label == 0 and key != "parent"]
        print(f"\n{name}: the siblings' mean change has cosine {cosine(common, change):.2f} with the owner's; the "
              f"owner's own part (its change less that mean) is {np.linalg.norm(change - common) / size:.2f} of its "
              f"change; the scored siblings lie {min(scored_siblings):.2f}-{max(scored_siblings):.2f} (median "
              f"{np.median(scored_siblings):.2f}) times |O - P| from the owner; a calibration sibling keeps at most "
              f"{null:.2f} of the owner's own part")
        print("| copy | distance to the owner (owner's fine-tunes) | owner's own part kept (cosine) |")
        print("|:---|---:|---:|")
        for key, (recipe, model) in scored.items():
            weights = first_layer(model)
            if recipe.label == 1 and weights.shape == owner.shape:
                print(f"| `{key}` | {np.linalg.norm(weights - owner) / size:.2f} | "
                      f"{cosine(weights - parent - common, change - common):+.2f} |")


if __name__ == "__main__":
    main()
