"""What fingerprinting costs as networks grow: the scaling table of docs/scaling.md.

Default mode: one row per owner network (random weights: querying and analysing cost the
same as for trained ones), each measured in a fresh subprocess so that rows do not pollute
each other's peak memory: parameters, input size, ``Fingerprint.create`` wall-clock and CPU
seconds with the default scheme and time budget, the cost plan it chose and the shortcuts it
took, the stages made (and those left out because their search on the owner's gradients is
estimated over the budget), the peak resident memory of the whole process (``ru_maxrss``: Python, torch and the
model included), and the seconds and queries of one verification of a copy of the owner (no references).

    python benchmarks/fingerprint_cost.py [--rows mlp lenet cnn resnet18 resnet18-64 resnet50] [--time-budget S]

``--owner-cost``: the previous mode, the seconds per scheme for the benchmark's owners,
references included for the schemes that make data-free ones (``tafa-free``, ``tafa-select``),
which ``tafa bench`` leaves out (its zoo builds them once for every scheme):

    python benchmarks/fingerprint_cost.py --owner-cost [--schemes tafa tafa-free] [--zoos digits-mlp ...] \\
        --cache .tafa-cache/zoo
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

#: name: (architecture, input shape, outputs) -- "cnn" is the 1.2M MNIST CNN of verify_cost.py.
ROWS = {
    "mlp": ("mlp", (1, 8, 8), 10),
    "lenet": ("lenet", (1, 28, 28), 10),
    "cnn": ("cnn-1.2M", (1, 28, 28), 10),
    "resnet18": ("resnet18", (3, 32, 32), 10),
    "resnet18-64": ("resnet18", (3, 64, 64), 10),
    "resnet50": ("resnet50", (3, 224, 224), 1000),
}


def _owner(row: str):
    import torch

    architecture, shape, outputs = ROWS[row]
    if architecture == "cnn-1.2M":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from verify_cost import cnn

        return cnn(0), shape
    from tafa.bench.architectures import build

    torch.manual_seed(0)
    return build(architecture, input_shape=shape, output_dim=outputs, seed=0).eval(), shape


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_row(row: str, budget: float | None, threads: int) -> dict:
    """One row, in this process (the parent runs each in a fresh one)."""
    import copy

    import torch

    from tafa import Fingerprint, TorchModel
    from tafa.fingerprint import DEFAULT_TIME_BUDGET

    torch.set_num_threads(threads)
    owner, shape = _owner(row)
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), _cpu_seconds()
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=shape,
                                     time_budget=DEFAULT_TIME_BUDGET if budget is None else budget)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    suspect = TorchModel(copy.deepcopy(owner).eval(), shape)
    verify_wall, verify_cpu = time.perf_counter(), _cpu_seconds()
    verdict = fingerprint.verify(suspect)
    verify_wall, verify_cpu = time.perf_counter() - verify_wall, _cpu_seconds() - verify_cpu
    return {"row": row, "parameters": sum(p.numel() for p in owner.parameters()), "input": "x".join(map(str, shape)),
            "fingerprint_s": wall, "fingerprint_cpu_s": cpu,
            "estimate_s": fingerprint.meta.get("cost_estimate_seconds"),
            "plan": fingerprint.meta.get("cost_plan"), "shortcuts": fingerprint.meta.get("shortcuts"),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "verify_s": verify_wall, "verify_cpu_s": verify_cpu, "queries": verdict.queries,
            "self_score": verdict.score, "load_avg_1min": load, "threads": threads,
            "stages": [*fingerprint.stage_names(), *(["labels"] if fingerprint.labels is not None else [])],
            "over_budget": [f"{key.removesuffix('_stage').replace('_', '-')} ~{_estimate(value['why'])} s"
                            for key, value in fingerprint.meta.items()
                            if isinstance(value, dict) and "time budget" in str(value.get("why", ""))]}


def _estimate(why: str) -> str:
    """The estimate in a stage's why (``"... about 6,070 s on one core ..."``)."""
    found = re.search(r"about ([\d,.]+) s", why)
    return found.group(1) if found else "?"


def scaling_table(rows: list[str], budget: float | None, threads: int) -> list[dict]:
    results = []
    print("| owner | parameters | input | fingerprint s (CPU s) | estimate s | peak memory | verification s (queries) "
          "| plan (shortcuts) | stages (left out over the budget) | load |")
    print("|---|---:|---|---:|---:|---:|---:|---|---|---:|")
    for row in rows:
        command = [sys.executable, __file__, "--row", row, "--threads", str(threads)]
        if budget is not None:
            command += ["--time-budget", str(budget)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"| {row} | failed: {done.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        shortcuts = ", ".join(result["shortcuts"] or []) or "none"
        print(f"| {row} | {result['parameters'] / 1e6:.2f}M | {result['input']} | {result['fingerprint_s']:.1f} "
              f"({result['fingerprint_cpu_s']:.1f}) | {result['estimate_s'] or 0:.0f} | "
              f"{result['peak_rss_mib']:,.0f} MiB | {result['verify_s']:.2f} ({result['queries']:,}) | "
              f"{result['plan']} ({shortcuts}) | "
              f"{', '.join(result['stages'])} ({', '.join(result['over_budget']) or 'none'}) | "
              f"{result['load_avg_1min']:.1f} |", flush=True)
    return results


def owner_cost(schemes: list[str], zoos: list[str], cache: str) -> None:
    import torch

    from tafa import Fingerprint
    from tafa.bench.scenarios import FULL
    from tafa.bench.zoo import build_zoos

    torch.set_num_threads(1)
    specs = [spec for spec in FULL if spec.name in zoos]
    print(f"{'owner':14s} {'parameters':>10s} " + " ".join(f"{s:>12s}" for s in schemes) + "   (seconds)")
    for zoo in build_zoos(specs, cache, progress=False):
        seconds = []
        for scheme in schemes:
            started = time.perf_counter()
            Fingerprint.create(zoo.owner, zoo.spec.domain, input_shape=zoo.spec.input_shape, scheme=scheme, seed=0)
            seconds.append(time.perf_counter() - started)
        parameters = sum(p.numel() for p in zoo.owner.parameters())
        print(f"{zoo.spec.name:14s} {parameters:10,d} " + " ".join(f"{s:12.1f}" for s in seconds), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds (default: the library's default budget)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the command line uses 1)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--owner-cost", action="store_true", help="seconds per scheme for the benchmark's owners")
    parser.add_argument("--schemes", nargs="+", default=["tafa", "tafa-free", "tafa-select"])
    parser.add_argument("--zoos", nargs="+", default=None)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    if args.row:
        print(json.dumps(measure_row(args.row, args.time_budget, args.threads)))
        return
    if args.owner_cost:
        from tafa.bench.scenarios import FULL

        owner_cost(args.schemes, args.zoos or [spec.name for spec in FULL], args.cache)
        return
    results = scaling_table(args.rows, args.time_budget, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
