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

from .errors import InvalidParameter, TafaError, one_line, printable

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
    group.add_argument("--max-model-bytes", type=int, default=None, metavar="BYTES",
                       help="refuse model files (and zip archives' declared content) larger than this "
                            "(default 2 GiB)")
    if http:
        group.add_argument("--max-queries", type=int, help="refuse to verify if a service suspect needs more queries")
        group.add_argument("--rate", type=float, help="requests per second to a service suspect")
        group.add_argument("--timeout", type=float, default=30.0, help="seconds per request to a service suspect")
        group.add_argument("--resume", metavar="CACHE_DIR", help="cache a service's answers here and reuse them")


def _open(spec: str, args: argparse.Namespace, *, http: bool = False) -> Any:
    from .models import open_model

    options: dict[str, Any] = {"factory": args.factory, "input_shape": args.input_shape,
                               "allow_torchscript": not args.no_torchscript, "batch_size": args.batch,
                               **_size_limit(args)}
    if spec.startswith(("http://", "https://")):
        if not http:
            raise InvalidParameter("A model on a service can be verified but not fingerprinted: the owner "
                                   "fingerprints its own model file.")
        return open_model(spec, batch_size=args.batch, max_queries=args.max_queries, rate=args.rate,
                          timeout=args.timeout, cache_dir=args.resume, progress=not args.quiet)
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
                       allow_torchscript=not args.no_torchscript, batch_size=args.batch, **_size_limit(args))


def _size_limit(args: argparse.Namespace) -> dict[str, int]:
    return {} if args.max_model_bytes is None else {"max_bytes": args.max_model_bytes}


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from . import Fingerprint
    from .commitment import Commitment, commitment_path

    if args.check_commitment:
        return _reproduce_commitment(args)
    if args.domain is None or args.out is None:
        raise InvalidParameter("tafa fingerprint needs --domain and --out (or --check-commitment FILE).")
    owner = _open(args.model, args)
    notice = getattr(owner, "import_notice", lambda: None)()
    if notice:
        print(f"notice: white-box import failed ({printable(notice)}); using black-box probes", file=sys.stderr)
    fingerprint = Fingerprint.create(owner, args.domain, scheme=args.scheme, points=args.probes,
                                     directions=args.directions, seed=args.seed, progress=not args.quiet)
    fingerprint.save(args.out)
    commitment = Commitment.of(fingerprint)
    commitment.save(commitment_path(args.out))
    summary = {**fingerprint.describe(), "probe_sha256": fingerprint.probe_sha256,
               "commitment": str(commitment_path(args.out)), "commitment_sha256": commitment.digest}
    if args.json:
        print(json.dumps({"path": args.out, **summary}, indent=2))
    else:
        print(f"fingerprint written to {args.out}")
        for key in ("scheme", "domain", "analysis", "points", "directions", "queries_per_verification",
                    "fingerprint_seconds", "sha256", "commitment", "commitment_sha256"):
            value = summary.get(key)
            print(f"  {key:<26} {value:.2f}" if isinstance(value, float) else f"  {key:<26} {value}")
        print("publish or timestamp the commitment_sha256 (or the commitment file) now, before any dispute")
    return 0


def _reproduce_commitment(args: argparse.Namespace) -> int:
    from .commitment import Commitment

    commitment = Commitment.load(args.check_commitment, digest=args.commitment_digest)
    options = {"input_shape": args.input_shape or tuple(commitment.input_shape)}
    owner = _open(args.model, argparse.Namespace(**{**vars(args), **options}))
    fingerprint = commitment.reproduce(owner, args.domain, progress=not args.quiet)
    if args.out:
        fingerprint.save(args.out)
    result = {"reproduced": True, "commitment": args.check_commitment, "commitment_sha256": commitment.digest,
              "committed": commitment.created, "owner_sha256": commitment.owner_sha256,
              "probe_sha256": fingerprint.probe_sha256, "seed": commitment.seed}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"reproduced: the committed owner model and seed {commitment.seed} give the committed probes and "
              f"owner signature (reproducible content hash {fingerprint.probe_sha256})")
    return 0


