"""How long the ``tafa`` command takes to start: ``--help`` of every command, and the fixed cost
of ``tafa verify`` on a small ONNX suspect (issue 15: under 1 s and under 2 s).

Each command runs in a fresh Python process (as the console script runs it), ``--runs`` times;
the table shows the median, the fastest and the slowest wall-clock seconds.

    python benchmarks/cli_startup.py [--runs 7] [--only verify] [--baseline OTHER/src]

``--only verify`` times the verification alone; ``--baseline DIR`` also times it with the
``tafa`` package found in ``DIR`` (say, an older checkout's ``src``), each baseline run right
after a run of this tree, so that both see the same load on a shared machine. Beside the wall
clock, the CPU seconds of the command and its children (the sandbox's zygote and worker)
are shown: on a busy machine they are the firmer figure.

The verify case fingerprints a small digits MLP (8 probes x 2 directions: 40 queries, first
stage only, so that the verification itself costs milliseconds) in a temporary folder first;
what is timed is the whole command: interpreter start, imports, reading the fingerprint,
opening the ONNX file, the queries and the verdict. A second row times the same owner's
default fingerprint with its boundary-geometry second stage (no references: both stages run).

Beside the commands, for comparison (no limits): ``python -c "import torch"`` (the floor under
any command that imports torch), ``python -c "import onnxruntime, numpy"`` (the floor under a
verification of an ONNX suspect, which imports neither torch in the command nor in the
sandbox's ONNX zygote) and the ONNX zygote's own imports (what it imports before it forks a
worker, :data:`tafa.models.zygote.FLAVOURS`), each in a fresh process at the same time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Commands timed for ``--help``, and the limit each must meet (seconds, median).
HELP_LIMIT = 1.0
VERIFY_LIMIT = 2.0
HELP_COMMANDS = ([], ["fingerprint"], ["verify"], ["info"], ["demo"], ["registry"], ["registry", "add"],
                 ["registry", "list"], ["registry", "remove"], ["registry", "scans"], ["scan"], ["bench"])


def _once(command: list[str], environment: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every child it waited for) of one run."""
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def _time(argv: list[str], runs: int, command: list[str] | None = None) -> list[float]:
    command = command or [sys.executable, "-m", "tafa.cli", *argv]
    return [_once(command)[0] for _ in range(runs)]


Runs = list[tuple[float, float]]


def _time_pair(argv: list[str], runs: int, baseline: str) -> tuple[Runs, Runs]:
    """This tree's and ``baseline``'s runs of ``tafa ARGV``, alternated (same load for both)."""
    command = [sys.executable, "-m", "tafa.cli", *argv]
    ours, theirs = [], []
    here = str(Path(__file__).resolve().parents[1] / "src")
    for _ in range(runs):
        ours.append(_once(command, {**os.environ, "PYTHONPATH": here}))
        theirs.append(_once(command, {**os.environ, "PYTHONPATH": baseline}))
    return ours, theirs


def _verify_case(folder: Path, second_stage: bool = False) -> tuple[list[str], str]:
    """The command line of the verify case and its name (with the queries it sends): the
    first stage alone (the fixed cost), or the default's two stages (no references, so both run)."""
    import torch

    from tafa import Fingerprint
    from tafa.bench.architectures import build

    owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
    suspect = folder / "suspect.onnx"
    torch.onnx.export(owner, (torch.zeros(1, 1, 8, 8),), str(suspect), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2, seed=0,
                                     second_stage=None if second_stage else False)
    path = folder / ("two-stages.tafa" if second_stage else "owner.tafa")
    fingerprint.save(path)
    queries = " + ".join(str(q) for q in fingerprint.stage_queries())
    name = f"tafa verify {path.name} suspect.onnx ({queries} queries)"
    return ["--quiet", "verify", str(path), str(suspect), "--json"], name


Row = tuple[str, list[float], "float | None"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--only", choices=("verify",), help="time only the verification")
    parser.add_argument("--baseline", metavar="SRC", help="also time the verification with the tafa found in SRC")
    args = parser.parse_args()
    rows: list[Row] = [] if args.only else [
        (" ".join(["tafa", *command, "--help"]), _time([*command, "--help"], args.runs), HELP_LIMIT)
        for command in HELP_COMMANDS]
    cpu: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        argv, name = _verify_case(Path(folder))
        if args.baseline:
            ours, theirs = _time_pair(argv, args.runs, args.baseline)
            rows.append((name, [w for w, _ in ours], VERIFY_LIMIT))
            rows.append((f"the same, baseline {Path(args.baseline).resolve().parent.name}", [w for w, _ in theirs],
                         VERIFY_LIMIT))
            cpu += [(name, [c for _, c in ours]), ("the same, baseline", [c for _, c in theirs])]
        else:
            runs = [_once([sys.executable, "-m", "tafa.cli", *argv]) for _ in range(args.runs)]
            rows.append((name, [w for w, _ in runs], VERIFY_LIMIT))
            cpu.append((name, [c for _, c in runs]))
        # the default's two stages, both run (no references): the fixed cost and 4,930 more queries
        argv, name = _verify_case(Path(folder), second_stage=True)
        runs = [_once([sys.executable, "-m", "tafa.cli", *argv]) for _ in range(args.runs)]
        rows.append((name, [w for w, _ in runs], None))
        cpu.append((name, [c for _, c in runs]))
    # The floors, measured at the same time (not limits): any command that imports torch; one
    # that imports onnxruntime and numpy alone; the ONNX zygote's imports before its first fork.
    from tafa.models.zygote import FLAVOURS

    zygote = f"import {', '.join(FLAVOURS['onnx'])}; import tafa.models.files"
    for name, code in (("(python -c 'import torch', for comparison)", "import torch"),
                       ("(python -c 'import onnxruntime, numpy', for comparison)", "import onnxruntime, numpy"),
                       ("(the ONNX zygote's imports, for comparison)", zygote)):
        rows.append((name, _time([], args.runs, [sys.executable, "-c", code]), None))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs each, wall-clock seconds\n")
    width = max(len(name) for name, _, _ in rows)
    print(f"| {'command':<{width}} | median | fastest | slowest | limit | met |")
    print(f"|{'-' * (width + 2)}|-------:|--------:|--------:|------:|-----|")
    for name, seconds, limit in rows:
        median = statistics.median(seconds)
        met = "" if limit is None else "yes" if median < limit else "NO"
        print(f"| {name:<{width}} | {median:6.2f} | {min(seconds):7.2f} | {max(seconds):7.2f} | "
              f"{'' if limit is None else f'{limit:.1f}':>5} | {met:<3} |")
    print("\nCPU seconds (the command and its children), median: "
          + "; ".join(f"{name}: {statistics.median(values):.2f}" for name, values in cpu)
          + f" (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
