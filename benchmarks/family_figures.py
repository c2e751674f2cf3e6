"""Figures of a ``tafa bench`` run split by kind of row: the plain models (post-processing only,
comparable with runs before the interface and evasion families), and every interface and
evasion family on its own (the calibrated rule's detection of the copies, and its false-positive
rate on the independents served the same way, with exact 95% intervals; and the family's kept copies'
TPR at 1% FPR by evidence, against every independent of the scenario and against the family's own
independents alone), and the distilled
students (extraction) against the plain independents, all and utility-gated.

    python benchmarks/family_figures.py bench-out/s6-tafa/results.json [--scheme tafa]

``--zoos NAME...`` prints, instead, per zoo (its plain rows): the kept copies' AUC and TPR at 1% FPR
against the plain independents, the kept copies the calibrated rule catches at α = 0.05 / 0.01, and
the plain independents it judges derived, and the kept copies missed at 1% FPR:

    python benchmarks/family_figures.py bench-out/s19-full/results.json --zoos digits-cnn mnist-lenet mnist-resnet
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from tafa.bench import metrics

KINDS = ("interface/", "evasion/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--scheme", default="tafa")
    parser.add_argument("--zoos", nargs="+", help="per-zoo figures of these zoos instead")
    args = parser.parse_args()
    results = json.load(open(args.results))
    if args.zoos:
        per_zoo(results, args.scheme, args.zoos)
        return
    print("| scenario | plain rows: derived / independent | AUC | TPR@1%FPR | kept copies (>= 90% utility): AUC / "
          "TPR@1%FPR (n) |")
    print("|:---|---:|---:|---:|---:|")
    pooled = {name: entry for name, entry in results["scenarios"].items() if "pooled" in name}
    for name, entry in pooled.items():
        row = entry["schemes"].get(args.scheme)
        if row is None:
            continue
        plain = [s for s in row["scores"] if not s["family"].startswith(KINDS)]
        value = "evidence" if row.get("ranked_on") == "evidence" else "score"
        pos = [s[value] for s in plain if s["label"] == 1 and s["family"] != "extraction"]
        neg = [s[value] for s in plain if s["label"] == 0]
        kept = [s[value] for s in plain if s["label"] == 1 and s["family"] != "extraction"
                and np.isfinite(s["utility"]) and s["utility"] >= 0.9]
        print(f"| {name} | {len(pos)} / {len(neg)} | {metrics.roc_auc(pos, neg):.3f} | "
              f"{metrics.tpr_at_fpr(pos, neg, 0.01):.2f} | {metrics.roc_auc(kept, neg):.3f} / "
              f"{metrics.tpr_at_fpr(kept, neg, 0.01):.2f} ({len(kept)}) |")
    plain_rule(pooled, args.scheme)
    print("\n| scenario | family | copies caught α=0.05 / 0.01 (n) | independents judged derived α=0.05 [95% CI] "
          "/ 0.01 (n) | kept copies: TPR@1%FPR, every independent / the family's (n) |")
    print("|:---|:---|---:|---:|---:|")
    for name, entry in pooled.items():
        row = entry["schemes"].get(args.scheme)
        if row is None:
            continue
        caught: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for recipe in row["per_recipe"].values():
            if recipe["family"].startswith(KINDS):
                for alpha, rate in recipe["detection"].items():
                    caught[recipe["family"]][alpha] += [rate] * recipe["n"]
        for family in caught:
            counts = [row["rules"][alpha]["families"].get(family + "/independent") for alpha in ("0.05", "0.01")]
            n = len(caught[family]["0.05"])
            fp = "-" if counts[0] is None else (
                f"{counts[0]['false_positives']}/{counts[0]['n']} [{counts[0]['ci'][0]:.2f}, {counts[0]['ci'][1]:.2f}]"
                f" / {counts[1]['false_positives']}/{counts[1]['n']}")
            print(f"| {name.removesuffix(' (pooled)')} | {family} | {np.mean(caught[family]['0.05']):.2f} / "
                  f"{np.mean(caught[family]['0.01']):.2f} ({n}) | {fp} | {ranked(row, family)} |")
    extraction(results, args.scheme)


def ranked(row: dict, family: str) -> str:
    """The kept copies (>= 90% utility) of ``family`` ranked by evidence: TPR at 1% FPR against every
    independent row of the scenario (plain, interface and evasion), and against the independents served
    through the same family alone (the innocent services of that interface or wrapper). A ranking: a
    router's "evasive" verdict is a decision, not a score, so it counts in the rule's columns only."""
    value = "evidence" if row.get("ranked_on") == "evidence" else "score"
    kept = [s[value] for s in row["scores"] if s["label"] == 1 and s["family"] == family
            and np.isfinite(s["utility"]) and s["utility"] >= 0.9]
    every = [s[value] for s in row["scores"] if s["label"] == 0]
    own = [s[value] for s in row["scores"] if s["label"] == 0 and s["family"] == family + "/independent"]
    if not kept or not own:
        return "-"
    return (f"{metrics.tpr_at_fpr(kept, every, 0.01):.2f} / {metrics.tpr_at_fpr(kept, own, 0.01):.2f} "
            f"({len(kept)}; {len(every)} / {len(own)})")


def per_zoo(results: dict, scheme: str, zoos: list[str]) -> None:
    """Per zoo, its plain rows: the kept copies' (>= 90% utility, students left out) AUC and TPR at 1%
    FPR against the plain independents, the kept copies the rule catches at each alpha, and the plain
    independents it judges derived."""
    print("| zoo | kept copies: AUC / TPR@1%FPR (n) | kept copies caught α=0.05 / 0.01 | plain independents judged "
          "derived α=0.05 / 0.01 (n) | kept copies missed at 1% FPR |")
    print("|:---|---:|---:|---:|:---|")
    for zoo in zoos:
        name = next((n for n in results["scenarios"] if n.split(": ", 1)[-1] == zoo), None)
        row = None if name is None else results["scenarios"][name]["schemes"].get(scheme)
        if row is None:
            print(f"| {zoo} | - | - | - | - |")
            continue
        value = "evidence" if row.get("ranked_on") == "evidence" else "score"
        plain = [s for s in row["scores"] if not s["family"].startswith(KINDS)]
        neg = [s[value] for s in plain if s["label"] == 0]
        rows = [s for s in plain if s["label"] == 1 and s["family"] != "extraction"
                and np.isfinite(s["utility"]) and s["utility"] >= 0.9]
        kept = [s[value] for s in rows]
        allowed = int(np.floor(0.01 * len(neg) + 1e-9))  # the best threshold at 1% FPR: that many negatives above it
        line = float(np.sort(neg)[::-1][allowed]) if allowed < len(neg) else -np.inf
        missed = ", ".join(f"`{s['model']}`" for s in rows if s[value] <= line) or "none"
        recipes = [r for r in row["per_recipe"].values()
                   if not r["family"].startswith(KINDS) and r["family"] != "extraction" and r["kept"] > 0]
        caught = [np.average([r["detection"][a] for r in recipes], weights=[r["n"] * r["kept"] for r in recipes])
                  for a in ("0.05", "0.01")]
        false = [sum(v["false_positives"] for f, v in row["rules"][a]["families"].items() if not f.startswith(KINDS))
                 for a in ("0.05", "0.01")]
        print(f"| {zoo} | {metrics.roc_auc(kept, neg):.3f} / {metrics.tpr_at_fpr(kept, neg, 0.01):.2f} ({len(kept)}) | "
              f"{caught[0]:.2f} / {caught[1]:.2f} | {false[0]} / {false[1]} ({len(neg)}) | {missed} |")


def plain_rule(pooled: dict, scheme: str) -> None:
    """Per pooled scenario, the calibrated rule on the plain rows: the post-processed copies it judges
    derived (students left out) and the plain independents it judges derived, at each alpha."""
    print("\n| scenario | plain copies caught α=0.05 / 0.01 (n) | plain independents judged derived α=0.05 / 0.01 "
          "(n) |")
    print("|:---|---:|---:|")
    for name, entry in pooled.items():
        row = entry["schemes"].get(scheme)
        if row is None:
            continue
        caught: dict[str, list[float]] = defaultdict(list)
        for recipe in row["per_recipe"].values():
            if not recipe["family"].startswith(KINDS) and recipe["family"] != "extraction":
                for alpha, rate in recipe["detection"].items():
                    caught[alpha] += [rate] * recipe["n"]
        false = {alpha: [(v["false_positives"], v["n"]) for family, v in row["rules"][alpha]["families"].items()
                         if not family.startswith(KINDS)] for alpha in ("0.05", "0.01")}
        counts = [f"{sum(f for f, _ in false[a])}/{sum(n for _, n in false[a])}" for a in ("0.05", "0.01")]
        print(f"| {name.removesuffix(' (pooled)')} | {np.mean(caught['0.05']):.2f} / {np.mean(caught['0.01']):.2f} "
              f"({len(caught['0.05'])}) | {counts[0]} / {counts[1]} |")


def extraction(results: dict, scheme: str) -> None:
    """Per pooled scenario: the distilled students' TPR at 1% FPR against the plain independent rows,
    all of them and those keeping >= 90% of the owner's utility."""
    print("\n| scenario | students: TPR@1%FPR (n) | students keeping >= 90% utility: TPR@1%FPR (n) |")
    print("|:---|---:|---:|")
    for name, entry in results["scenarios"].items():
        row = entry["schemes"].get(scheme)
        if "pooled" not in name or row is None:
            continue
        value = "evidence" if row.get("ranked_on") == "evidence" else "score"
        neg = [s[value] for s in row["scores"] if s["label"] == 0 and not s["family"].startswith(KINDS)]
        students = [s for s in row["scores"] if s["family"] == "extraction"]
        kept = [s[value] for s in students if np.isfinite(s["utility"]) and s["utility"] >= 0.9]
        if students:
            every = metrics.tpr_at_fpr([s[value] for s in students], neg, 0.01)
            gated = metrics.tpr_at_fpr(kept, neg, 0.01) if kept else float("nan")
            print(f"| {name.removesuffix(' (pooled)')} | {every:.2f} ({len(students)}) | {gated:.2f} ({len(kept)}) |")


if __name__ == "__main__":
    main()
