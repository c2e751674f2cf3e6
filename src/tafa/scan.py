"""The ``tafa registry`` and ``tafa scan`` commands: thin adapters over :mod:`tafa.registry`
and :mod:`tafa.scanning`. Importing this module registers both in
:data:`tafa.cli.EXTENSIONS` (``tafa.cli`` imports it when the command line starts).

``tafa registry add FILE --name NAME [--commitment FILE] [--references DIR]``,
``tafa registry list``, ``tafa registry remove NAME``, ``tafa registry scans``;
``tafa scan SUSPECT... | --dir DIR | --endpoints FILE [--engine local|ray] [--resume SCAN_ID]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .cli import EXTENSIONS, _shape
from .registry import Registry, default_registry_path
from .scanning import ENGINES, OpenOptions, endpoints_in, scan, suspects_in


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", metavar="PATH",
                        help=f"registry file (default: $TAFA_REGISTRY, else {default_registry_path()})")


def _opening_options(parser: argparse.ArgumentParser, *, endpoints: bool = False) -> None:
    group = parser.add_argument_group("opening models")
    group.add_argument("--factory", help="package.module:function building the nn.Module of weights-only files")
    group.add_argument("--input-shape", type=_shape, help="shape of one input for files that do not declare it "
                                                          "(default for a scan: each registered input shape in turn)")
    group.add_argument("--no-torchscript", action="store_true",
                       help="strict mode: refuse TorchScript files (loading one runs its TorchScript program)")
    group.add_argument("--batch", type=int, default=256, help="inputs per call to a model (default 256)")
    group.add_argument("--max-model-bytes", type=int, help="refuse model files larger than this (default 2 GiB)")
    if endpoints:
        group.add_argument("--timeout", type=float, default=30.0, help="seconds per request to an endpoint")
        group.add_argument("--retries", type=int, default=2, help="retries of a failed request to an endpoint")
        group.add_argument("--rate", type=float, help="requests per second to each endpoint")
        group.add_argument("--max-queries", type=int, help="skip (as failed) an endpoint that would need more queries")


def _options(args: argparse.Namespace, **endpoint: Any) -> OpenOptions:
    return OpenOptions(factory=args.factory, input_shape=args.input_shape, allow_torchscript=not args.no_torchscript,
                       batch_size=args.batch, max_bytes=args.max_model_bytes, **endpoint)


# ---------------------------------------------------------------------------------------- registry

def cmd_registry_add(args: argparse.Namespace) -> int:
    from .fingerprint import Fingerprint

    from .models import open_models

    calibration = None
    if args.references:
        references = open_models(args.references, **_options(args).file_options())
        calibration = Fingerprint.load(args.fingerprint).calibrate(references, args.alpha, progress=not args.quiet,
                                                                   parametric=args.parametric)
    with Registry(args.registry) as registry:
        entry = registry.add(args.fingerprint, args.name, commitment=args.commitment, calibration=calibration,
                             replace=args.replace)
    if args.json:
        print(json.dumps({**entry.to_dict(), "registry": str(registry.path),
                          "threshold": None if calibration is None else calibration.threshold,
                          "calibration": None if calibration is None else
                          {**calibration.summary(), "notes": calibration.notes}}, indent=2))
    else:
        print(f"registered {entry.name!r} ({entry.scheme}, input {list(entry.input_shape)}, {entry.queries} queries, "
              f"sha256 {entry.sha256[:12]}) in {registry.path}")
        if calibration is not None:
            print(f"  calibrated on {calibration.n_references} distinct references: threshold "
                  f"{calibration.threshold:.4f}, false-positive bound {calibration.bound:.3g} "
                  f"({calibration.method.value}; {calibration.alpha_requested:.3g} asked for)")
            for note in [*calibration.notes, calibration.note()]:
                if note:
                    print(f"  note: {note}")
        else:
            print("  not calibrated: scans report its scores as undecided (add --references DIR to decide)")
    return 0


def cmd_registry_list(args: argparse.Namespace) -> int:
    with Registry(args.registry) as registry:
        entries = registry.entries()
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return 0
    if not entries:
        print(f"no fingerprints in {registry.path}")
        return 0
    rows = [[e.name, e.scheme, "x".join(map(str, e.input_shape)), "x".join(map(str, e.output_shape)), str(e.queries),
             "yes" if e.calibrated else "no", "yes" if e.committed else "no", e.sha256[:12], e.added[:19]]
            for e in entries]
    _print_table(["name", "scheme", "input", "output", "queries", "calibrated", "committed", "sha256", "added"], rows)
    return 0


def cmd_registry_remove(args: argparse.Namespace) -> int:
    with Registry(args.registry) as registry:
        registry.remove(args.name)
    print(f"removed {args.name!r} from {registry.path}")
    return 0


def cmd_registry_scans(args: argparse.Namespace) -> int:
    with Registry(args.registry) as registry:
        scans = registry.scans()
    if args.json:
        print(json.dumps([record.to_dict() for record in scans], indent=2))
        return 0
    rows = [[r.id, r.status, r.engine, str(r.counts["done"]), str(r.counts["failed"]), str(r.counts["pending"]),
             f"{r.seconds:.1f}", r.started[:19]] for r in scans]
    _print_table(["scan", "status", "engine", "done", "failed", "pending", "seconds", "started"], rows)
    return 0


def add_registry_parser(commands: Any) -> None:
    parser = commands.add_parser("registry", help="the fingerprint registry (SQLite): add, list, remove, scans")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="register a fingerprint file under a name")
    add.add_argument("fingerprint", metavar="FILE", help="fingerprint file (.tafa)")
    add.add_argument("--name", required=True, help="name of the registered fingerprint")
    add.add_argument("--commitment", metavar="FILE", help="the fingerprint's commitment (JSON), checked and stored")
    add.add_argument("--references", metavar="DIR", help="independent models of the owner's task: calibrate the "
                                                         "threshold now, so scans decide")
    add.add_argument("--alpha", type=float, default=0.01, help="false-positive rate to bound (default 0.01; "
                     "by rank this needs at least 1/alpha - 1 distinct references, else scans decide nothing)")
    add.add_argument("--parametric", action="store_true", help="with too few references for --alpha by rank, "
                     "bound the rate by a normal tail fitted to their scores (labelled parametric)")
    add.add_argument("--replace", action="store_true", help="replace a fingerprint registered under that name")
    add.add_argument("--json", action="store_true")
    _registry_option(add)
    _opening_options(add)
    add.set_defaults(run=cmd_registry_add)

    listing = actions.add_parser("list", help="list the registered fingerprints")
    listing.add_argument("--json", action="store_true")
    _registry_option(listing)
    listing.set_defaults(run=cmd_registry_list)

    remove = actions.add_parser("remove", help="unregister a fingerprint (past verdicts are kept)")
    remove.add_argument("name", metavar="NAME")
    _registry_option(remove)
    remove.set_defaults(run=cmd_registry_remove)

    scans = actions.add_parser("scans", help="list the scans recorded in the registry")
    scans.add_argument("--json", action="store_true")
    _registry_option(scans)
    scans.set_defaults(run=cmd_registry_scans)


# ---------------------------------------------------------------------------------------- scan

def cmd_scan(args: argparse.Namespace) -> int:
    from .errors import InvalidParameter

    suspects: list[Any] = list(args.suspects)
    for directory in args.dir or []:
        suspects += suspects_in(directory)
    for listing in args.endpoints or []:
        suspects += endpoints_in(listing)
    options = None
    if args.resume is None:
        options = _options(args, timeout=args.timeout, retries=args.retries, rate=args.rate,
                           max_queries=args.max_queries)
        if not suspects:
            raise InvalidParameter("Nothing to scan: give SUSPECT files or URLs, --dir DIR or --endpoints FILE "
                                   "(or --resume SCAN_ID).")
    elif suspects:
        raise InvalidParameter("--resume continues a scan with its own suspects; "
                               "give no SUSPECT, --dir or --endpoints.")
    started: list[str] = []
    try:
        report = scan(suspects, registry=args.registry, engine=args.engine, workers=args.workers,
                      address=args.address, options=options, fingerprints=args.fingerprint,
                      family_alpha=args.family_alpha, resume=args.resume,
                      progress=not args.quiet, on_start=started.append)
    except KeyboardInterrupt:
        if started:
            where = f" --registry {args.registry}" if args.registry else ""
            print(f"scan {started[0]} interrupted; resume with: tafa scan --resume {started[0]}{where}",
                  file=sys.stderr)
        raise
    if args.report:
        written = report.write(args.report)
        print(f"report written to {', '.join(map(str, written))}", file=sys.stderr if args.json else sys.stdout)
    print(report.to_json() if args.json else report.render())
    return 0


def add_scan_parser(commands: Any) -> None:
    parser = commands.add_parser("scan", help="check many suspects against every registered fingerprint")
    parser.add_argument("suspects", nargs="*", metavar="SUSPECT", help="model files or http(s) endpoint URLs")
    parser.add_argument("--dir", action="append", metavar="DIR", help="scan every model file under DIR (recursively)")
    parser.add_argument("--endpoints", action="append", metavar="FILE", help="scan the endpoint URLs listed in FILE")
    parser.add_argument("--fingerprint", action="append", metavar="NAME",
                        help="only these registered fingerprints (repeatable; default: all)")
    parser.add_argument("--family-alpha", type=float, metavar="ALPHA",
                        help="bound by ALPHA the chance that an independent suspect matches ANY registered "
                             "fingerprint (each threshold re-calibrated at ALPHA/N from its reference scores); "
                             "default: each fingerprint's own calibration, whose bound holds per fingerprint")
    parser.add_argument("--engine", default="local", choices=sorted(ENGINES), help="where the checks run")
    parser.add_argument("--workers", type=int, help="processes (local; default one per core, 0: this process) or "
                                                    "CPUs of a local Ray instance")
    parser.add_argument("--address", help="Ray cluster address (ray engine; default: RAY_ADDRESS or a local instance)")
    parser.add_argument("--resume", metavar="SCAN_ID", help="continue an interrupted scan (its suspects not yet done)")
    parser.add_argument("--report", metavar="FILE", help="write a report: FILE.md (plot beside it) or FILE.html")
    parser.add_argument("--json", action="store_true", help="print the scan as one JSON object")
    _registry_option(parser)
    _opening_options(parser, endpoints=True)
    parser.set_defaults(run=cmd_scan)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


EXTENSIONS["registry"] = add_registry_parser
EXTENSIONS["scan"] = add_scan_parser
