"""The ablation that chose tafa's second stage: boundary-geometry variants, alone and after the first stage.

Each variant changes the boundary stage's measured directions ``K`` (the owner's normal and
``K - 1`` random directions; at most the input's dimension), how the lines' cosines are
aggregated (median or mean) and how each cosine is estimated from the ``K`` measured
components (``projected``: the cosine of the two K-vectors; ``full``: the whole-space cosine,
the orthogonal energy scaled by the dimensions the random directions stand for). Lines: as
many as 4,930-4,968 queries allow. Every variant runs alone and as the second stage of
``tafa`` (each stage at half of alpha; ``tafa-one-stage`` is the first stage alone), on the
zoos whose owners have a fully connected first layer (the only ones the default gives a
second stage). Printed per zoo and pooled per scenario: AUC and TPR at 1% FPR over the
copies keeping >= 90% of the owner's utility.

    python benchmarks/boundary_variants.py [--cache .tafa-cache/zoo] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from tafa.bench.run import run_benchmark
from tafa.scheme import get_scheme, register_scheme
from tafa.signature.kinks import Kinks

ZOOS = ("digits-mlp", "diabetes-mlp", "friedman-mlp", "digits-vae")


def _lines(k: int) -> int:
    """Lines a measurement of ``k`` directions finishes within its query budget."""
    kinks = Kinks()
    return kinks.budget // kinks.per_line(k)


def variants(quick: bool) -> list[str]:
    """Register the variants (alone, and as tafa's second stage); return the scheme names."""
    grid = [(8, "median", "projected"), (16, "mean", "full")] if quick else [
        (k, aggregation, estimate) for k in (8, 16, 24) for aggregation in ("median", "mean")
        for estimate in ("projected", "full")]
    names = ["tafa-one-stage"]
    base, first = get_scheme("tafa-boundary"), get_scheme("tafa")
    for k, aggregation, estimate in grid:
        name = f"bv-{k}-{aggregation}-{estimate}"
        register_scheme(replace(base, name=name, points=_lines(k), directions=k,
                                similarity_params={"estimate": estimate, "aggregation": aggregation}))
        register_scheme(replace(first, name=f"tafa+{name}", second=name))
        names += [name, f"tafa+{name}"]
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(".tafa-cache/zoo"))
    parser.add_argument("--out", type=Path, help="also write the bench report (results.json, results.md) here")
    parser.add_argument("--quick", action="store_true", help="two variants only (the first build and the default)")
    args = parser.parse_args()
    names = variants(args.quick)
    results = run_benchmark("full", schemes=names, out=args.out, cache=args.cache, jobs=1, progress=False,
                            zoo_filter=lambda spec: spec.name in ZOOS, n_boot=200,
                            command="benchmarks/boundary_variants.py")
    zoos = [name for name in results["scenarios"] if "pooled" not in name]
    pooled = [name for name in results["scenarios"] if "pooled" in name]
    columns = [name.split(": ")[-1] for name in zoos] + pooled
    print("AUC / TPR@1%FPR over the copies keeping >= 90% of the owner's utility\n")
    print("| scheme | " + " | ".join(columns) + " |")
    print("|:---|" + "---:|" * len(columns))
    for scheme in names:
        cells = []
        for scenario in zoos + pooled:
            kept = results["scenarios"][scenario]["schemes"].get(scheme, {}).get("utility_kept", {})
            cells.append(f"{kept.get('auc', float('nan')):.3f} / {kept.get('tpr_at_fpr_1pct', float('nan')):.2f}")
        print(f"| `{scheme}` | " + " | ".join(cells) + " |")
    print(f"\n{results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
