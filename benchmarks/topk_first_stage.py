"""The first stage behind a top-k list, on the classes it shows (issue 20; built in session 13 as
:mod:`tafa.shown_stage`): how far each copy behind the list stands above the zoo's calibration models
answering through the same list.

Per probe, the classes shown at every one of its inputs are kept; the owner's and the suspect's
derivatives of those classes are centred across them, group-centred with means over the probes that
show each class, and compared by the cosine over the shown entries; the score is the median over
probes (at least two classes shown). Printed: the calibration models' top three, each copy's score
and how far above their mean it lies (standard deviations of Fisher-z values), and the scored
independent models above the highest calibration model.

    python benchmarks/topk_first_stage.py digits-mlp [K]     # K = 3 (the benchmark's top-3 interface)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tafa import Fingerprint
from tafa.attacks.interface import Interface, get_interface, per_row, softmax, top_k
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.models import TorchModel
from tafa.shown_stage import ShownStage
from tafa.signature.derivatives import Derivatives

COPIES = ("owner", "int8", "ft_all_small", "prune50_ft", "ft_all_large", "prune80_ft")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("k", type=int, nargs="?", default=3)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    (spec,) = [s for s in FULL if s.name == args.zoo]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
    shape = spec.input_shape
    fingerprint = Fingerprint.create(zoo.owner, spec.domain, input_shape=shape, second_stage=False)
    measurement = fingerprint.scheme.make_signature()
    assert isinstance(measurement, Derivatives)
    stage = ShownStage(measurement, fingerprint.probes, fingerprint.owner_signature)
    listed = get_interface("top3") if args.k == 3 else Interface(
        f"top{args.k}", "classification", per_row(lambda z: top_k(softmax(z), args.k)))

    def score(model: torch.nn.Module) -> float:
        return stage.score(listed.apply(TorchModel(model, shape))).value

    calibration = sorted(score(model) for _, model in zoo.with_role("calibration"))
    fisher = np.arctanh(np.clip(calibration, -0.999, 0.999))

    def z(value: float) -> float:
        return float((np.arctanh(min(value, 0.999)) - fisher.mean()) / fisher.std(ddof=1))

    models = {"owner": zoo.owner, **{r.name: m for r, m in zoo.with_role("scored")}}
    print(f"{args.zoo}, top-{args.k}: calibration top {' '.join(f'{v:.3f}' for v in calibration[-3:])}")
    for name in COPIES:
        value = score(models[name])
        print(f"  {name:<14} {value:.3f} (z {z(value):.1f})")
    independents = [score(m) for r, m in zoo.with_role("scored") if r.label == 0]
    print(f"  scored independents above the highest calibration model: "
          f"{sum(v > calibration[-1] for v in independents)}/{len(independents)}, "
          f"highest z {max(z(v) for v in independents):.1f}")


if __name__ == "__main__":
    main()
