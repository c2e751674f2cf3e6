"""The second stage's stop replayed on a full benchmark's rows (issue 22 item 4): what each way of
stopping would cost, at the thresholds the benchmark's own rule gives the stage.

``benchmarks/second_stage_cost.py --looks`` decides with a simplified rule (two stages at half of
alpha each); the benchmark's rule gives each of the fingerprint's stages its share (a quarter with
the data-like stage) and calibrates it with the parametric tail where the rank is short, as ``tafa
bench`` does, so its geometry threshold sits higher and a copy just above it is easier to stop. This
reads a ``tafa bench`` ``results.json`` (every row keeps the stage's per-line values, ``lines``, and
every calibration row its stage scores), makes each zoo's thresholds that way at alpha 0.05 and
0.01, and for each ``REACH:THEN[:FIRST]`` (:mod:`tafa.decide.sequential`: standard errors of the
reach, lines per look after the first, lines at the first look, 4 by default) counts, over every
row the other stages leave to the geometry: the copies the whole stage catches that stopping loses
(and of those, the ones keeping at least 90% of the owner's utility), and the share of the stage's
lines measured on the independents at 0.05. No model is asked: a stop's decision is a function of the lines.

    python benchmarks/stop_replay.py bench-out/s24-final/results.json [--pairs 2:4 1.5:2 1:1 1:1:3]   # 5 s
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from tafa.decide.rule import Rule
from tafa.decide.sequential import LOOK, measured_part

PAIRS = ["2:4", "2:1", "1.5:4", "1.5:2", "1.5:1", "1:4", "1:2", "1:1"]


def parse(pair: str) -> tuple[float, int, int]:
    """``REACH:THEN[:FIRST]`` as numbers (the first look at :data:`LOOK` lines unless given)."""
    reach, then, *first = pair.split(":")
    return float(reach), int(then), int(first[0]) if first else LOOK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="REACH:THEN or REACH:THEN:FIRST")
    parser.add_argument("--scheme", default="tafa")
    args = parser.parse_args()
    pairs = [parse(pair) for pair in args.pairs]
    results = json.load(open(args.results))
    lost: dict[tuple[float, int, int], list[str]] = {pair: [] for pair in pairs}
    measured: dict[tuple[float, int, int], list[float]] = {pair: [] for pair in pairs}
    for zoo, scenario in results["scenarios"].items():
        entry = scenario["schemes"].get(args.scheme)
        if "pooled" in zoo or entry is None:
            continue
        rows = [row for row in entry["scores"] if row.get("lines")]
        if not rows:
            continue
        table = np.array([row["stages"] for row in entry["calibration_scores"]], dtype=np.float64)
        looked = rows[0]["looked"]
        for alpha in (0.05, 0.01):
            rule = Rule.calibrate([list(column) for column in table.T], [str(k) for k in range(table.shape[1])],
                                  alpha, parametric=True)  # each stage at its share, the tail where rank is short
            thresholds = [stage.threshold for stage in rule.stages]
            for row in rows:
                if any(score is not None and score > thresholds[k]
                       for k, score in enumerate(row["stages"]) if k != looked):
                    continue  # another stage fires: the geometry decides nothing here
                lines = np.asarray(row["lines"], dtype=np.float64)
                for reach, then, first in pairs:
                    part = measured_part(lines, thresholds[looked], kappa=reach, then=then, first=first)
                    if row["label"] == 1 and lines.mean() > thresholds[looked] >= part.mean():
                        utility = float(row.get("utility") or float("nan"))
                        kept = "kept" if utility >= 0.9 else f"utility {utility:.2f}"
                        lost[(reach, then, first)].append(f"{zoo.split(': ')[1]} `{row['model']}` at {alpha:g} "
                                                   f"({lines.mean():.3f} against {thresholds[looked]:.3f}; {kept})")
                    if row["label"] == 0 and alpha == 0.05:
                        measured[(reach, then, first)].append(len(part) / len(lines))
    print("| REACH | lines per look | first look | copies lost (both alphas) "
          "| lines measured on independents at 0.05 |")
    print("|---:|---:|---:|:---|---:|")
    for pair in pairs:
        print(f"| {pair[0]:g} | {pair[1]} | {pair[2]} | {len(lost[pair])}{': ' if lost[pair] else ''}"
              f"{'; '.join(lost[pair])} | {np.mean(measured[pair]):.3f} |")


if __name__ == "__main__":
    main()
