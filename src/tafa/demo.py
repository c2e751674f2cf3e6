"""``tafa demo``: the whole job on the bundled digits, in well under a minute.

An owner trains an MLP on its half of scikit-learn's digits. A pirate steals it, prunes
half its weights and fine-tunes it on other data; another developer trains an
independent model of the same task. The owner fingerprints its model with no data,
calibrates the threshold on a handful of independently trained reference models, and
verifies both suspects.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .attacks import AttackContext, get_attack
from .bench.architectures import build
from .bench.datasets import load_task
from .fingerprint import Fingerprint
from .models import TorchModel
from .training import fit

#: Architectures of the independent reference models and of the independent suspect.
REFERENCE_ARCHITECTURES = ("mlp", "mlp", "mlp_wide", "mlp_deep", "cnn", "mlp", "mlp_small", "cnn")


def run_demo(seed: int = 0, progress: bool = True, out: Callable[[str], None] = print) -> dict[str, str]:
    """Run the demo, printing as it goes; returns the decision for each suspect."""
    started = time.perf_counter()
    task = load_task("digits")
    owner_data, other_data = task.split("owner"), task.split("other")

    def train(architecture: str, data_seed: int, data: object) -> torch.nn.Module:
        model = build(architecture, input_shape=task.input_shape, output_dim=task.output_dim, seed=data_seed)
        return fit(model, data, epochs=20, lr=1e-3, seed=data_seed)  # type: ignore[arg-type]

    out("1. The owner trains an MLP on its half of the digits.")
    owner = train("mlp", seed, owner_data)
    out("2. A pirate steals it, prunes 50% of its weights and fine-tunes it on its own data;")
    context = AttackContext(data=other_data, seed=seed + 1)
    pirated = get_attack("prune50_ft").apply(owner, context)
    out("   another developer trains an independent MLP on the same task.")
    independent = train("mlp", seed + 100, other_data)
    out(f"3. The owner trains {len(REFERENCE_ARCHITECTURES)} independent reference models "
        "(other seeds, both halves, other architectures) to calibrate the threshold.")
    references = [TorchModel(train(arch, seed + 200 + i, owner_data if i % 2 else other_data), task.input_shape,
                             name=f"reference-{i}-{arch}") for i, arch in enumerate(REFERENCE_ARCHITECTURES)]
    out("4. Fingerprint the owner: no data, only the domain box [0, 1] of the pixels.")
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=task.input_shape, seed=seed, progress=progress)
    info = fingerprint.describe()
    out(f"   {info['points']} probes x {info['directions']} directions ({info['analysis']}), "
        f"{info['queries_per_verification']} queries per verification, {info['fingerprint_seconds']:.1f} s")
    calibration = fingerprint.calibrate(references, alpha=0.01, progress=progress)
    decisions = {}
    for name, model in (("pirated copy (prune 50% + fine-tune)", pirated), ("independent model", independent)):
        verdict = fingerprint.verify(TorchModel(model, task.input_shape, name=name), calibration=calibration)
        decisions[name] = verdict.decision
        out(f"\n5. Verify the {name}:")
        out("\n".join("   " + line for line in verdict.render().splitlines()))
    out(f"\nDone in {time.perf_counter() - started:.1f} s.")
    return decisions
