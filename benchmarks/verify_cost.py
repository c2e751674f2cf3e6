"""Cost of fingerprinting and verifying a ~1M-parameter CNN (issue: verification under 1 s).

Untrained weights cost the same to query as trained ones; the CNN is MNIST-shaped
(1x28x28 -> 10) with 1.2M parameters. Prints parameter count, fingerprint seconds, and the
median of 5 verification times (queries sent, signature, score), on the current torch
thread setting (the CLI uses one thread): for the suspect held in memory (``TorchModel``,
in-process) and for the suspect opened from a file as every untrusted file is, through the
sandbox (:mod:`tafa.models.sandbox`), as ONNX and as safetensors with a factory. The
sandbox's start-up (the zygote, once per process, and one worker per file) is reported apart.

    python benchmarks/verify_cost.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from tafa import Fingerprint, TorchModel
from tafa.models import open_model


def cnn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Linear(128, 10)).eval()


def suspect_cnn() -> nn.Sequential:
    """The factory of the safetensors suspect (``benchmarks/verify_cost.py:suspect_cnn``)."""
    return cnn(1)


def _median_verification(fingerprint: Fingerprint, suspect) -> tuple[float, object]:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        verdict = fingerprint.verify(suspect)
        times.append(time.perf_counter() - started)
    return statistics.median(times), verdict


def main() -> None:
    torch.set_num_threads(1)
    owner, suspect = cnn(0), cnn(1)
    parameters = sum(p.numel() for p in owner.parameters())
    started = time.perf_counter()
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=(1, 28, 28))
    created = time.perf_counter() - started
    median, verdict = _median_verification(fingerprint, TorchModel(suspect, (1, 28, 28)))
    print(f"parameters {parameters:,}  fingerprint {created:.1f} s  verification {median:.3f} s "
          f"(median of 5, {verdict.queries} queries, score {verdict.score:.3f}, torch threads {torch.get_num_threads()}, "
          "in-process TorchModel)")
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "suspect.onnx"
        torch.onnx.export(suspect, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        weights = Path(folder) / "suspect.safetensors"
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in suspect.state_dict().items()}, str(weights))
        factory = f"{Path(__file__).resolve()}:suspect_cnn"
        for label, path, options in (("ONNX", onnx_path, {}),
                                     ("safetensors + factory", weights, {"factory": factory,
                                                                         "input_shape": (1, 28, 28)})):
            started = time.perf_counter()
            model = open_model(path, **options)
            opened = time.perf_counter() - started
            median, verdict = _median_verification(fingerprint, model)
            print(f"  sandboxed {label}: verification {median:.3f} s (median of 5, {verdict.queries} queries, "
                  f"score {verdict.score:.3f}); opening {opened:.2f} s (sandbox start-up included)")


if __name__ == "__main__":
    main()
