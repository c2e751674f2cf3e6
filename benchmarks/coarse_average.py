"""Can averaging remove a ripple (or a rounding) at the coarse scale? (issue 21, measured, not built)

The coarse scale decides a suspect whose answers at the fingerprint's step are not a ReLU network's
(a ripple ``0.3 sin(x R)``, answers rounded onto a grid; docs/method.md, "The coarse scale"). On the
regression zoos it catches 0.62 of the ripple copies and 0.75 of the rounded ones at alpha 0.01. This
measures, for each zoo's rows of the chosen families, the coarse-scale score with the suspect's
differences averaged over several coarse steps jittered around the fingerprint's (``h (1 + j)`` for
each ``j`` of ``--jitter``; the references averaged the same way), and how many of the zoo's
calibration models score at or above it (0: above every reference). One step (no averaging) is
printed first.

    python benchmarks/coarse_average.py                      # regression zoos, ripple, +-2% and 6%
    python benchmarks/coarse_average.py --zoos diabetes-mlp --families ripple round1 \\
        --jitter $(python -c "import numpy; print(*numpy.linspace(-0.1, 0.1, 16).round(3))")

Reads the zoos from the benchmark's cache (``tafa bench --size full --cache .tafa-cache/zoo``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.bench.run import evasion_suspects, interface_suspects
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.models import Model, TorchModel
from tafa.signature.scales import coarse_probes


def averaged_score(stage: Fingerprint, model: Model, jitter: list[float]) -> float:
    """The coarse stage's score of ``model`` with its differences averaged over the jittered steps."""
    measurement = stage.scheme.make_signature()
    signatures = []
    for j in jitter:
        probes = coarse_probes(stage.probes, np.asarray(stage.probes.steps) * (1 + j))
        signatures.append(measurement.assemble(probes, model(measurement.inputs(probes))))
    averaged = dict(signatures[0])
    averaged["derivatives"] = np.mean([s["derivatives"] for s in signatures], axis=0)
    return stage.compare(averaged).value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp"])
    parser.add_argument("--families", nargs="+", default=["ripple"])
    parser.add_argument("--jitter", nargs="+", type=float, default=[-0.06, -0.02, 0.02, 0.06])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for name in args.zoos:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape, name="owner"), spec.domain, seed=0,
                                         second_stage=False)
        stage = fingerprint.coarse_stage()
        assert stage is not None
        calibration = [TorchModel(model, spec.input_shape, name=r.name) for r, model in zoo.with_role("calibration")]
        rows = [(row, label) for row, label, family, _ in evasion_suspects(zoo) + interface_suspects(zoo)
                if family.split("/")[1] in args.families]
        suspects = {row: suspect for row, _, _, suspect in evasion_suspects(zoo) + interface_suspects(zoo)}
        print(f"\n{name}: {len(calibration)} calibration models")
        print("| steps | references: highest | " + " | ".join(row for row, _ in rows) + " |")
        print("|:---|---:|" + "---:|" * len(rows))
        for jitter in ([0.0], list(args.jitter)):
            references = sorted(averaged_score(stage, model, jitter) for model in calibration)
            cells = []
            for row, label in rows:
                value = averaged_score(stage, suspects[row], jitter)
                above = sum(r >= value for r in references)
                cells.append(f"{'copy' if label else 'independent'} {value:.3f} ({above} above)")
            print(f"| {len(jitter)} | {references[-1]:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
