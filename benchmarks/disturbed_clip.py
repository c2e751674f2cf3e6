"""A clip that hides its bounds (docs/security.md, "What is not defended"): measured on the fixtures.

A clipped regressor is recognised by its extreme value coming back exactly (docs/method.md, "Clipped
answers"). A pirate can add a small fixed disturbance to the clipped answers (``amplitude * |sin(x R)|``
pulled inside the bound, ``R`` of frequency 100) so that no two are equal. On the committed test
regressor (box:-2,2; 18 references at alpha 1/19), the int8 copy and the independent model served
clipped to [-1, 1], with amplitudes 0 (a plain clip), 1e-6 and 1e-3: the decision, the score, the
first stage's threshold and whether the clip was recognised.

    python benchmarks/disturbed_clip.py      # about 10 s
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.models import TorchModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from make import REFERENCES, load  # noqa: E402 - the fixtures' own loader

SHAPE = (10,)
PROJECTION = np.random.default_rng(0).normal(0.0, 100.0, size=(10, 1))


class DisturbedClip(TorchModel):
    """The module's answers clipped to [-1, 1], the clipped ones moved inside by a small fixed amount."""

    def __init__(self, module, amplitude: float) -> None:
        super().__init__(module, SHAPE, name=f"clip, disturbance {amplitude:g}")
        self.amplitude = amplitude

    def _forward(self, x: np.ndarray) -> np.ndarray:
        y = super()._forward(x)
        disturbance = self.amplitude * np.abs(np.sin(x.reshape(len(x), -1).astype(np.float64) @ PROJECTION))
        return np.where(np.abs(y) > 1, np.clip(y, -1, 1) - np.sign(y) * disturbance, y)


def main() -> None:
    models = load("regressor")
    fingerprint = Fingerprint.create(models["owner"], "box:-2,2", input_shape=SHAPE)
    references = [TorchModel(models[f"reference{i:02d}"], SHAPE, name=f"reference{i}") for i in range(REFERENCES)]
    print("| amplitude | suspect | decision | score | threshold | clip recognised |")
    print("|---:|:---|:---|---:|---:|:---|")
    for amplitude in (0.0, 1e-6, 1e-3):
        for name, module in (("int8 copy", quantize(models["owner"], 8)), ("independent", models["independent"])):
            verdict = fingerprint.verify(DisturbedClip(module, amplitude), references, alpha=1 / 19)
            threshold = verdict.calibration.stages[0].threshold if verdict.calibration else float("nan")
            recognised = any("inside the clip" in note for note in verdict.notes)
            print(f"| {amplitude:g} | {name} | {verdict.decision.value} | {verdict.score:.3f} | {threshold:.3f} | "
                  f"{'yes' if recognised else 'no'} |")


if __name__ == "__main__":
    main()
