"""Hostile KServe v2 services against `tafa verify`: time, peak memory and exit code per case.

Trains a small digits MLP owner and six independent references (seconds), fingerprints the
owner, then serves the owner on loopback (``tests/kserve_server.py``) once per attack and runs
``tafa verify FINGERPRINT URL --references DIR`` in a child process under ``/usr/bin/time``:
wall seconds, peak resident memory (the whole process, torch included), exit code, and the
last line on stderr (or the decision and notes of the verdict). docs/http.md quotes the table.
Cases whose options this ``tafa verify`` lacks are listed as not run.

    python benchmarks/redteam_http.py [--cases drip bomb ...] [--folder /tmp/tafa-redteam]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kserve_server import KServeServer, json_bomb, json_bomb_length  # noqa: E402

SHAPE = (1, 8, 8)


def _answer(body: dict[str, Any]) -> Callable[[int], tuple[list[bytes], int]]:
    raw = json.dumps(body).encode()
    return lambda batch: ([raw], len(raw))


def _out(shape: list[Any], data: list[Any]) -> dict[str, Any]:
    return {"outputs": [{"name": "output", "shape": shape, "datatype": "FP32", "data": data}]}


def _metadata(server: KServeServer, tensor: str, shape: list[Any]) -> bytes:
    metadata = server.metadata()
    metadata[tensor][0]["shape"] = shape
    return json.dumps(metadata).encode()


def _busy_forever(server: KServeServer) -> None:
    server.busy, server.retry_after = 10**9, "60"


BOMB = (255 << 20) // 2  # zeros in a 255 MiB answer

#: name -> (what the service does, how to switch it on, extra tafa options)
CASES: dict[str, tuple[str, Callable[[KServeServer], None], list[str]]] = {
    "honest": ("the owner, served honestly", lambda s: None, []),
    "drip": ("drips its answer, 1 byte/s", lambda s: setattr(s, "drip", 1.0), []),
    "drip-timeout-5": ("drips its answer, 1 byte/s", lambda s: setattr(s, "drip", 1.0), ["--timeout", "5"]),
    "429-forever": ("429 forever, Retry-After: 60", _busy_forever, []),
    "429-max-wait-10": ("429 forever, Retry-After: 60", _busy_forever, ["--max-wait", "10"]),
    "bomb-announced": ("255 MiB valid JSON answer, Content-Length given",
                       lambda s: setattr(s, "hostile_answer", lambda b: (json_bomb(BOMB), json_bomb_length(BOMB))), []),
    "bomb-streamed": ("255 MiB valid JSON answer, no Content-Length",
                      lambda s: setattr(s, "hostile_answer", lambda b: (json_bomb(BOMB), None)), []),
    "int-10^400": ("10^400 among the output values",
                   lambda s: setattr(s, "hostile_answer", lambda b: _answer(
                       _out([b, 10], [10**400] + [0] * (10 * b - 1)))(b)), []),
    "shape-0x10^30": ("output shape [0, 10^30], no data",
                      lambda s: setattr(s, "hostile_answer", _answer(_out([0, 10**30], []))), []),
    "metadata-10^30": ("metadata: output shape [-1, 10^30]",
                       lambda s: setattr(s, "hostile_metadata", _metadata(s, "outputs", [-1, 10**30])), []),
    "metadata-16k": ("metadata: input shape [-1, 1, 16000, 16000]",
                     lambda s: setattr(s, "hostile_metadata", _metadata(s, "inputs", [-1, 1, 16000, 16000])), []),
    "noisy": ("adds 1% Gaussian noise to each answer", lambda s: setattr(s, "noise", 0.01), []),
    "adaptive": ("answers an input seen before otherwise", lambda s: setattr(s, "adaptive", True), []),
}


def _models(folder: Path) -> tuple[torch.nn.Module, Path, Path]:
    """The owner, its fingerprint file and a folder of six independent ONNX references."""
    from tafa import Fingerprint
    from tafa.bench.architectures import mlp
    from tafa.bench.datasets import load_task
    from tafa.models.base import TorchModel
    from tafa.training import fit

    task = load_task("digits")

    def train(seed: int, part: str) -> torch.nn.Module:
        torch.manual_seed(seed)
        return fit(mlp(SHAPE, 10, hidden=(32, 32)), task.split(part), epochs=10, lr=1e-2, seed=seed)

    owner = train(0, "owner")
    references = folder / "references"
    references.mkdir(parents=True, exist_ok=True)
    for index in range(6):
        torch.onnx.export(train(10 + index, "other" if index % 2 else "owner"), (torch.zeros(1, *SHAPE),),
                          str(references / f"ref{index}.onnx"), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    fingerprint = folder / "owner.tafa"
    Fingerprint.create(TorchModel(owner, SHAPE), "box:0,1", seed=0).save(fingerprint, overwrite=True)
    return owner, fingerprint, references


def _run(case: str, owner: torch.nn.Module, fingerprint: Path, references: Path) -> dict[str, Any]:
    what, switch, options = CASES[case]

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return owner(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()

    with KServeServer(predict, input_shape=SHAPE, output_shape=(10,)) as server:
        switch(server)
        command = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "tafa.cli", "--quiet", "verify",
                   str(fingerprint), server.url, "--references", str(references), "--json", *options]
        child = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    *lines, usage = child.stderr.strip().splitlines()
    lines = [line for line in lines if not line.startswith("Command exited with non-zero status")]
    seconds, kib = usage.split()
    outcome = lines[-1] if lines else ""
    if child.returncode == 0:
        verdict = json.loads(child.stdout)
        flags = [note[:60] + "..." for note in verdict["notes"] if "INCONSISTENT" in note]
        consistency = verdict["suspect"]["consistency"]
        outcome = (f"{verdict['decision']}, score {verdict['score']:.3f}; re-asked {consistency['rechecked']}, "
                   f"max rel. diff {consistency['max_relative_difference']:.2g}" + (f"; {flags[0]}" if flags else ""))
    return {"case": case, "service": what, "options": " ".join(options), "rc": child.returncode,
            "seconds": float(seconds), "peak_mib": int(kib) // 1024, "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--folder", default="/tmp/tafa-redteam")
    args = parser.parse_args()
    torch.set_num_threads(1)
    owner, fingerprint, references = _models(Path(args.folder))
    print("| case | the service | tafa options | exit | seconds | peak MiB | outcome |")
    print("|---|---|---|---|---|---|---|")
    verify_help = subprocess.run([sys.executable, "-m", "tafa.cli", "verify", "--help"], capture_output=True,
                                 text=True).stdout
    for case in args.cases:
        missing = [option for option in CASES[case][2] if option.startswith("--") and option not in verify_help]
        if missing:
            print(f"| {case} | {CASES[case][0]} | {' '.join(CASES[case][2])} | - | - | - | not run: "
                  f"this tafa verify has no {', '.join(missing)} |", flush=True)
            continue
        started = time.monotonic()
        row = _run(case, owner, fingerprint, references)
        assert time.monotonic() - started < 600
        print(f"| {row['case']} | {row['service']} | {row['options'] or '(defaults)'} | {row['rc']} | "
              f"{row['seconds']:.1f} | {row['peak_mib']} | {row['outcome'].replace('|', '/')} |", flush=True)


if __name__ == "__main__":
    main()
