"""What the copies the fingerprints miss are still worth: each scored model's utility beside
its score, per zoo, from a finished `tafa bench` run's results.json.

`tafa bench` measures every model's utility itself (`tafa.bench.utility`: accuracy, R^2,
or a decoder's sample R^2, on the half of the data the owner did not train on, cached
beside the zoo) and stores each model's share of the owner's utility with its score; this
script only lists them, model by model, with whether the scheme missed the copy (scored at
or below the highest independent model).

    python benchmarks/utility.py bench-out/full/results.json [--scheme tafa]

With ``--summary``: per pooled scenario, every scheme's figures over the copies that keep at
least 90% of the owner's utility beside those over all copies, and its calibrated rule's
false-positive rate (the table docs/method.md's "Choosing the default" reads).
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.json of a tafa bench run")
    parser.add_argument("--scheme", default="tafa")
    parser.add_argument("--summary", action="store_true", help="every scheme's utility-gated figures per scenario")
    args = parser.parse_args()
    with open(args.results) as handle:
        results = json.load(handle)
    if args.summary:
        summary(results)
        return
    for name, scenario in results["scenarios"].items():
        scheme = scenario["schemes"].get(args.scheme)
        owner = scenario.get("utility")
        if "pooled" in name or scheme is None or not isinstance(owner, dict):
            continue
        rows = scheme["scores"]
        top = max(r["score"] for r in rows if r["label"] == 0)
        print(f"\n{name}: {owner['measure']} of the owner {owner['owner']:.3f} ({owner['data']}); "
              f"share of it per model; `{args.scheme}` score; highest independent score {top:.3f}")
        print(f"{'model':32s} {'family':20s} {'utility':>8s} {'score':>7s}  missed")
        for row in sorted(rows, key=lambda r: (-r["label"], r["score"])):
            missed = "yes" if row["label"] == 1 and row["score"] <= top else ""
            utility = row.get("utility")
            shown = f"{utility:8.2f}" if isinstance(utility, (int, float)) else f"{'-':>8s}"
            print(f"{row['model'][:32]:32s} {row['family'][:20]:20s} {shown} {row['score']:7.3f}  {missed}")


def _f(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def summary(results: dict) -> None:
    """Per pooled scenario and scheme: AUC / TPR@1%FPR / rule TPR at alpha 0.05 and 0.01 over
    the kept copies and over all copies, the rule's FPR, and the LOFO figures when learned."""
    for name, scenario in results["scenarios"].items():
        if "pooled" not in name:
            continue
        first = next(iter(scenario["schemes"].values()))
        kept_n, all_n = first["utility_kept"]["n_pos"], first["utility_kept"]["n_all"]
        print(f"\n{name}: {kept_n} of {all_n} copies keep >= 90% of the owner's utility; "
              f"{scenario['n_neg']} independent models")
        print(f"{'scheme':14s} {'kept: AUC  TPR@1%  rule.05 rule.01':>36s} {'all: AUC  TPR@1%  rule.05 rule.01':>36s}"
              f" {'FPR .05  .01':>13s} {'LOFO (all) AUC TPR@1%':>22s}")
        for scheme, s in scenario["schemes"].items():
            kept, rules = s["utility_kept"], s["rules"]
            lofo = s.get("lofo") or {}
            print(f"{scheme:14s} {_f(kept['auc'], 3):>12s} {_f(kept['tpr_at_fpr_1pct']):>7s} "
                  f"{_f(kept['rules']['0.05']):>8s} {_f(kept['rules']['0.01']):>7s} "
                  f"{_f(s['auc'], 3):>12s} {_f(s['tpr_at_fpr_1pct']):>7s} {_f(rules['0.05']['tpr']):>8s} "
                  f"{_f(rules['0.01']['tpr']):>7s} {_f(rules['0.05']['fpr'], 3):>7s} {_f(rules['0.01']['fpr'], 3):>5s}"
                  f" {_f(lofo.get('auc'), 3):>13s} {_f(lofo.get('tpr_at_fpr_1pct')):>7s}")


if __name__ == "__main__":
    main()