def _check_commitment(fingerprint: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    from .commitment import Commitment

    if args.commitment is None:
        if args.commitment_digest is not None:
            raise InvalidParameter("--commitment-digest needs --commitment FILE.")
        return None
    commitment = Commitment.load(args.commitment, digest=args.commitment_digest)
    commitment.check(fingerprint)
    return {"path": args.commitment, "sha256": commitment.digest, "created": commitment.created,
            "digest_checked": args.commitment_digest is not None, "matches": True}


def cmd_verify(args: argparse.Namespace) -> int:
    from . import Fingerprint

    fingerprint = Fingerprint.load(args.fingerprint)
    committed = _check_commitment(fingerprint, args)
    suspect = _open(args.suspect, args, http=True)
    budget = getattr(suspect, "check_budget", None)
    if budget is not None:
        budget(fingerprint.queries())
    references = _references(args.references, args)
    positives = _references(args.positives, args)
    verdict = fingerprint.verify(suspect, references, positives=positives or None, alpha=args.alpha,
                                 progress=not args.quiet)
    if args.json:
        print(json.dumps({**json.loads(verdict.to_json()), **({"commitment": committed} if committed else {})}))
    else:
        print(printable(verdict.render()))
        if committed:
            print(f"commitment: the fingerprint matches commitment {committed['sha256']} made {committed['created']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from . import Fingerprint

    summary = Fingerprint.load(args.fingerprint).describe()
    print(json.dumps(summary, indent=2) if args.json else
          "\n".join(f"{key:<26} {printable(value)}" for key, value in summary.items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, progress=not args.quiet, out=print, all_kinds=args.all_kinds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .scheme import DEFAULT_SCHEME, SCHEMES

    parser = argparse.ArgumentParser(prog="tafa", description="Task-agnostic, data-free fingerprinting of ReLU "
                                     "networks, and black-box verification of suspects.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fp = commands.add_parser("fingerprint", help="fingerprint an owner model, with no data")
    fp.add_argument("model", metavar="MODEL", help="ONNX file, TorchScript file, or package.module:factory with --weights")
    fp.add_argument("--domain", help="box:LO,HI | box:FILE.json | gaussian[:MEAN,STD] (required unless "
                                     "--check-commitment)")
    fp.add_argument("--out", help="fingerprint file to write; its commitment is written to OUT.commitment.json")
    main = [name for name in SCHEMES if not name.startswith("ablate-")]
    fp.add_argument("--scheme", default=DEFAULT_SCHEME, choices=sorted(SCHEMES), metavar="SCHEME",
                    help=f"default {DEFAULT_SCHEME}; one of {', '.join(main)} (and the ablate-* variants "
                         "of tafa bench --ablation)")
    fp.add_argument("--probes", type=int, help="probe points (default: the scheme's)")
    fp.add_argument("--directions", type=int, help="directions per probe (default: the scheme's)")
    fp.add_argument("--seed", type=int, default=0)
    fp.add_argument("--json", action="store_true", help="print a JSON summary")
    fp.add_argument("--check-commitment", metavar="COMMITMENT", help="re-create the fingerprint of MODEL with the "
                    "committed scheme, domain and seed and check it gives the committed probes (exit 2 if not)")
    fp.add_argument("--commitment-digest", metavar="SHA256", help="with --check-commitment: the published digest "
                                                                  "the commitment file must have")
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
    verify.add_argument("--commitment", metavar="FILE", help="check the fingerprint against its commitment first "
                                                             "(a mismatch is reported as tampering, exit 2)")
    verify.add_argument("--commitment-digest", metavar="SHA256", help="the published digest the commitment file "
                                                                      "must have")
    _model_options(verify, http=True)
    verify.set_defaults(run=cmd_verify)

    info = commands.add_parser("info", help="describe a fingerprint file (and check its hash)")
    info.add_argument("fingerprint", metavar="FINGERPRINT")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)

    demo = commands.add_parser("demo", help="train a small owner on bundled digits, fingerprint it, verify a "
                                            "pirated copy and an independent model")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--all-kinds", action="store_true",
                      help="run the same job on a classifier, a regressor and a generator; print one table")
    demo.set_defaults(run=cmd_demo)

    for extend in EXTENSIONS.values():
        extend(commands)
    return parser


#: Modules that add subcommands by registering into :data:`EXTENSIONS` when imported.
EXTENSION_MODULES = ("tafa.bench.command", "tafa.scan")

#: Functions that add subcommands (the benchmark, the registry) without this file knowing them.
EXTENSIONS: dict[str, Callable[[Any], None]] = {}


def _torch_threads() -> None:
    """One torch thread unless ``TAFA_TORCH_THREADS`` says otherwise: the models tafa queries are
    small, and on a busy machine a second intra-op thread that waits for a core made every
    forward pass of a small MLP ~100x slower here (0.26 ms -> 24 ms)."""
    import os

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("TAFA_TORCH_THREADS", "1"))))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tafa`` command."""
    _torch_threads()
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
    # Run through the imported module, so that extensions registered into tafa.cli.EXTENSIONS
    # (bench, registry, scan) are seen when this file runs as ``python -m tafa.cli``.
    from tafa.cli import main as _main

    sys.exit(_main())
