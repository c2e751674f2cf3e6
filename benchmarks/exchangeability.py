"""Are a zoo's scored and calibration independent models exchangeable under one scheme?

Reads a finished `tafa bench` run's ``results.json`` (which keeps the calibration scores) and,
for one zoo and scheme, prints per independent family and data half the two sets' sizes,
medians and maxima, a two-sided Mann-Whitney test per family, the highest independent scores
with their role, and how likely the rule's observed false positives are under
exchangeability: the split into scored and calibration models is drawn again at random
within each family (same sizes as the zoo's, scores held fixed; the benchmark's own split is
one such draw) and the number of scored models above the rank-th highest calibration score
counted. The data half of each model comes from the zoo's recipe (nothing is loaded).

    python benchmarks/exchangeability.py bench-out/full-all/results.json friedman-mlp [--scheme tafa]
"""

from __future__ import annotations

import argparse
import json
from math import ceil

import numpy as np
from scipy.stats import binom, mannwhitneyu

from tafa.bench.run import ALPHAS
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import recipes


def exceedances(scores: np.ndarray, is_calibration: np.ndarray, rank: int) -> int:
    """Scored models strictly above the ``rank``-th highest calibration score."""
    threshold = np.sort(scores[is_calibration])[-rank]
    return int((scores[~is_calibration] > threshold).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("zoo")
    parser.add_argument("--scheme", default="tafa")
    parser.add_argument("--draws", type=int, default=100_000)
    args = parser.parse_args()
    results = json.load(open(args.results))
    entry = next(v for k, v in results["scenarios"].items() if k.endswith(f": {args.zoo}"))["schemes"][args.scheme]
    if "calibration_scores" not in entry:
        raise SystemExit(f"{args.results}: no calibration_scores (written by tafa bench from this commit on)")
    spec = next(s for s in FULL if s.name == args.zoo)
    part = {r.name: r.part for r in recipes(spec)}
    rows = [(r["model"], r["family"], r["score"], False) for r in entry["scores"] if r["label"] == 0]
    rows += [(r["model"], r["family"], r["score"], True) for r in entry["calibration_scores"]]
    scores = np.array([r[2] for r in rows])
    is_cal = np.array([r[3] for r in rows])
    families = sorted({r[1] for r in rows})
    print(f"{args.zoo} / {args.scheme}: {int((~is_cal).sum())} scored, {int(is_cal.sum())} calibration independents")
    for family in families:
        for half in ("owner", "other"):
            cal = [r[2] for r in rows if r[1] == family and part[r[0]] == half and r[3]]
            sco = [r[2] for r in rows if r[1] == family and part[r[0]] == half and not r[3]]
            if cal or sco:
                print(f"  {family:22s} {half:5s} calibration n={len(cal):3d} median={np.median(cal):.4f} "
                      f"max={max(cal):.4f} | scored n={len(sco):3d} median={np.median(sco):.4f} max={max(sco):.4f}")
        cal = [r[2] for r in rows if r[1] == family and r[3]]
        sco = [r[2] for r in rows if r[1] == family and not r[3]]
        print(f"  {family:22s} Mann-Whitney p = {mannwhitneyu(sco, cal).pvalue:.3f}")
    print("  highest independents:")
    for i in np.argsort(-scores)[:8]:
        name, family, score, cal = rows[i]
        print(f"    {'calibration' if cal else 'scored':11s} {family:22s} {part[name]:5s} {score:.4f}")
    members = [np.flatnonzero([r[1] == f for r in rows]) for f in families]
    quota = [int(is_cal[m].sum()) for m in members]
    n_cal, n_scored = int(is_cal.sum()), int((~is_cal).sum())
    # the rank rule's threshold at alpha: the ceil((1 - alpha)(n + 1))-th smallest reference
    ranks = {alpha: n_cal + 1 - ceil((1 - alpha) * (n_cal + 1)) for alpha in ALPHAS}
    observed = {alpha: exceedances(scores, is_cal, rank) for alpha, rank in ranks.items()}
    rng = np.random.default_rng(0)
    at_least = dict.fromkeys(ALPHAS, 0)
    for _ in range(args.draws):
        draw = np.zeros(len(rows), bool)
        for m, q in zip(members, quota):
            draw[rng.permutation(m)[:q]] = True
        for alpha, rank in ranks.items():
            at_least[alpha] += exceedances(scores, draw, rank) >= observed[alpha]
    for alpha, rank in ranks.items():
        k = observed[alpha]
        print(f"  alpha {alpha:g}: {k} of {n_scored} scored above the {rank}-th highest reference; "
              f"P(>= {k}) over {args.draws} random within-family splits = {at_least[alpha] / args.draws:.4f} "
              f"(independent-trials binomial, which ignores the shared references: "
              f"{binom.sf(k - 1, n_scored, rank / (n_cal + 1)):.4f})")


if __name__ == "__main__":
    main()
