"""``tafa bench``: a thin adapter over :func:`tafa.bench.run.run_benchmark` (imported when the
command runs, not when the parser is built)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from .options import SCHEME_NAMES, add_quiet

#: The benchmark's sizes (tafa.bench.scenarios.SIZES), named here so that --help imports nothing.
SIZES = ("smoke", "full")


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.run import run_benchmark

    command = "tafa " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--quiet")
    from ..scheme import ABLATION

    schemes = list(ABLATION) if args.ablation else args.schemes
    results = run_benchmark(args.size, schemes=schemes, out=Path(args.out), cache=Path(args.cache),
                            jobs=args.jobs, progress=not args.quiet, command=command,
                            zoo_filter=(lambda spec: spec.name in args.zoos) if args.zoos else None)
    print(f"wrote {args.out}/results.md, results.json and plots in {results['seconds']:.0f} s "
          f"(zoo {results['zoo_seconds']:.0f} s)")
    for name, entry in results["scenarios"].items():
        if "pooled" not in name:
            continue
        print(f"\n{name}: {entry.get('n_pos', 0)} derived, {entry.get('n_neg', 0)} independent")
        for scheme, row in entry["schemes"].items():
            print(f"  {scheme:<16} AUC {row['auc']:.3f}  ARUC {row['aruc']:.3f}  TPR@1%FPR {row['tpr_at_fpr_1pct']:.3f}"
                  f"  rule TPR {row['rule']['tpr']:.2f} FPR {row['rule']['fpr']:.2f}  queries {row['queries']}")
    return 0


def add_parsers(commands: Any) -> None:
    bench = commands.add_parser("bench", help="run every scheme on the benchmark zoos; write tables and plots")
    bench.add_argument("--size", default="full", choices=SIZES,
                       help="smoke: a check of a few minutes; full: the published figures (default)")
    bench.add_argument("--out", default="bench-out", help="directory for results.json, results.md and PNGs")
    bench.add_argument("--cache", default=".tafa-cache/zoo", help="zoo cache (content-addressed by recipe)")
    bench.add_argument("--jobs", type=int, default=2,
                       help="processes that train the zoo and score it, a zoo each (default 2)")
    bench.add_argument("--schemes", nargs="+", choices=SCHEME_NAMES, metavar="SCHEME",
                       help=f"only these schemes (of {', '.join(sorted(SCHEME_NAMES))})")
    bench.add_argument("--zoos", nargs="+", help="only these zoos (e.g. digits-mlp)")
    bench.add_argument("--ablation", action="store_true",
                       help="compare the method with one lever changed at a time (instead of the baselines)")
    add_quiet(bench)
    bench.set_defaults(run=cmd_bench)
