"""What one call to a sandboxed model file costs, against the runtime itself (session 28).

A model file (a suspect or a reference) is run in a sandbox worker process, one request and one
answer per call (:mod:`tafa.models.sandbox`); a small network answers in microseconds, so a
stage that asks many small batches (the geometry stage, looked at line by line) pays mostly for
the round trips. Per batch size: the mean time of a call through :class:`SandboxedModel`, of
onnxruntime's own ``run`` in this process, and of a sandboxed call with this process and its
worker on one CPU (``os.sched_setaffinity``; where the machine has more than one).

    python benchmarks/sandbox_calls.py [--calls 2000]   # 30 seconds
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from tafa.models.options import OpenOptions


def _mean_seconds(call, x: np.ndarray, calls: int) -> float:
    for _ in range(20):
        call(x)
    started = time.perf_counter()
    for _ in range(calls):
        call(x)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 10))  # the size of tests/'s digit classifiers
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "small.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        model = OpenOptions().open(str(path))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        cpus = sorted(os.sched_getaffinity(0))
        print(f"| batch | sandboxed call (µs) | onnxruntime in process (µs) | sandboxed, both on CPU {cpus[0]} (µs) |")
        print("|---:|---:|---:|---:|")
        for batch in (2, 10, 100):
            x = np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)
            sandboxed = _mean_seconds(model, x, args.calls)
            direct = _mean_seconds(lambda inputs: session.run(None, {"x": inputs}), x, args.calls)
            pinned = float("nan")
            if len(cpus) > 1:
                worker = model._pid  # the worker's process id, to pin it beside this one
                os.sched_setaffinity(0, {cpus[0]})
                os.sched_setaffinity(worker, {cpus[0]})
                try:
                    pinned = _mean_seconds(model, x, args.calls)
                finally:
                    os.sched_setaffinity(0, set(cpus))
                    os.sched_setaffinity(worker, set(cpus))
            print(f"| {batch} | {sandboxed * 1e6:.0f} | {direct * 1e6:.0f} | {pinned * 1e6:.0f} |", flush=True)
        model.close()


if __name__ == "__main__":
    main()
