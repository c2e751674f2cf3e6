"""Which references bound the false-positive rate against siblings of a shared public parent.

On each parent zoo of ``tafa bench --size full`` the owner is fingerprinted with its parent
(``Fingerprint.create(..., parent=...)``, as ``tafa fingerprint --parent``), and the
parent-aware threshold is calibrated three ways: on the benchmark's calibration siblings (what
``tafa bench`` does; real fine-tunes of the parent on other data, which an owner rarely has),
on the data-free parent references the fingerprint stores (the parent and fine-tunes of it on
synthetic owner-labelled inputs; 20 and 100 of them), and on the owner's own re-fine-tunes of
the parent on its own data with other seeds and recipes (the zoo's 10 ``training``
negatives). For each: the scored siblings' false-positive rate with its exact 95% interval,
and the rule's true-positive rate on the owner's post-processed copies (extraction left out).

    python benchmarks/parent_calibration.py [--cache .tafa-cache/zoo] [--zoos digits-mlp-parent ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tafa.bench.metrics import binomial_ci
from tafa.bench.scenarios import PARENT_ZOOS
from tafa.bench.zoo import build_zoos
from tafa.decide.threshold import calibrate
from tafa.fingerprint import PARENT_REFERENCE_SCORES, Fingerprint
from tafa.models.base import TorchModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--zoos", nargs="+", default=[spec.name for spec in PARENT_ZOOS])
    parser.add_argument("--free", type=int, default=99, help="data-free fine-tunes of the parent (plus the parent)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    specs = [spec for spec in PARENT_ZOOS if spec.name in args.zoos]
    zoos = build_zoos(specs, Path(args.cache), jobs=1, progress=False, roles=["scored", "calibration", "training"])
    for zoo in zoos:
        spec = zoo.spec

        def wrap(model: torch.nn.Module, name: str = "model", shape: tuple[int, ...] = spec.input_shape) -> TorchModel:
            return TorchModel(model, shape, name=name)

        fingerprint = Fingerprint.create(wrap(zoo.owner, "owner"), spec.domain, seed=0,
                                         parent=wrap(zoo.models["parent"], "parent"), parent_references=args.free)
        scored = zoo.with_role("scored")
        siblings = [fingerprint.score(wrap(m)).value for r, m in scored if r.family == "sibling"]
        copies = [fingerprint.score(wrap(m)).value for r, m in scored if r.label == 1 and r.family != "extraction"]
        free = list(fingerprint.meta[PARENT_REFERENCE_SCORES])
        sources = {"siblings (the bench's calibration)": [fingerprint.score(wrap(m)).value
                                                          for _, m in zoo.with_role("calibration")],
                   f"data-free parent references ({len(free)})": free,
                   f"data-free parent references ({len(free[:20])})": free[:20],
                   "owner's re-fine-tunes of the parent (10)": [fingerprint.score(wrap(m)).value
                                                                for r, m in zoo.with_role("training") if r.label == 0]}
        print(f"== {spec.name}: scored siblings median {np.median(siblings):.3f}, max {max(siblings):.3f}; "
              f"copies median {np.median(copies):.3f}")
        for label, scores in sources.items():
            print(f"   {label}: median {np.median(scores):.3f}, max {max(scores):.3f}")
            for alpha in (0.05, 0.01):
                rule = calibrate(scores, alpha, parametric=True)
                hits = sum(value > rule.threshold for value in siblings)
                low, high = binomial_ci(hits, len(siblings))
                tpr = float(np.mean([value > rule.threshold for value in copies]))
                print(f"      alpha {alpha}: threshold {rule.threshold:.3f} ({rule.method}), sibling FPR "
                      f"{hits}/{len(siblings)} = {hits / len(siblings):.3f} [{low:.3f}, {high:.3f}], "
                      f"copies TPR {tpr:.2f}")


if __name__ == "__main__":
    main()
