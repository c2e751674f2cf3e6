"""How far the interface copies the rule misses at alpha 0.01 are from its thresholds (issue 20).

For a full-benchmark zoo, an interface and some of the owner's copies (and the first scored
independents), ``tafa verify`` at alpha 0.01 (``--parametric``, as the benchmark decides with its 40
or 100 calibration models) through that interface: the decision, each stage's score and threshold,
and the highest calibration model's score at the last stage.

    python benchmarks/interface_margins.py digits-mlp softmax_round2 softmax_round3
    python benchmarks/interface_margins.py mnist-lenet one_hot
    python benchmarks/interface_margins.py diabetes-mlp round1        # each about a minute, zoo cached
"""

from __future__ import annotations

import argparse

from tafa import Fingerprint
from tafa.attacks.interface import get_interface
from tafa.bench.scenarios import cached_zoo
from tafa.models import TorchModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("interfaces", nargs="+")
    parser.add_argument("--copies", nargs="+", default=["int8", "ft_all_small", "prune50_ft"])
    parser.add_argument("--independents", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    spec, zoo = cached_zoo(args.zoo, args.cache)
    fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain, seed=0)
    references = [TorchModel(model, spec.input_shape, name=recipe.name)
                  for recipe, model in zoo.with_role("calibration")]
    scored = {recipe.name: model for recipe, model in zoo.with_role("scored")}
    independents = [recipe.name for recipe, _ in zoo.with_role("scored") if recipe.label == 0][:args.independents]
    print(f"| interface | suspect | decision at {args.alpha:g} | stages: score / threshold | "
          "last stage's highest reference |")
    print("|:---|:---|:---|:---|---:|")
    for name in args.interfaces:
        interface = get_interface(name)
        for suspect in [*args.copies, *independents]:
            model = interface.apply(TorchModel(scored[suspect], spec.input_shape, name=suspect))
            verdict = fingerprint.verify(model, references, alpha=args.alpha, parametric=True, check_evasion=False)
            rule = verdict.calibration
            scores = [stage["score"] for stage in verdict.stages] or [verdict.score]
            names = [stage["name"] for stage in verdict.stages] or [verdict.scheme]
            cells = [f"{label}: {'-' if value is None else f'{value:.3f}'} / {calibration.threshold:.3f}"
                     for label, value, calibration in zip(names, scores, rule.stages if rule else [])]
            top = max(rule.stages[-1].reference_scores) if rule else float("nan")
            print(f"| {name} | {suspect} | {verdict.decision.value} | {'; '.join(cells)} | {top:.3f} |")


if __name__ == "__main__":
    main()
