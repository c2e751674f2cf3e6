"""What the second stage's queries buy (issue 22 item 4, measured, not built).

The default's second stage (`tafa-boundary`: 29 lines, 16 measured directions, a 47-cell scan and 4
bisections: 170 queries a line, up to 4,930) runs on every suspect the first stage does not judge
derived. For cheaper variants (fewer lines, directions or scan cells; more bisections keep the kink's
bracket as narrow), this prints per zoo: the queries, the two-stage rule's true- and false-positive
rates over the zoo's scored models at alpha 0.05 and 0.01 (each stage's threshold at half of alpha,
by rank, from the zoo's calibration models, the largest of them when they are too few), and the
second stage's AUC alone. The first stage is the default's. A variant is ``LINESxDIRECTIONS:CELLS:
BISECTIONS``.

    python benchmarks/second_stage_cost.py          # 4 zoos and the 3 shared-parent zoos, about a minute
    python benchmarks/second_stage_cost.py --zoos digits-mlp --variants 29x16:47:4 12x16:47:4
    python benchmarks/second_stage_cost.py --looks 0.5 1 1.5 2   # the default stage stopped once out of reach
    python benchmarks/second_stage_cost.py --looks 1 --then 4 2 1   # looked at every 4, 2 or 1 lines after the first 4

``--looks K...``: the default stage measured a few lines at a time and stopped once its threshold is
out of reach (:mod:`tafa.decide.sequential`, at each value of its ``REACH`` given, the default 1, and
each ``--then``: lines per look after the first 4, the default 1): per zoo and alpha, the rule's
TPR / FPR measured whole and stopped, the copies the stopping loses, and the share of the stage's
lines measured on the independent models it runs on (the first stage not firing).

The rule here is a simplified one (no copy line, no parametric tail): `tafa bench` gives the full
figures of a variant once it is the registered stage. Reads the zoos from the benchmark's cache.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from itertools import product
from math import ceil
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.decide.sequential import THEN, measured_part
from tafa.models import TorchModel
from tafa.scheme import get_scheme

ZOOS = ["diabetes-mlp", "friedman-mlp", "digits-vae", "digits-mlp", "digits-mlp-parent", "friedman-mlp-parent",
        "digits-vae-parent"]
VARIANTS = ["29x16:47:4", "12x16:47:4", "20x8:23:5", "29x8:11:6", "29x16:11:6"]


def threshold(references: np.ndarray, alpha: float) -> float:
    """The rank threshold at ``alpha`` (the largest reference when they are too few)."""
    ordered = np.sort(references)
    k = ceil((len(ordered) + 1) * (1 - alpha))
    return float(ordered[min(k, len(ordered)) - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=ZOOS)
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--looks", nargs="+", type=float, default=[],
                        help="REACH values: the default stage stopped once out of reach (see above)")
    parser.add_argument("--then", nargs="+", type=int, default=[THEN],
                        help="with --looks: lines per look after the first look (see above)")
    args = parser.parse_args()
    if args.looks:
        stopped(args.zoos, args.looks, args.then, Path(args.cache))
        return
    base = get_scheme("tafa-boundary")
    print("| zoo | variant | queries | rule TPR / FPR at 0.05 | at 0.01 | second stage AUC |")
    print("|:---|:---|---:|---:|---:|---:|")
    for name in args.zoos:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        first_stage = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)
        rows = [(recipe, model, role) for role in ("scored", "calibration") for recipe, model in zoo.with_role(role)]
        models = [TorchModel(model, spec.input_shape, name=recipe.name) for recipe, model, _ in rows]
        first = np.array([first_stage.score(model).value for model in models])
        calibration = np.array([role == "calibration" for _, _, role in rows])
        labels = np.array([recipe.label for recipe, _, _ in rows])
        positive, negative = ~calibration & (labels == 1), ~calibration & (labels == 0)
        for variant in args.variants:
            size, cells, bisections = variant.split(":")
            lines, directions = (int(v) for v in size.split("x"))
            scheme = replace(base, name=f"tafa-boundary-{variant}", points=lines, directions=directions,
                             signature_params={"cells": int(cells), "bisections": int(bisections)})
            stage = Fingerprint.create(owner, spec.domain, scheme=scheme, seed=0)
            second = np.array([stage.score(model).value for model in models])
            rates = []
            for alpha in (0.05, 0.01):
                fires = (first > threshold(first[calibration], alpha / 2)) | \
                        (second > threshold(second[calibration], alpha / 2))
                rates.append(f"{fires[positive].mean():.2f} / {fires[negative].mean():.2f}")
            pos, neg = second[positive], second[negative]
            auc = float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
            print(f"| {name} | {variant} | {stage.queries()} | {rates[0]} | {rates[1]} | {auc:.3f} |")


def stopped(zoos: list[str], reaches: list[float], every: list[int], cache: Path) -> None:
    """The default stage stopped once out of reach, at each of ``reaches`` and looked at every
    ``every`` lines after the first look (module doc)."""
    print("| zoo | REACH | lines per look | alpha | rule TPR / FPR whole | stopped | copies lost "
          "| lines measured on independents |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|")
    for name in zoos:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], cache, progress=False, roles=["scored", "calibration"])
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        fingerprint = Fingerprint.create(owner, spec.domain, seed=0)
        assert fingerprint.second is not None, f"{name}: no second stage"
        rows = [(recipe, model, role) for role in ("scored", "calibration") for recipe, model in zoo.with_role(role)]
        models = [TorchModel(model, spec.input_shape, name=recipe.name) for recipe, model, _ in rows]
        first = np.array([fingerprint.score(model).value for model in models])
        lines = [fingerprint.second.score(model).per_point for model in models]
        second = np.array([values.mean() for values in lines])
        calibration = np.array([role == "calibration" for _, _, role in rows])
        labels = np.array([recipe.label for recipe, _, _ in rows])
        positive, negative = ~calibration & (labels == 1), ~calibration & (labels == 0)
        for reach, then in product(reaches, every):
            for alpha in (0.05, 0.01):
                cut = threshold(second[calibration], alpha / 2)
                parts = [measured_part(values, cut, reach, then=then) for values in lines]
                runs = ~(first > threshold(first[calibration], alpha / 2))
                whole = ~runs | (second > cut)
                early = ~runs | (np.array([part.mean() for part in parts]) > cut)
                measured = np.array([len(part) / len(values) for part, values in zip(parts, lines)])
                print(f"| {name} | {reach:g} | {then} | {alpha:g} | "
                      f"{whole[positive].mean():.2f} / {whole[negative].mean():.2f} | "
                      f"{early[positive].mean():.2f} / {early[negative].mean():.2f} | "
                      f"{int((whole & ~early & positive).sum())} | {measured[negative & runs].mean():.2f} |")


if __name__ == "__main__":
    main()
