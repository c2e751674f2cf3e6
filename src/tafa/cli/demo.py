"""``tafa demo``: a thin adapter over :func:`tafa.bench.demo.run_demo` (imported when the
command runs)."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_quiet


def cmd_demo(args: argparse.Namespace) -> int:
    from ..bench.demo import run_demo

    run_demo(seed=args.seed, progress=not args.quiet, out=print, all_kinds=args.all_kinds)
    return 0


def add_parsers(commands: Any) -> None:
    demo = commands.add_parser("demo", help="train a small owner on bundled digits, fingerprint it, verify a "
                                            "pirated copy and an independent model (its 8 references support "
                                            "alpha 0.01 only by a parametric bound, which it names)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--all-kinds", action="store_true",
                      help="run the same job on a classifier, a regressor and a generator; print one table")
    add_quiet(demo)
    demo.set_defaults(run=cmd_demo)
