"""What the default's attempt at a second stage costs an owner whose first layer cannot be aimed at.

A ResNet-18 at 64x64 (its first layer: 262,144 units over 12,288 input values, more gradient values
than the lines are aimed with: `tafa.probes.boundary.MAX_SWITCH_VALUES`) gets no boundary-geometry
stage. This times the attempt (`tafa.fingerprint._second_stage`, as `Fingerprint.create` makes it)
and counts the owner's queries it takes: none since session 25 (before, the owner was measured along
29 black-box lines, about 5,000 queries, and the stage then thrown away).

    python benchmarks/second_stage_attempt.py        # seconds
"""

from __future__ import annotations

import time

import torch

from tafa import TorchModel, parse_domain
from tafa.bench.architectures import build
from tafa.fingerprint import _second_stage
from tafa.scheme import get_scheme


def main() -> None:
    torch.set_num_threads(1)
    shape = (3, 64, 64)
    owner = TorchModel(build("resnet18", input_shape=shape, output_dim=10, seed=0).eval(), shape)
    started = time.perf_counter()
    _, record = _second_stage(get_scheme("tafa"), owner, parse_domain("box:0,1", shape), 0, None, False, False)
    print(f"second stage attempt: {time.perf_counter() - started:.1f} s, {owner.queries:,} owner queries; {record}")


if __name__ == "__main__":
    main()
