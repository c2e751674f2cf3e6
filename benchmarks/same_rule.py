"""One decision object (issue 23): a few scored models of a benchmark zoo decided both ways.

``tafa bench`` scores every model of a zoo and decides with the rule it makes from the zoo's
calibration models (:func:`tafa.bench.run.calibrations`); ``tafa verify`` makes its rule from
the references it is given (:meth:`tafa.Fingerprint.calibrate`). Both call
:meth:`tafa.decide.Rule.from_references`. This script takes one zoo from the benchmark's cache,
runs the benchmark's evaluation of the default scheme on it, then verifies a few of its scored
models with ``Fingerprint.verify`` against the same calibration models as references (``alpha``
as the benchmark asks: ``--parametric`` where they are too few by rank), and prints both
decisions side by side with the thresholds. A model behind an evasion is decided by ``verify``
with fresh randomness in its evasion check, by the benchmark with a seeded one.

    python benchmarks/same_rule.py [--zoo digits-mlp] [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tafa import Fingerprint
from tafa.bench.run import ALPHAS, calibrations, decision, evaluate_scheme, evasion_suspects, interface_suspects
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.decide.threshold import references_needed
from tafa.models import TorchModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="digits-mlp")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    started = time.perf_counter()
    (spec,) = [spec for spec in FULL if spec.name == args.zoo]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
    evaluation = evaluate_scheme(zoo, "tafa")
    rows = {row.model: row for row in evaluation["rows"]}
    rules = calibrations(evaluation["rows"], evaluation["stage_names"], evaluation["copy_line"],
                         evaluation.get("coarse_copy_line"))
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    fingerprint = Fingerprint.create(owner, spec.domain, seed=0)  # the benchmark's fingerprint, made again
    references = [TorchModel(model, spec.input_shape, name=recipe.name)
                  for recipe, model in zoo.with_role("calibration")]
    scored = dict(zoo.with_role("scored"))
    models = {recipe.name: TorchModel(model, spec.input_shape, name=recipe.name) for recipe, model in scored.items()}
    models.update({name: model for name, _, _, model in interface_suspects(zoo) + evasion_suspects(zoo)})
    wanted = ["int8", "ft_all_large", "prune80_ft", next(r.name for r in scored if r.label == 0),
              "owner@softmax", "int8@softmax_round3", "owner%batch", "int8%near_duplicate"]
    print(f"zoo {spec.name}: {len(references)} calibration models as references; default scheme, stages "
          f"{evaluation['stage_names']}\n")
    print("| model | alpha | bench: thresholds | bench decides | verify: thresholds | verify decides | same |")
    print("|:---|---:|:---|:---|:---|:---|:---:|")
    for alpha in ALPHAS:
        rule = rules[alpha]
        calibration = fingerprint.calibrate(references, alpha, parametric=len(references) < references_needed(alpha))
        for name in wanted:
            if name not in rows:
                continue
            row = rows[name]
            bench = decision(rule, row).value
            verdict = fingerprint.verify(models[name], calibration=calibration)
            ours = " / ".join(f"{stage.threshold:.4f}" for stage in rule.stages)
            theirs = " / ".join(f"{stage.threshold:.4f}" for stage in calibration.stages)
            same = bench == verdict.decision.value
            print(f"| {name} | {alpha:g} | {ours} ({rule.method}) | {bench} | {theirs} "
                  f"({calibration.method}) | {verdict.decision.value} | {'yes' if same else 'NO'} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
