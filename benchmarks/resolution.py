"""What a decision would need where an interface leaves too little (issue 20; :mod:`tafa.decide.resolution`).

On the committed test models (``tests/fixtures``: a regressor and a classifier, each with 18
independent references), verifies copies and the independent model behind grids and label-level
interfaces, at alpha 0.1 with the parametric tail (as the tests do), and prints per suspect: the
decision, the deciding stage's shortfall below its threshold, what the verdict estimates the
interface explains of it (a grid: what it costs an exact copy, modelled from the owner's signature;
labels: twice the sampling error), and the queries it says a decision would need. For each grid it
also measures what the grid really costs the owner itself at the coarse scale (its coarse score
through the grid, 1 without), the check on the model.

    python benchmarks/resolution.py        # about 30 s
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from make import KINDS, REFERENCES, load  # noqa: E402 - the committed models' own loader

from tafa import Fingerprint, TorchModel  # noqa: E402
from tafa.attacks import magnitude_prune, quantize  # noqa: E402
from tafa.attacks.interface import get_interface, rounded_to  # noqa: E402
from tafa.signature.interface import grid_spacing  # noqa: E402
from tafa.models import Model  # noqa: E402
from tafa.signature.interface import assemble_suspect  # noqa: E402


def owner_cost(fingerprint: Fingerprint, owner: Model) -> tuple[float, float | None]:
    """What the grid really costs the owner at the averaged coarse scale, and the grid's step read."""
    stage = fingerprint.coarse_stage(averaged=True)
    assert stage is not None
    measurement = stage.scheme.make_signature()
    signature, recognised = assemble_suspect(measurement, stage.probes, owner(measurement.inputs(stage.probes)),
                                             stage.owner_signature)
    step = None if recognised.quantised is None else grid_spacing(recognised.answers, recognised.quantised)
    return 1.0 - stage.compare(signature).value, step


def main() -> None:
    torch.set_num_threads(1)
    print("| owner | interface | suspect | decision | shortfall | explained | queries a decision would need "
          "| the grid's real cost to the owner |")
    print("|:---|:---|:---|:---|---:|---:|:---|---:|")
    for kind, domain, interfaces in [("regressor", "box:-2,2", ["round 0.1", "round 0.5", "round 2", "round 5"]),
                                     ("classifier", "box:0,1", ["integer_logits", "softmax_round2", "one_hot"])]:
        models = load(kind)
        shape = KINDS[kind][0]
        references = [TorchModel(models[f"reference{i:02d}"], shape, name=f"reference {i}") for i in range(REFERENCES)]
        fingerprint = Fingerprint.create(TorchModel(models["owner"], shape), domain, seed=0)
        suspects = {"int8 copy": quantize(models["owner"], 8), "70%-pruned copy": magnitude_prune(models["owner"], 0.7),
                    "independent": models["independent"]}
        for name in interfaces:
            if name.startswith("round"):
                interface = rounded_to(float(name.split()[1]))
            else:
                interface = get_interface(name)

            def wrap(module: torch.nn.Module, label: str, interface=interface, shape=shape) -> Model:
                return interface.apply(TorchModel(module, shape, name=label))
            real, step_read = owner_cost(fingerprint, wrap(models["owner"], "owner"))
            for label, module in suspects.items():
                verdict = fingerprint.verify(wrap(module, label), references, alpha=0.1, parametric=True)
                said = verdict.resolution
                for entry in said or [None]:
                    shortfall = "-" if entry is None else f"{entry['shortfall']:.3f} ({entry['stage']})"
                    explained = "-" if entry is None or entry["explained"] is None else f"{entry['explained']:.3f}"
                    hides = entry is not None and entry["explained"] is not None and \
                        entry["explained"] >= entry["shortfall"]
                    queries = "-" if entry is None else (f"about {entry['queries']:,}" if entry["queries"] is not None
                                                         else "not at this stage: the grid can hide it" if hides
                                                         else "none would")
                    cost = f"{real:.3f} (step {step_read:g})" if step_read is not None else "-"
                    print(f"| {kind} | {name} | {label} | {verdict.decision.value} | {shortfall} | {explained} | "
                          f"{queries} | {cost} |")


if __name__ == "__main__":
    main()
