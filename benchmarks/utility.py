"""What the copies the fingerprints miss are still worth: each scored model's utility beside
its score, per zoo, from a finished `tafa bench` run's results.json.

`tafa bench` measures every model's utility itself (`tafa.bench.utility`: accuracy, R^2,
or a decoder's sample R^2, on the half of the data the owner did not train on, cached
beside the zoo) and stores each model's share of the owner's utility with its score; this
script only lists them, model by model, with whether the scheme missed the copy (scored at
or below the highest independent model).

    python benchmarks/utility.py bench-out/full/results.json [--scheme tafa]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="results.json of a tafa bench run")
    parser.add_argument("--scheme", default="tafa")
    args = parser.parse_args()
    with open(args.results) as handle:
        results = json.load(handle)
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


if __name__ == "__main__":
    main()
