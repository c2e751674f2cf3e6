"""References served like the suspect (issue 20, measured, not built): what if the references that
calibrate a suspect behind a lossy interface answered through the same interface?

On the committed test fixtures (the README-sized digits classifier, its 40 references, its int8 copy
and two independent models), at the default fingerprint's coarse scale (the scale that decides
answers on a grid): for each label-level interface (a one-hot label; probabilities rounded to 3 and
2 decimals; the top 3 probabilities), the highest and second-highest reference score when every
reference answers through the interface (a softmax at temperature T first, for T in
:data:`TEMPERATURES`, and the largest over T: a suspect's temperature cannot be read from rounded
answers), beside the copy's and the independents' scores behind the interface at T = 1 and T = 3.
Today's rule calibrates on the references' raw answers (the coarse threshold printed first).

    python benchmarks/interface_references.py      # about 30 s

With ``--zoos`` (benchmark zoos, from its cache): the one-hot case on each zoo's 40 calibration
models instead, the default fingerprint's coarse scale, against the zoo's interface rows (the owner,
its int8, lightly fine-tuned and pruned-and-fine-tuned copies, six independents) behind a one-hot
label, and how many scored models of each family clear every reference (about 2 minutes):

    python benchmarks/interface_references.py --zoos digits-mlp digits-cnn mnist-lenet
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.models import Model, TorchModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from make import REFERENCES, load  # noqa: E402 - the fixtures' own loader

SHAPE = (1, 8, 8)
TEMPERATURES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class Served(Model):
    """``model``'s raw outputs passed through ``interface``."""

    def __init__(self, model: Model, interface: Callable[[np.ndarray], np.ndarray]) -> None:
        self.model, self.interface = model, interface
        super().__init__(model.input_shape, model.output_shape, name=model.name)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.interface(self.model(x))


def softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    z = z / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def rounded(step: float, temperature: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: np.round(softmax(z, temperature) / step) * step


def top3(temperature: float) -> Callable[[np.ndarray], np.ndarray]:
    def serve(z: np.ndarray) -> np.ndarray:
        p = softmax(z, temperature)
        kept = np.argsort(-p, axis=1)[:, :3]
        out = np.zeros_like(p)
        np.put_along_axis(out, kept, np.take_along_axis(p, kept, axis=1), axis=1)
        return out
    return serve


def one_hot(_temperature: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: np.eye(z.shape[1])[z.argmax(axis=1)]


def zoos(names: list[str], cache: str) -> None:
    from tafa.attacks.interface import get_interface
    from tafa.bench.run import interface_suspects
    from tafa.bench.scenarios import FULL
    from tafa.bench.zoo import build_zoos

    served = get_interface("one_hot")
    for name in names:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], Path(cache), progress=False, roles=["scored", "calibration"])
        coarse = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain,
                                    seed=0, second_stage=False).coarse_stage()
        assert coarse is not None
        calibration = [TorchModel(model, spec.input_shape, name=r.name) for r, model in zoo.with_role("calibration")]
        raw = sorted(coarse.score(model).value for model in calibration)
        through = sorted(coarse.score(served.apply(model)).value for model in calibration)
        print(f"\n{name}: references raw, highest {raw[-1]:.3f}; through a one-hot label, highest {through[-1]:.3f}, "
              f"second {through[-2]:.3f}")
        for row, label, family, suspect in interface_suspects(zoo):
            if family.startswith("interface/one_hot"):
                print(f"  {row:40s} {'copy' if label else 'independent':12s} {coarse.score(suspect).value:.3f}")
        families: dict[tuple[int, str], list[float]] = {}
        for recipe, model in zoo.with_role("scored"):
            families.setdefault((recipe.label, recipe.family), []).append(
                coarse.score(served.apply(TorchModel(model, spec.input_shape))).value)
        for (label, family), values in sorted(families.items()):
            print(f"  every scored {'copy' if label else 'independent'} of {family}: "
                  f"{np.mean(np.array(values) > through[-1]):.2f} clear every reference (n={len(values)})")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="*", help="benchmark zoos: the one-hot case on each")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    if args.zoos:
        zoos(args.zoos, args.cache)
        return
    first, more = load("classifier"), load("classifier-more")
    references = [TorchModel(first[f"reference{i:02d}"], SHAPE, name=f"r{i}") for i in range(REFERENCES)]
    references += [TorchModel(more[name], SHAPE, name=name) for name in sorted(more) if name.startswith("reference")]
    coarse = Fingerprint.create(first["owner"], "box:0,1", input_shape=SHAPE).coarse_stage()
    assert coarse is not None
    raw = sorted(coarse.score(model).value for model in references)
    print(f"{len(references)} references; coarse scale, references answering raw: highest {raw[-1]:.3f}, "
          f"second {raw[-2]:.3f}\n")
    suspects = {"int8 copy": TorchModel(quantize(first["owner"], 8), SHAPE),
                "independent": TorchModel(first["independent"], SHAPE),
                "independent2": TorchModel(more["independent2"], SHAPE)}
    print("| interface | references through it, highest per T | largest over T: highest / second | "
          "suspects at T = 1 (copy, independents) | at T = 3 |")
    print("|:---|:---|---:|---:|---:|")
    for name, make in (("one-hot label", one_hot), ("probabilities to 3 decimals", lambda t: rounded(1e-3, t)),
                       ("probabilities to 2 decimals", lambda t: rounded(1e-2, t)), ("top-3 probabilities", top3)):
        scores = np.array([[coarse.score(Served(model, make(t))).value for t in TEMPERATURES] for model in references])
        per_t = ", ".join(f"{t:g}: {v:.3f}" for t, v in zip(TEMPERATURES, scores.max(axis=0)))
        largest = np.sort(scores.max(axis=1))
        at = {t: ", ".join(f"{coarse.score(Served(model, make(t))).value:.3f}" for model in suspects.values())
              for t in (1.0, 3.0)}
        print(f"| {name} | {per_t} | {largest[-1]:.3f} / {largest[-2]:.3f} | {at[1.0]} | {at[3.0]} |")


if __name__ == "__main__":
    main()
