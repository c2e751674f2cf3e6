"""The pirate who has read the data-free label stage (issue 20, docs/security.md): a copy behind a
label-level interface that answers the inputs it is itself unsure of (the ``q`` least confident of
its own users' digits) from an independent model (:class:`tafa.attacks.evasion.ConfidenceRouter`).
The stage's points sit near the owner's boundaries, where the copy is unsure too.

On the committed test classifier (its int8 copy, the independent model as the decoy, the 40
references, alpha 0.05), for each ``q`` and interface: the share of the stage's points routed, the
verdict, and each stage's score against its threshold; then the same with ``--owner-data`` (300 of the
owner's digits, where the evasion check starts from).

    python benchmarks/free_label_router.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))

from make import REFERENCES, load  # noqa: E402 - the committed test models' loader

from tafa import Fingerprint  # noqa: E402
from tafa.attacks import quantize  # noqa: E402
from tafa.attacks.evasion import ConfidenceRouter  # noqa: E402
from tafa.attacks.interface import get_interface  # noqa: E402
from tafa.bench.datasets import load_task  # noqa: E402
from tafa.models import TorchModel  # noqa: E402

SHAPE = (1, 8, 8)


def main() -> None:
    models, more = load("classifier"), load("classifier-more")
    extra = sorted(name for name in more if name.startswith("reference"))
    references = [TorchModel(m, SHAPE, name=f"r{i}") for i, m in
                  enumerate([models[f"reference{i:02d}"] for i in range(REFERENCES)] + [more[n] for n in extra])]
    fingerprint = Fingerprint.create(models["owner"], "box:0,1", input_shape=SHAPE)
    assert fingerprint.labels is not None
    users = load_task("digits").split("other").x.numpy()
    owner_digits = load_task("digits").split("owner").x.numpy()[:300]
    for share, data in ((0.05, None), (0.1, None), (0.25, None), (0.25, owner_digits), (0.5, owner_digits)):
        served = ConfidenceRouter(TorchModel(quantize(models["owner"], 8), SHAPE, name="int8 copy"),
                                  TorchModel(models["independent"], SHAPE, name="decoy"), users, share)
        routed = float(np.mean(served.route(fingerprint.labels.probes.points)))
        for name in ("one_hot", "top3", "softmax_round2"):
            verdict = fingerprint.verify(get_interface(name).apply(served), references, alpha=0.05, owner_data=data)
            stages = ", ".join(f"{s['name']} not asked (an earlier stage decided)" if s["score"] is None
                               else f"{s['name']} {s['score']:.3f} vs {s['threshold']:.3f}" if "threshold" in s
                               else f"{s['name']} {s['score']:.3f} (not calibrated: too few references)"
                               for s in verdict.to_dict()["stages"])
            print(f"users routed {share:.0%}{' (--owner-data)' if data is not None else ''}, label points routed "
                  f"{routed:.2f}, {name:<15} "
                  f"{verdict.decision.value:<11} {stages}")


if __name__ == "__main__":
    main()
