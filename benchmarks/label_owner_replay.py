"""The data-free label stage's owner signature, raw or asked through the suspect's interface
(issue 20, docs/method.md, "The data-free label stage"): which separates copies from the
references better?

For each zoo and label-level interface, each compared with the owner's raw signature and with the
owner's signature through the same interface: the two highest of the 40 calibration models (asked
through the interface, as tafa verify asks them), the interface copies (the owner, then the zoo's
int8, fine-tuned and pruned-and-fine-tuned copies in its order), and the highest of the 6
interface independents.

    python benchmarks/label_owner_replay.py [--zoos digits-mlp mnist-lenet] [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tafa import Fingerprint
from tafa.attacks.interface import get_interface
from tafa.bench.run import INTERFACE_COPIES, INTERFACE_NEGATIVES
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.decide.similarity import PairCorrelation
from tafa.label_stage import replay
from tafa.models import TorchModel
from tafa.signature.interface import recognise


def measure(zoo_name: str, cache: Path) -> None:
    (spec,) = [spec for spec in FULL if spec.name == zoo_name]
    (zoo,) = build_zoos([spec], cache, progress=False, roles=["scored", "calibration"])
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    fingerprint = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)
    stage = fingerprint.labels
    assert stage is not None
    references = [TorchModel(m, spec.input_shape, name=r.name) for r, m in zoo.with_role("calibration")]
    scored = zoo.with_role("scored")
    bases = [owner] + [TorchModel(m, spec.input_shape) for r, m in scored
                       if r.label == 1 and r.name in INTERFACE_COPIES]
    negatives = [TorchModel(m, spec.input_shape) for r, m in scored if r.label == 0][:INTERFACE_NEGATIVES]
    similarity = PairCorrelation()
    for name in ("softmax_round2", "top3", "one_hot"):
        interface = get_interface(name)
        served = interface.apply(owner)
        recognised = recognise(served(fingerprint.probes.points), fingerprint.owner_signature["outputs"])
        asked = [stage.measure(replay(model, served, recognised)) for model in references]
        for label, mine in (("raw owner", stage.owner_signature),
                            ("owner through the interface", stage.measure(replay(owner, served, recognised)))):
            top = sorted(similarity.compare(mine, other).value for other in asked)[-2:]
            copies = [similarity.compare(mine, stage.measure(interface.apply(m))).value for m in bases]
            others = [similarity.compare(mine, stage.measure(interface.apply(m))).value for m in negatives]
            print(f"{zoo_name} {name:<15} {label:<28} references' top two {top[0]:.3f} {top[1]:.3f} | copies "
                  f"{' '.join(f'{v:.3f}' for v in copies)} | highest independent {max(others):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "mnist-lenet"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for zoo_name in args.zoos:
        measure(zoo_name, Path(args.cache))


if __name__ == "__main__":
    main()
