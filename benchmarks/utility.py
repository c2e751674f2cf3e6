"""What the copies the fingerprints miss are still worth: each scored model's utility beside
its score, per zoo (classification: accuracy; regression: R^2), from the zoo cache of a
finished `tafa bench` run.

Utility is measured on the owner's half of the data (what the owner trained on and would
test a suspect with) and on the other half (the attacker's and independent developers'
data). A copy the fingerprint misses matters less if it has lost what made the owner's model
worth stealing. Generation zoos have no label to score and are skipped.

    python benchmarks/utility.py bench-out/full/results.json [--scheme tafa] [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos


def utility(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, objective: str) -> float:
    with torch.no_grad():
        out = model.eval()(torch.as_tensor(x)).numpy()
    if objective == "classify":
        return float(np.mean(out.argmax(1) == y))
    return float(1.0 - np.sum((out - y) ** 2) / np.sum((y - y.mean()) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.json of a full tafa bench run")
    parser.add_argument("--scheme", default="tafa")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.load(open(args.results))
    specs = [spec for spec in FULL if spec.latent is None]
    for zoo in build_zoos(specs, args.cache, progress=False):
        spec = zoo.spec
        scenario = results["scenarios"].get(f"{spec.scenario}: {spec.name}")
        if scenario is None or args.scheme not in scenario["schemes"]:
            continue
        rows = {r["model"]: r for r in scenario["schemes"][args.scheme]["scores"]}
        halves = {part: spec.data(part) for part in ("owner", "other")}

        def of(model: torch.nn.Module) -> tuple[float, float]:
            return tuple(utility(model, np.asarray(h.x), np.asarray(h.y), h.objective) for h in halves.values())

        owner = of(zoo.owner)
        negatives = [r["score"] for r in rows.values() if r["label"] == 0]
        top = max(negatives)
        metric = "accuracy" if halves["owner"].objective == "classify" else "R^2"
        print(f"\n{spec.name}: {metric} on the owner's half / the other half; `{args.scheme}` score; "
              f"owner {owner[0]:.3f} / {owner[1]:.3f}; highest independent score {top:.3f}")
        print(f"{'model':32s} {'family':20s} {'owner half':>10s} {'other half':>10s} {'score':>7s}  missed")
        for name, row in sorted(rows.items(), key=lambda kv: (-kv[1]["label"], kv[1]["score"])):
            mine, theirs = of(zoo.models[name])
            missed = "yes" if row["label"] == 1 and row["score"] <= top else ""
            print(f"{name[:32]:32s} {row['family'][:20]:20s} {mine:10.3f} {theirs:10.3f} {row['score']:7.3f}  {missed}")


if __name__ == "__main__":
    main()
