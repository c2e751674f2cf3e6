"""How much ``tafa-select``'s first stage depends on its draw (issue 22; session 28).

Session 27 saw ResNet's ``prune80_ft`` score 0.205 under ``tafa-select`` alone (above every
independent model) and 0.110 as the first stage of a two-stage variant: two draws of the same
selection. Per seed: ``tafa-select``'s fingerprint of the zoo's owner (first stage only; its groups
selected on the zoo's data-free references, as ``tafa bench`` selects them), the 40
calibration models' highest score, the scored independent models' highest, and the scores of
the copies named (default: ResNet's misses of the default scheme), with how many of the
post-processed copies (students aside; all of them, whatever utility they kept) score above every
calibration model.

    python benchmarks/select_seeds.py --seeds 0 1                  # ResNet, 30 s a seed
    python benchmarks/select_seeds.py --seeds 0 1 2 --no-references  # 4-5 minutes a seed
    python benchmarks/select_seeds.py --zoos digits-cnn --scheme tafa
"""

from __future__ import annotations

import argparse
import time

from tafa import Fingerprint
from tafa.bench.run import zoo_references
from tafa.bench.scenarios import cached_zoo
from tafa.scheme import get_scheme
from tafa.models import TorchModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["mnist-resnet"])
    parser.add_argument("--scheme", default="tafa-select")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--copies", nargs="+", default=["prune80_ft", "distill_same", "distill_other"])
    parser.add_argument("--no-references", action="store_true",
                        help="select the groups without the zoo's data-free references")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print(f"| zoo | seed | calibration max | independent max | {' | '.join(args.copies)} | copies above cal. max "
          f"| seconds |")
    print("|:---|---:|---:|---:|" + "---:|" * len(args.copies) + "---:|---:|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        calibration = [model for _, model in zoo.with_role("calibration")]
        plain = zoo.plain()
        independents = [model for recipe, model in plain if recipe.label == 0]
        copies = [(recipe, model) for recipe, model in plain if recipe.label == 1 and recipe.family != "extraction"]
        named = {recipe.name: model for recipe, model in plain}
        references = None if args.no_references else zoo_references(zoo, get_scheme(args.scheme).references)
        for seed in args.seeds:
            started = time.perf_counter()
            fingerprint = Fingerprint.create(TorchModel(zoo.owner, shape, name="owner"), spec.domain,
                                             scheme=args.scheme, seed=seed, second_stage=False,
                                             references=references[0] if references else None)

            def score(model, fingerprint: Fingerprint = fingerprint, shape: tuple[int, ...] = shape) -> float:
                return fingerprint.score(TorchModel(model, shape)).value

            top = max(score(model) for model in calibration)
            independent = max(score(model) for model in independents)
            values = [score(named[copy]) if copy in named else float("nan") for copy in args.copies]
            above = sum(score(model) > top for _, model in copies)
            print(f"| {name} | {seed} | {top:.3f} | {independent:.3f} | "
                  f"{' | '.join(f'{v:.3f}' for v in values)} | {above}/{len(copies)} | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
