"""Finite differences at a coarser step (issues 20 and 21): does the default first stage, measured at
steps ``F`` times its own, survive what defeats it at its own step (a high-frequency output ripple,
answers rounded onto a grid), and how does it do on the plain copies?

For each zoo (from the benchmark's cache): the default fingerprint's first stage (second stage off)
is made; its probes' steps are multiplied by each factor ``F`` and the owner's signature measured
again there (white-box: the owner is at hand when fingerprinting). Every calibration model, scored
model, and interface- and evasion-wrapped suspect of the benchmark (:func:`tafa.bench.run.interface_suspects`,
:func:`~tafa.bench.run.evasion_suspects`) is scored at each step with the interface recognition of
:func:`tafa.signature.interface.assemble_suspect`, and at "max": the largest of the scores at the
own step and at ``F`` (the same statistic for references and suspects, so its rank threshold is as
valid as any). "switch S" is what ``tafa verify`` does (:mod:`tafa.signature.scales`): rows whose
answers lie on a grid, or whose roughness (fine-to-coarse derivative size ratio relative to the
owner's) is above ``--switch``, are judged at scale S against the calibration models'
scores at S; the others at the own step. Printed per statistic: the threshold (the highest of the
calibration models, rank bound about 1/41) and, per family, the fraction of its models above it;
copies first, then independents (which should stay near 0); and the roughness ratios per family.

    python benchmarks/step_scales.py [--zoos digits-mlp diabetes-mlp] [--scales 0.5 1 2] [--factors 10 100]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.models import Model, TorchModel
from tafa.signature.interface import assemble_suspect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp"])
    parser.add_argument("--factors", nargs="+", type=float, default=[],
                        help="steps F times the probes' own")
    parser.add_argument("--scales", nargs="+", type=float, default=[0.5, 1.0, 2.0],
                        help="steps at these fractions of the domain's scale (root of its total variance)")
    parser.add_argument("--switch", type=float, default=2.0,
                        help="K: the coarse score decides when the suspect's fine/coarse derivative ratio is "
                             "more than K times off the owner's")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--families", nargs="*", default=None, help="only rows whose family starts with these")
    args = parser.parse_args()
    for zoo_name in args.zoos:
        started = time.perf_counter()
        (spec,) = [spec for spec in FULL if spec.name == zoo_name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        fingerprint = Fingerprint.create(owner, spec.domain, seed=0, second_stage=False)
        measurement = fingerprint.scheme.make_signature()
        scales = {"own": fingerprint}
        from tafa.domain import parse_domain

        draws = parse_domain(spec.domain, spec.input_shape).sample(4000, 5).reshape(4000, -1)
        scale = float(np.sqrt(draws.var(axis=0).sum()))
        steps = {f"x{factor:g}": np.asarray(fingerprint.probes.steps) * factor for factor in args.factors}
        steps.update({f"{fraction:g}s": np.full(len(fingerprint.probes), fraction * scale)
                      for fraction in args.scales})
        for name, chosen in steps.items():
            probes = replace(fingerprint.probes, steps=chosen)
            signature = measurement.assemble(probes, owner(measurement.inputs(probes)))
            scales[name] = replace(fingerprint, probes=probes, owner_signature=signature)

        def roughness(fine: dict, coarse: dict) -> float:
            a = np.linalg.norm(fine["derivatives"].reshape(len(fine["derivatives"]), -1), axis=1)
            b = np.linalg.norm(coarse["derivatives"].reshape(len(coarse["derivatives"]), -1), axis=1)
            return float(np.median(a / np.maximum(b, 1e-300)))

        own_rough = {name: roughness(fingerprint.owner_signature, scaled.owner_signature)
                     for name, scaled in scales.items() if name != "own"}
        ratios: dict[str, list[tuple[str, float]]] = {}

        def scores(model: Model, family: str = "") -> dict[str, float]:
            found, signatures = {}, {}
            for name, scaled in scales.items():
                inputs = measurement.inputs(scaled.probes)
                signature, recognised = assemble_suspect(measurement, scaled.probes, model(inputs),
                                                         scaled.owner_signature)
                signatures[name] = signature
                if name == "own":
                    grid = recognised.quantised is not None
                found[name] = scaled.compare(signature).value
            for name in scales:
                if name != "own":
                    found[f"max(own, {name})"] = max(found["own"], found[name])
                    ratio = roughness(signatures["own"], signatures[name]) / own_rough[name]
                    ratios.setdefault(name, []).append((family, ratio))
                    found[f"rough {name}"] = float(grid or ratio > args.switch)
            return found

        rows = [("calibration", 0, "calibration", scores(TorchModel(m, spec.input_shape), "calibration")) for _, m in
                zoo.with_role("calibration")]
        rows += [("scored", r.label, r.family, scores(TorchModel(m, spec.input_shape), r.family)) for r, m in
                 zoo.with_role("scored")]
        rows += [("scored", label, family, scores(model, family))
                 for _, label, family, model in interface_suspects(zoo) + evasion_suspects(zoo)
                 if args.families is None or family.startswith(tuple(args.families))]
        print(f"\n## {zoo_name} ({time.perf_counter() - started:.0f} s; domain scale {scale:.3g})")
        for name, found in ratios.items():
            by: dict[str, list[float]] = {}
            for family, ratio in found:
                by.setdefault(family.replace("/independent", ""), []).append(ratio)
            print(f"roughness ratio at {name} (suspect / owner), min..max per family: " + "; ".join(
                f"{family} {min(v):.2g}..{max(v):.2g}" for family, v in sorted(by.items())))
        statistics = [name for name in rows[0][3] if not name.startswith("rough ")]
        header = statistics + [f"switch {name}" for name in scales if name != "own"]
        print("| family | n | " + " | ".join(header) + " |")
        print("|:---|---:|" + "---:|" * len(header))
        lines = {name: max(found[name] for role, _, _, found in rows if role == "calibration") for name in statistics}
        print("| threshold (highest calibration) | | " + " | ".join(f"{lines[s]:.3f}" for s in statistics) + " |"
              + " |" * (len(header) - len(statistics)))
        families: dict[tuple[int, str], list[dict[str, float]]] = {}
        for role, label, family, found in rows:
            if role == "scored":
                families.setdefault((-label, family), []).append(found)
        switched = [name for name in scales if name != "own"]
        for (label, family), found in sorted(families.items()):
            cells = [f"{np.mean([f[s] > lines[s] for f in found]):.2f}" for s in statistics]
            cells += [f"{np.mean([f[n] > lines[n] if f[f'rough {n}'] else f['own'] > lines['own'] for f in found]):.2f}"
                      for n in switched]
            print(f"| {family}{'' if label else ' (independent)' if '/independent' not in family else ''} | "
                  f"{len(found)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
