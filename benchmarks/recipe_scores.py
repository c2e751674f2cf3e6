"""Per zoo and scheme of a finished `tafa bench` run: AUC, TPR at 1% FPR, the calibrated rule's
rates at alpha 0.01, and the scores of chosen recipes (in bold where the rule flags them).

    python benchmarks/recipe_scores.py bench-out/three/results.json [--recipes ft_all_large prune80 ...]
"""

from __future__ import annotations

import argparse
import json

HARD = ("ft_all_large", "ft_reinit_all_large", "prune80", "prune80_ft")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.json of a tafa bench run")
    parser.add_argument("--recipes", nargs="+", default=list(HARD))
    args = parser.parse_args()
    results = json.load(open(args.results))
    print("| zoo | scheme | AUC | TPR@1%FPR | rule TPR / FPR | " + " | ".join(args.recipes) + " |")
    print("|:---|:---|---:|---:|---:|" + "---:|" * len(args.recipes))
    for zoo, scenario in results["scenarios"].items():
        if "pooled" in zoo:
            continue
        for name, scheme in scenario["schemes"].items():
            scores = {row["model"]: row["score"] for row in scheme["scores"]}
            threshold = scheme["rule"]["threshold"]
            cells = " | ".join("-" if recipe not in scores else
                               (f"**{scores[recipe]:.2f}**" if scores[recipe] >= threshold else f"{scores[recipe]:.2f}")
                               for recipe in args.recipes)
            print(f"| {zoo.split(': ')[-1]} | {name} | {scheme['auc']:.3f} | {scheme['tpr_at_fpr_1pct']:.2f} | "
                  f"{scheme['rule']['tpr']:.2f} / {scheme['rule']['fpr']:.2f} | {cells} |")


if __name__ == "__main__":
    main()
