"""The command line, thin: parse, call the library, print.

Every error caused by input from outside (a :class:`~tafa.errors.TafaError`) becomes one
line on stderr and exit code 2; see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import InvalidParameter, TafaError, one_line

#: Exception type -> exit code. The first matching row wins.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (TafaError, 2),
    (KeyboardInterrupt, 130),
]

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,8, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return shape


def _model_options(parser: argparse.ArgumentParser, *, http: bool = False) -> None:
    """Options shared by every command that opens models."""
    group = parser.add_argument_group("opening models")
    group.add_argument("--weights", help="safetensors (or state-dict) file for a MODEL given as package.module:factory")
    group.add_argument("--factory", help="package.module:function building the nn.Module of weights-only files "
                                         "(used for .safetensors files in reference directories too)")
    group.add_argument("--input-shape", type=_shape, help="shape of one input, e.g. 1,8,8 (needed unless the "
                                                          "model file declares it, as ONNX does)")
    group.add_argument("--no-torchscript", action="store_true",
                       help="strict mode: refuse TorchScript files (loading one runs its TorchScript program)")
    group.add_argument("--batch", type=int, default=256, help="inputs per call to a model (default 256)")
    if http:
        group.add_argument("--max-queries", type=int, help="refuse to verify if a service suspect needs more queries")
        group.add_argument("--rate", type=float, help="requests per second to a service suspect")
        group.add_argument("--timeout", type=float, default=30.0, help="seconds per request to a service suspect")
        group.add_argument("--resume", metavar="CACHE_DIR", help="cache a service's answers here and reuse them")


def _open(spec: str, args: argparse.Namespace, *, http: bool = False) -> Any:
    from .models import open_model

    options: dict[str, Any] = {"factory": args.factory, "input_shape": args.input_shape,
                               "allow_torchscript": not args.no_torchscript, "batch_size": args.batch}
    if spec.startswith(("http://", "https://")):
        if not http:
            raise InvalidParameter("A model on a service can be verified but not fingerprinted: the owner "
                                   "fingerprints its own model file.")
        return open_model(spec, batch_size=args.batch, max_queries=args.max_queries, rate=args.rate,
                          timeout=args.timeout, cache_dir=args.resume, progress=True)
    if not Path(spec).exists() and _FACTORY.match(spec):
        if not args.weights:
            raise InvalidParameter(f"MODEL {spec!r} is a factory; give its weights with --weights FILE.safetensors.")
        options["factory"] = spec
        return open_model(args.weights, **options)
    return open_model(spec, **options)


def _references(directory: str | None, args: argparse.Namespace) -> list[Any]:
    from .models import open_models

    if directory is None:
        return []
    return open_models(directory, factory=args.factory, input_shape=args.input_shape,
                       allow_torchscript=not args.no_torchscript, batch_size=args.batch)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from . import Fingerprint

    owner = _open(args.model, args)
    notice = getattr(owner, "import_notice", lambda: None)()
    if notice:
        print(f"notice: white-box import failed ({notice}); using black-box probes", file=sys.stderr)
    fingerprint = Fingerprint.create(owner, args.domain, scheme=args.scheme, points=args.probes,
                                     directions=args.directions, seed=args.seed, progress=not args.quiet)
    fingerprint.save(args.out)
    summary = fingerprint.describe()
    if args.json:
        print(json.dumps({"path": args.out, **summary}, indent=2))
    else:
        print(f"fingerprint written to {args.out}")
        for key in ("scheme", "domain", "analysis", "points", "directions", "queries_per_verification",
                    "fingerprint_seconds", "sha256"):
            value = summary.get(key)
            print(f"  {key:<26} {value:.2f}" if isinstance(value, float) else f"  {key:<26} {value}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from . import Fingerprint

    fingerprint = Fingerprint.load(args.fingerprint)
    suspect = _open(args.suspect, args, http=True)
    budget = getattr(suspect, "check_budget", None)
    if budget is not None:
        budget(fingerprint.queries())
    references = _references(args.references, args)
    positives = _references(args.positives, args)
    verdict = fingerprint.verify(suspect, references, positives=positives or None, alpha=args.alpha,
                                 progress=not args.quiet)
    print(verdict.to_json() if args.json else verdict.render())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from . import Fingerprint

    summary = Fingerprint.load(args.fingerprint).describe()
    print(json.dumps(summary, indent=2) if args.json else
          "\n".join(f"{key:<26} {value}" for key, value in summary.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, progress=not args.quiet, out=print)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .scheme import DEFAULT_SCHEME, SCHEMES

    parser = argparse.ArgumentParser(prog="tafa", description="Task-agnostic, data-free fingerprinting of ReLU "
                                     "networks, and black-box verification of suspects.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fp = commands.add_parser("fingerprint", help="fingerprint an owner model, with no data")
    fp.add_argument("model", metavar="MODEL", help="ONNX file, TorchScript file, or package.module:factory with --weights")
    fp.add_argument("--domain", required=True, help="box:LO,HI | box:FILE.json | gaussian[:MEAN,STD]")
    fp.add_argument("--out", required=True, help="fingerprint file to write")
    fp.add_argument("--scheme", default=DEFAULT_SCHEME, choices=sorted(SCHEMES))
    fp.add_argument("--probes", type=int, help="probe points (default: the scheme's)")
    fp.add_argument("--directions", type=int, help="directions per probe (default: the scheme's)")
    fp.add_argument("--seed", type=int, default=0)
    fp.add_argument("--json", action="store_true", help="print a JSON summary")
    _model_options(fp)
    fp.set_defaults(run=cmd_fingerprint)

    verify = commands.add_parser("verify", help="verify a suspect model against a fingerprint (black box)")
    verify.add_argument("fingerprint", metavar="FINGERPRINT")
    verify.add_argument("suspect", metavar="SUSPECT", help="model file, package.module:factory with --weights, "
                                                           "or http://HOST:PORT/v2/models/NAME")
    verify.add_argument("--references", metavar="DIR", help="independently trained models of the same task "
                                                             "(negatives) that calibrate the threshold")
    verify.add_argument("--positives", metavar="DIR", help="derived copies, to report the margin on the other side")
    verify.add_argument("--alpha", type=float, default=0.01, help="false-positive rate to bound (default 0.01)")
    verify.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    _model_options(verify, http=True)
    verify.set_defaults(run=cmd_verify)

    info = commands.add_parser("info", help="describe a fingerprint file (and check its hash)")
    info.add_argument("fingerprint", metavar="FINGERPRINT")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)

    demo = commands.add_parser("demo", help="train a small owner on bundled digits, fingerprint it, verify a "
                                            "pirated copy and an independent model")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)

    for extend in EXTENSIONS.values():
        extend(commands)
    return parser


#: Modules that add subcommands by registering into :data:`EXTENSIONS` when imported.
EXTENSION_MODULES = ("tafa.bench.command", "tafa.scan")

#: Functions that add subcommands (the benchmark, the registry) without this file knowing them.
EXTENSIONS: dict[str, Callable[[Any], None]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tafa`` command."""
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except BaseException as error:  # noqa: BLE001 - mapped through the table
        for kind, code in EXIT_CODES:
            if isinstance(error, kind):
                print(f"tafa: error: {one_line(error)}" if code == 2 else "tafa: interrupted", file=sys.stderr)
                return code
        raise


def _load_extensions() -> None:
    import importlib

    for module in EXTENSION_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


if __name__ == "__main__":
    sys.exit(main())
