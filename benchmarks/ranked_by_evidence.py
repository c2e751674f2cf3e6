"""Per-zoo ranking figures of a ``tafa bench`` run, ranked by raw score and by evidence (session 29).

Within one zoo the benchmark ranked rows by their raw score, which is one scale only while every
row is scored at the fine scale: a row decided at the coarse scale (rough answers) has its coarse
score there, and a row the label stage decides (lossy answers) its evidence in decades, so a
one-stage scheme's per-zoo figures mixed three scales. Since session 29 such a zoo is ranked by
evidence (each row's p-value against the calibration models at the scale that decides it), as
pooled figures always were. This reads a ``results.json`` written before the change and prints,
per zoo and scheme whose figures move, TPR at 1% FPR over every copy (students aside) and over
the copies keeping 90% of the owner's utility, ranked raw (as stored) and by evidence (as a run
now computes them). Staged schemes (the default ``tafa``) score every row by its evidence already.

    python benchmarks/ranked_by_evidence.py bench-out/s27-base/results.json   # a second
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from tafa.bench import metrics
from tafa.bench.run import EXTRACTION, KEEP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    print("| run | zoo | scheme | TPR@1%FPR, raw -> evidence | kept copies, raw -> evidence |")
    print("|:---|:---|:---|---:|---:|")
    for path in args.results:
        results = json.load(open(path))
        for zoo, scenario in results["scenarios"].items():
            if "pooled" in zoo:
                continue
            for scheme, entry in scenario["schemes"].items():
                rows = entry["scores"]
                derived = [r for r in rows if r["label"] == 1 and r["family"] != EXTRACTION]
                kept = [r for r in derived if (r.get("utility") or 0.0) >= KEEP]
                independent = [r for r in rows if r["label"] == 0]

                def tpr(copies: list[dict], key: str) -> float:
                    return metrics.tpr_at_fpr(np.array([r[key] for r in copies]),
                                              np.array([r[key] for r in independent]), 0.01)

                figures = [(tpr(group, "score"), tpr(group, "evidence")) for group in (derived, kept)]
                if any(abs(raw - evidence) > 1e-9 for raw, evidence in figures):
                    print(f"| {path} | {zoo} | {scheme} | " + " | ".join(f"{raw:.2f} -> {evidence:.2f}"
                                                                      for raw, evidence in figures) + " |")


if __name__ == "__main__":
    main()
