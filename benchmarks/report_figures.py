"""How long the benchmark report's two figures take to draw from a results file (session 28).

    python benchmarks/report_figures.py bench-out/s27-base/results.json   # 15 seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tafa.bench.report import plot_curves, plot_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results.json written by tafa bench")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    with tempfile.TemporaryDirectory() as folder:
        for plot in (plot_scores, plot_curves):
            started = time.perf_counter()
            plot(results, Path(folder) / f"{plot.__name__}.png")
            print(f"{plot.__name__}: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
