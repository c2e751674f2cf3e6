"""Cost of fingerprinting and verifying a ~1M-parameter CNN (issue: verification under 1 s).

Untrained weights cost the same to query as trained ones; the CNN is MNIST-shaped
(1x28x28 -> 10) with 1.2M parameters. Prints parameter count, fingerprint seconds, and the
median of 5 verification times (queries sent, signature, score), on the current torch
thread setting (the CLI uses one thread).

    python benchmarks/verify_cost.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from tafa import Fingerprint, TorchModel


def cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Linear(128, 10)).eval()


def main() -> None:
    torch.set_num_threads(1)
    owner, suspect = cnn(0), cnn(1)
    parameters = sum(p.numel() for p in owner.parameters())
    started = time.perf_counter()
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=(1, 28, 28))
    created = time.perf_counter() - started
    times = []
    for _ in range(5):
        started = time.perf_counter()
        verdict = fingerprint.verify(TorchModel(suspect, (1, 28, 28)))
        times.append(time.perf_counter() - started)
    print(f"parameters {parameters:,}  fingerprint {created:.1f} s  verification {statistics.median(times):.3f} s "
          f"(median of 5, {verdict.queries} queries, score {verdict.score:.3f}, torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
