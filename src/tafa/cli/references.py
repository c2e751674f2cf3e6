"""``tafa references``: a thin adapter over :func:`tafa.make_references.make_references` (imported
when the command runs)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ..errors import printable
from .options import add_quiet, input_shape


def _widths(text: str) -> tuple[int, ...]:
    """``--widths 32,64,128`` -> ``(32, 64, 128)``."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 32,64,128, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"expected widths >= 1, got {text!r}")
    return widths


def _quality(text: str) -> float:
    """``--min-quality 0.9`` -> ``0.9``: a finite number (an R^2 may be negative)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a held-out accuracy or R^2 like 0.9, got {text!r}")
    return value


def cmd_references(args: argparse.Namespace) -> int:
    from ..make_references import MAX_DATA_BYTES, load_data, make_references

    data = load_data(args.data, max_bytes=args.max_data_bytes or MAX_DATA_BYTES, input_shape=args.input_shape)
    made = make_references(args.factory, data, args.out, count=args.count, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, fraction=args.fraction, widths=args.widths or (),
                           seed=args.seed, task=args.task, jobs=args.jobs, progress=not args.quiet,
                           min_quality=args.min_quality, notify=None if args.json or args.quiet else
                           lambda line: print(printable(line), file=sys.stderr))
    print(json.dumps(made.to_dict(), indent=2) if args.json else printable(made.render()))
    warning = made.quality_warning()
    if warning is not None:  # even with --quiet: it is about the bound, not about progress
        print(f"tafa: warning: {printable(warning)}", file=sys.stderr)
    return 0


def add_parsers(commands: Any) -> None:
    refs = commands.add_parser("references", help="train independent reference models from your architecture(s) "
                                                  "and data, for verify --references",
                               description="Train COUNT independent reference models (other seeds, other random "
                                           "parts of the data, other widths) from your architecture factories and "
                                           "data file, written as ONNX files into OUT for `tafa verify "
                                           "--references OUT`. Resumable: a rerun with the same settings skips "
                                           "the references already written. What makes references fair: "
                                           "docs/references.md.")
    refs.add_argument("--factory", action="append", required=True, metavar="MODULE:FUNCTION",
                      help="package.module:function or path/to/file.py:function returning an untrained nn.Module "
                           "(repeat for several architectures, used in turn); a factory with a 'width' argument is "
                           "also built at each of --widths")
    refs.add_argument("--data", required=True, metavar="FILE",
                      help=".npz with arrays x (inputs) and y (targets), or .csv with the target in the last column")
    refs.add_argument("--out", required=True, metavar="DIR", help="folder to write the references (and "
                                                                  "references.json) into")
    refs.add_argument("--count", type=int, default=40, help="references to have in DIR (default 40)")
    refs.add_argument("--epochs", type=int, default=20, help="training epochs per reference (default 20)")
    refs.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 0.001)")
    refs.add_argument("--batch-size", type=int, default=64, help="training batch size (default 64)")
    refs.add_argument("--fraction", type=float, default=0.8,
                      help="each reference trains on its own random FRACTION of the data (default 0.8); its held-out "
                           "quality is measured on the rest")
    refs.add_argument("--widths", type=_widths, metavar="W,W,...",
                      help="widths for factories that take a 'width' argument, used in turn")
    refs.add_argument("--seed", type=int, default=0, help="base seed; reference i's seed is drawn from (SEED, i)")
    refs.add_argument("--task", choices=("classification", "regression"),
                      help="default: classification when the targets are class numbers 0, 1, ... and the network "
                           "answers several values, else regression")
    refs.add_argument("--input-shape", type=input_shape, metavar="SHAPE",
                      help="reshape each input to SHAPE, e.g. 1,8,8 (a CSV row is flat)")
    refs.add_argument("--jobs", type=int, default=1, help="references trained at once, in separate processes "
                                                          "(default 1)")
    refs.add_argument("--min-quality", type=_quality, metavar="Q",
                      help="refuse (exit 2, moved to OUT/refused/) every reference in OUT whose held-out accuracy "
                           "(classification) or R^2 (regression) is below Q; without it, a reference more than "
                           "0.1 below the others' median is only named in a warning")
    refs.add_argument("--max-data-bytes", type=int, metavar="BYTES",
                      help="refuse a larger data file (default 1 GiB)")
    refs.add_argument("--json", action="store_true", help="print what was made as one JSON object")
    add_quiet(refs)
    refs.set_defaults(run=cmd_references)
