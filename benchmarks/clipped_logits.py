"""Innocent classifiers computed in bfloat16 whose logits are clipped to [-1, 1] before a float32 softmax:
how often the evasion check calls them evasive (issue 21; docs/method.md, "Clipped, then a float32 head").

The committed test classifier's owner and independent model (tests/fixtures), their last layer
scaled by each ``--scales`` factor (steeper logits, the same clip), served in ``--precision``
(bfloat16; float16; float32: none), clipped,
then through a float32 softmax; :func:`tafa.signature.consistency.check_evasion` on the default
fingerprint's first-stage inputs at ``--seeds`` seeds. Printed per model and scale: the checks
called evasive, those that read the service's inputs as rounded (quantised), and the largest last
piece of a segment (a fraction of the answers' spread; a jump needs 0.05 and to persist).

    python benchmarks/clipped_logits.py [--scales 1 5 20] [--seeds 10] [--precision bf16]    # 10 s
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from make import KINDS, load  # noqa: E402 - the committed models' own loader

from tafa import Fingerprint, TorchModel  # noqa: E402
from tafa.attacks.interface import get_interface  # noqa: E402
from tafa.domain import parse_domain  # noqa: E402
from tafa.signature.consistency import check_evasion  # noqa: E402

DOMAIN = "box:0,1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 5.0, 20.0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--precision", default="bf16", help="bf16, fp16, or float32 (none)")
    args = parser.parse_args()
    models = load("classifier")
    shape = KINDS["classifier"][0]
    fingerprint = Fingerprint.create(models["owner"], DOMAIN, input_shape=shape, second_stage=False)
    inputs = fingerprint.scheme.make_signature().inputs(fingerprint.probes)
    domain = parse_domain(DOMAIN, shape)
    print("| model | logits x | evasive | quantised | largest last piece |")
    print("|:---|---:|---:|---:|---:|")
    for name in ("owner", "independent"):
        for scale in args.scales:
            module = copy.deepcopy(models[name])
            last = [layer for layer in module.modules() if isinstance(layer, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight.mul_(scale)
                last.bias.mul_(scale)
            served = TorchModel(module, shape)
            chain = ("clip", "softmax") if args.precision == "float32" else (args.precision, "clip", "softmax")
            for interface in chain:
                served = get_interface(interface).apply(served)
            answers = served(inputs)
            found = [check_evasion(served, inputs, answers, domain, seed=seed) for seed in range(args.seeds)]
            print(f"| {name} | {scale:g} | {sum(f.evasive for f in found)} / {args.seeds} | "
                  f"{sum(f.quantised for f in found)} | {max(f.pieces_max for f in found):.3f} |", flush=True)


if __name__ == "__main__":
    main()
