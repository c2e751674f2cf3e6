"""How much answers bend within the fingerprint's step (issue 21): the curvature that sends a suspect
to the coarse scale (:func:`tafa.signature.scales.curvature`, :data:`~tafa.signature.scales.CURVATURE_LIMIT`).

For each zoo (from the benchmark's cache), the default fingerprint's first stage is made, and every
calibration and scored model, every interface- and evasion-wrapped suspect of the benchmark, and the
owner behind ripples of decreasing amplitude (``a sin(x R)``, ``R ~ N(0, 100^2)`` per entry, as the
benchmark's ripple) answer its inputs; their answers are undone as ``tafa verify`` undoes them
(:func:`tafa.signature.interface.recognise`). Printed per family: the smallest and largest curvature;
for the ripples also the roughness (the old switch, :data:`~tafa.signature.scales.ROUGHNESS_LIMIT`)
and the first stage's score at the fingerprint's step, which the ripple corrupts before the
roughness notices. Then the same for a piecewise-linear ripple, a triangle wave of the same
period (:class:`~tafa.attacks.evasion.TriangleRipple`): a ReLU network could compute it, so it does not bend the answers
within a step unless a kink falls there; printed with the coarse scale's single-step score.

    python benchmarks/curvature.py [--zoos digits-mlp diabetes-mlp friedman-mlp]   # about 1 minute a zoo

Each zoo's section starts with the owner's own curvature at its probes (recorded in the fingerprint
since session 26) and the limit it sets (:func:`~tafa.signature.scales.curvature_limit`);
``--owners`` prints those lines alone (seconds a zoo).
"""

from __future__ import annotations

import argparse

from tafa import Fingerprint
from tafa.attacks.evasion import RippleModel, TriangleRipple
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import cached_zoo
from tafa.fingerprint import OWNER_CURVATURE
from tafa.models import TorchModel
from tafa.signature.interface import recognise
from tafa.signature.scales import curvature, curvature_limit

AMPLITUDES = (0.1, 0.03, 0.01, 0.003, 0.001)
#: The triangle waves' amplitudes and frequencies (the projection's standard deviation).
TRIANGLES = ((0.3, 10.0), (0.1, 100.0), (0.1, 30.0), (0.1, 10.0), (0.03, 10.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "diabetes-mlp", "friedman-mlp", "digits-cnn",
                                                      "digits-vae", "mnist-lenet", "digits-mlp-gelu",
                                                      "digits-attention"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--owners", action="store_true", help="the owners' own curvature and limit alone")
    args = parser.parse_args()
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        fingerprint = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)
        own = fingerprint.meta.get(OWNER_CURVATURE)
        print(f"\n{name}: the owner's own curvature {own:.3g}, the limit {curvature_limit(own):.3g}", flush=True)
        if args.owners:
            continue
        inputs = fingerprint.scheme.make_signature().inputs(fingerprint.probes)
        suspects = [("plain", TorchModel(model, spec.input_shape, name=recipe.name))
                    for role in ("scored", "calibration") for recipe, model in zoo.with_role(role)]
        if spec.interfaces:
            suspects += [(family, suspect) for _, _, family, suspect in [*interface_suspects(zoo),
                                                                          *evasion_suspects(zoo)]]
        ranges: dict[str, list[float]] = {}
        for family, suspect in suspects:
            if suspect.labels_only:
                continue
            undone = recognise(suspect(inputs), fingerprint.owner_signature["outputs"]).answers
            value = curvature(fingerprint.probes, undone)
            if value is not None:
                ranges.setdefault(family, []).append(value)
        print(f"\n## {name}\n")
        print("| family | models | curvature, min - max |")
        print("|:---|---:|---:|")
        for family, values in sorted(ranges.items()):
            print(f"| {family} | {len(values)} | {min(values):.3g} - {max(values):.3g} |")
        print("\n| the owner behind a ripple of amplitude | curvature | roughness | first-stage score at its step |")
        print("|---:|---:|---:|---:|")
        for amplitude in AMPLITUDES:
            rippled = RippleModel(TorchModel(zoo.owner, spec.input_shape), amplitude, 100.0, seed=1)
            signature, recognised, _ = fingerprint.measure_checked(rippled, False)
            coarse = fingerprint.measure_coarse(rippled, signature)
            rough = "-" if coarse is None else f"{coarse[1]:.2f}"
            score = fingerprint.compare(signature).value
            print(f"| {amplitude:g} | {recognised.curvature:.3g} | {rough} | {score:.3f} |")
        print("\n| the owner behind a triangle wave of amplitude x frequency | curvature | roughness "
              "| first-stage score at its step | at the coarse step |")
        print("|---:|---:|---:|---:|---:|")
        for amplitude, frequency in TRIANGLES:
            wave = TriangleRipple(TorchModel(zoo.owner, spec.input_shape), amplitude, frequency, seed=1)
            signature, recognised, _ = fingerprint.measure_checked(wave, False)
            coarse = fingerprint.measure_coarse(wave, signature)
            rough, single = ("-", "-") if coarse is None else (f"{coarse[1]:.2f}", f"{coarse[0].value:.3f}")
            score = fingerprint.compare(signature).value
            print(f"| {amplitude:g} x {frequency:g} | {recognised.curvature:.3g} | {rough} | {score:.3f} | {single} |")


if __name__ == "__main__":
    main()
