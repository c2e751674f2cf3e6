"""The two-stage verification, replayed on a finished `tafa bench` run that scored both stages.

Stage 1 is the default `tafa` (576 queries); stage 2 is `tafa-boundary` (4,968 adaptive
queries), run only when stage 1 is inconclusive. Each stage's score is turned into its
upper-tail p-value against that zoo's calibration references (the normal tail the calibrated
rule uses: the benchmark's calibrated scale is ``-log10(p) / 10``), and the rule at level
alpha is:

- stage 1 alone decides "derived" when ``p1 <= alpha / 2``, and "independent" when
  ``p1 > stop`` (stage 2 is not run);
- otherwise stage 2 runs and decides "derived" when ``p2 <= alpha / 2``.

False-positive bound (Bonferroni): an independent model is declared derived only if
``p1 <= alpha/2`` or ``p2 <= alpha/2``, each of probability at most ``alpha/2`` under the
null, whatever the dependence between the stages; stopping early on "independent" only
removes chances to be declared derived. So the rule keeps ``alpha`` without a joint
calibration. The combined score ``-log10(min(1, 2 min(p1, p2)))`` (``p2 = 1`` when stage 2 is
not run) orders models for the AUC and TPR at 1% FPR.

    python benchmarks/two_stage.py bench-out/three/results.json [--stop 0.5] [--alpha 0.01]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from tafa.bench.metrics import roc_auc, tpr_at_fpr

FIRST, SECOND = "tafa", "tafa-boundary"
#: The benchmark's calibrated scale: -log10(p) / DECADES.
DECADES = 10.0
HARD = ("ft_all_large", "ft_reinit_all_large", "prune80", "prune80_ft")


def p_values(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {row["model"]: float(10 ** (-DECADES * row["calibrated"])) for row in rows}


def replay(first: dict[str, Any], second: dict[str, Any], stop: float, alpha: float) -> dict[str, Any]:
    """The two-stage rule on one zoo's (or one pooled scenario's) scored models."""
    p1, p2 = p_values(first["scores"]), p_values(second["scores"])
    rows = [row for row in first["scores"] if row["family"] != "extraction"]
    labels, combined, flagged, second_run, hard = [], [], [], [], {}
    for row in rows:
        a = p1[row["model"]]
        runs = alpha / 2 < a <= stop
        b = p2[row["model"]] if runs else 1.0
        labels.append(row["label"])
        combined.append(-np.log10(min(1.0, 2 * min(a, b))))
        flagged.append(a <= alpha / 2 or b <= alpha / 2)
        second_run.append(runs)
        if row["model"] in HARD:
            hard.setdefault(row["model"], []).append(bool(flagged[-1]))
    y, s, f, r = map(np.asarray, (labels, combined, flagged, second_run))
    return {"auc": roc_auc(s[y == 1], s[y == 0]), "tpr_at_fpr_1pct": tpr_at_fpr(s[y == 1], s[y == 0], 0.01),
            "rule_tpr": float(f[y == 1].mean()), "rule_fpr": float(f[y == 0].mean()),
            "stage2_share_derived": float(r[y == 1].mean()), "stage2_share_independent": float(r[y == 0].mean()),
            "hard_found": {name: f"{sum(v)}/{len(v)}" for name, v in sorted(hard.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.json of a tafa bench run with the schemes tafa and tafa-boundary")
    parser.add_argument("--stop", type=float, default=0.5, help="stage 1 p-value above which stage 2 is not run")
    parser.add_argument("--alpha", type=float, default=0.01)
    args = parser.parse_args()
    results = json.load(open(args.results))
    print(f"two-stage rule: alpha {args.alpha}, stage 2 when {args.alpha / 2:g} < p1 <= {args.stop:g}")
    print("| zoo | AUC | TPR@1%FPR | rule TPR / FPR | stage 2 run (derived / independent) | mean queries "
          "(independent) | hard recipes flagged |")
    print("|:---|---:|---:|---:|---:|---:|:---|")
    for name, scenario in results["scenarios"].items():
        schemes = scenario["schemes"]
        if FIRST not in schemes or SECOND not in schemes:
            continue
        out = replay(schemes[FIRST], schemes[SECOND], args.stop, args.alpha)
        queries = schemes[FIRST]["queries"] + out["stage2_share_independent"] * schemes[SECOND]["queries"]
        hard = ", ".join(f"{k} {v}" for k, v in out["hard_found"].items())
        print(f"| {name} | {out['auc']:.3f} | {out['tpr_at_fpr_1pct']:.2f} | {out['rule_tpr']:.2f} / "
              f"{out['rule_fpr']:.2f} | {out['stage2_share_derived']:.2f} / {out['stage2_share_independent']:.2f} | "
              f"{queries:.0f} | {hard} |")


if __name__ == "__main__":
    main()
