"""The ``tafa registry`` and ``tafa scan`` commands: thin adapters over :mod:`tafa.registry`
and :mod:`tafa.scanning` (imported when a command runs, not when the parser is built).

``tafa registry add FILE --name NAME [--commitment FILE] [--references DIR]``,
``tafa registry list``, ``tafa registry remove NAME``, ``tafa registry scans``;
``tafa scan SUSPECT... | --dir DIR | --endpoints FILE [--engine local|ray] [--resume SCAN_ID]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter
from .options import add_calibration_options, add_opening_options, add_quiet, open_options

#: The scan engines tafa registers (tafa.scanning.engines.ENGINES), named here so --help imports nothing.
ENGINE_NAMES = ("local", "ray")

#: The error controls of a scan (tafa.scanning.control.CONTROLS), named here so --help imports nothing.
CONTROL_NAMES = ("family", "fdr", "per-fingerprint", "bonferroni")


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", metavar="PATH",
                        help="registry file (default: $TAFA_REGISTRY, else registry.sqlite in tafa's folder of "
                             "the user's data directory, e.g. ~/.local/share/tafa)")
    add_quiet(parser)


# ---------------------------------------------------------------------------------------- registry

def cmd_registry_add(args: argparse.Namespace) -> int:
    from ..fingerprint import Fingerprint
    from ..registry import Registry, RegistryError

    with Registry(args.registry) as registry:
        if not args.replace and args.name in registry.names():
            raise RegistryError(f"A fingerprint named {args.name!r} is already registered in {registry.path}; "
                                "pass --replace to replace it (or choose another --name).")
    calibration = None
    if args.references:
        fingerprint = Fingerprint.load(args.fingerprint)
        references = open_options(args).open_folder(args.references, input_shapes=[fingerprint.input_shape])
        calibration = fingerprint.calibrate(references, args.alpha, progress=not args.quiet,
                                            parametric=args.parametric, keep_table=True)  # every stage, as verify
    with Registry(args.registry) as registry:
        entry = registry.add(args.fingerprint, args.name, commitment=args.commitment, calibration=calibration,
                             replace=args.replace)
        if args.references:  # the references join the null panel of family-wise scans
            registry.add_panel(_model_files(args.references))
    if args.json:
        print(json.dumps({**entry.to_dict(), "registry": str(registry.path),
                          "threshold": None if calibration is None else calibration.threshold,
                          "calibration": None if calibration is None else
                          {**calibration.summary(), "notes": calibration.notes,
                           "stages_together": calibration.decides_jointly()}}, indent=2))
    else:
        print(f"registered {entry.name!r} ({entry.scheme}, input {list(entry.input_shape)}, {entry.queries} queries, "
              f"sha256 {entry.sha256[:12]}) in {registry.path}")
        if calibration is not None:
            stages = "; ".join(f"{name} {stage.threshold:.4f}" for name, stage in
                               zip(calibration.names, calibration.stages))
            print(f"  calibrated on {calibration.n_references} distinct references: threshold{'s' * (len(stages) > 1)} "
                  f"{stages}, false-positive bound {calibration.bound:.3g} "
                  f"({calibration.method}; {calibration.alpha_requested:.3g} asked for)")
            for note in [*calibration.notes, calibration.note()]:
                if note:
                    print(f"  note: {note}")
            if calibration.decides_jointly():
                print(f"  every stage's scores of the references kept: a scan by the stored rules decides the "
                      f"{len(calibration.table_names or [])} stages together by max-T, as tafa verify --references")
        else:
            print("  not calibrated: scans report its scores as undecided (add --references DIR to decide)")
    return 0


def _model_files(directory: str) -> list[Path]:
    from ..models.files import MODEL_SUFFIXES

    return sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)


def cmd_registry_list(args: argparse.Namespace) -> int:
    from ..registry import Registry

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
    from ..registry import Registry

    with Registry(args.registry) as registry:
        registry.remove(args.name)
    print(f"removed {args.name!r} from {registry.path}")
    return 0


def cmd_registry_scans(args: argparse.Namespace) -> int:
    from ..registry import SUSPECT_STATES, Registry

    with Registry(args.registry) as registry:
        scans = registry.scans()
    if args.json:
        print(json.dumps([record.to_dict() for record in scans], indent=2))
        return 0
    states = [state for state in SUSPECT_STATES if state != "pending"] + ["pending"]  # the report's order
    rows = [[r.id, r.status, r.engine, *(str(r.counts.get(state, 0)) for state in states), f"{r.seconds:.1f}",
             r.started[:19]] for r in scans]
    _print_table(["scan", "status", "engine", *states, "seconds", "started"], rows)
    return 0


def cmd_registry_defaults(args: argparse.Namespace) -> int:
    from ..registry import Registry
    from ..scanning.control import resolve_control

    with Registry(args.registry) as registry:
        if args.control is not None or args.alpha is not None:
            control, alpha = resolve_control(args.control, args.alpha, None, registry.defaults())
            registry.set_defaults(control, alpha)
        control, alpha = registry.defaults()
    if args.json:
        print(json.dumps({"registry": str(registry.path), "control": control, "alpha": alpha}))
    else:
        print(f"scans of {registry.path} decide by default under control {control}"
              + ("" if alpha is None else f" at alpha {alpha:g}") + " (tafa scan --control / --alpha override it)")
    return 0


def add_registry_parser(commands: Any) -> None:
    parser = commands.add_parser("registry", help="the fingerprint registry (SQLite): add, list, remove, scans, "
                                                  "defaults")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="register a fingerprint file under a name")
    add.add_argument("fingerprint", metavar="FILE", help="fingerprint file (.tafa)")
    add.add_argument("--name", required=True, help="name of the registered fingerprint")
    add.add_argument("--commitment", metavar="FILE", help="the fingerprint's commitment (JSON), checked and stored")
    add.add_argument("--references", metavar="DIR", help="independent models of the owner's task: calibrate the "
                                                         "threshold now, so scans decide")
    add_calibration_options(add, decides="scans decide nothing")
    add.add_argument("--replace", action="store_true", help="replace a fingerprint registered under that name")
    add.add_argument("--json", action="store_true")
    _registry_option(add)
    add_opening_options(add, services=False)
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

    defaults = actions.add_parser("defaults", help="show, or set, the error control and alpha scans use by default")
    defaults.add_argument("--control", choices=CONTROL_NAMES, help="the control scans decide under unless told")
    defaults.add_argument("--alpha", type=float, metavar="ALPHA", help="the rate scans bound unless told")
    defaults.add_argument("--json", action="store_true")
    _registry_option(defaults)
    defaults.set_defaults(run=cmd_registry_defaults)


# ---------------------------------------------------------------------------------------- scan

def cmd_scan(args: argparse.Namespace) -> int:
    from ..scanning import endpoints_in, scan, suspects_in

    suspects: list[Any] = list(args.suspects)
    for directory in args.dir or []:
        found = suspects_in(directory)
        if not found:
            from ..models.files import MODEL_SUFFIXES

            raise InvalidParameter(f"--dir {directory} holds no model files (looked for {', '.join(MODEL_SUFFIXES)} "
                                   "in it and its subfolders).")
        suspects += found
    for listing in args.endpoints or []:
        suspects += endpoints_in(listing)
    options = None
    if args.resume is None:
        options = open_options(args)
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
                      control=args.control, alpha=args.alpha, panel=args.panel,
                      family_alpha=args.family_alpha, stages=args.stages or "all", resume=args.resume,
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
    return 1 if args.exit_code and report.matches() else 0


def add_scan_parser(commands: Any) -> None:
    parser = commands.add_parser("scan", help="check many suspects against every registered fingerprint")
    parser.add_argument("suspects", nargs="*", metavar="SUSPECT", help="model files or http(s) endpoint URLs")
    parser.add_argument("--dir", action="append", metavar="DIR", help="scan every model file under DIR (recursively)")
    parser.add_argument("--endpoints", action="append", metavar="FILE", help="scan the endpoint URLs listed in FILE")
    parser.add_argument("--fingerprint", action="append", metavar="NAME",
                        help="only these registered fingerprints (repeatable; default: all)")
    parser.add_argument("--control", choices=CONTROL_NAMES,
                        help="how the verdicts of many fingerprints are decided (default: the registry's, family "
                             "unless tafa registry defaults set another): family = "
                             "P(an independent suspect matches ANY fingerprint) <= ALPHA, max-T over the null "
                             "panel; fdr = a candidate list at false-discovery rate ALPHA (Benjamini-Hochberg); "
                             "per-fingerprint = each stored calibration, bound per fingerprint only (N fingerprints: "
                             "up to N times it per suspect); bonferroni = each calibration at ALPHA/N")
    parser.add_argument("--alpha", type=float, metavar="ALPHA",
                        help="the rate to bound (default: the registry's alpha for its control, else 0.05; "
                             "per-fingerprint: default each stored calibration)")
    parser.add_argument("--panel", metavar="DIR",
                        help="null panel: model files independent of every owner, scored against every fingerprint; "
                             "each sub-folder is a group bounded alone (default: the registry's panel, the "
                             "references given to registry add)")
    parser.add_argument("--family-alpha", type=float, metavar="ALPHA", help=argparse.SUPPRESS)
    parser.add_argument("--stages", choices=("all", "first"),
                        help="all (default): under family or fdr, every stage of each fingerprint decides, as in "
                             "tafa verify (the boundary geometry and the extraction stage after the first; about "
                             "6,000 queries per fingerprint); first: the first stage alone (576 queries: a quick "
                             "screen of a large registry). per-fingerprint and bonferroni decide with the stages "
                             "each stored calibration covers (registry add --references), run as tafa verify runs "
                             "them")
    parser.add_argument("--engine", default="local", choices=ENGINE_NAMES,
                        help="where the checks run: a local process pool (default) or a Ray cluster")
    parser.add_argument("--workers", type=int, help="processes (local; default one per core, 0: this process) or "
                                                    "CPUs of a local Ray instance")
    parser.add_argument("--address", help="Ray cluster address (ray engine; default: RAY_ADDRESS or a local instance)")
    parser.add_argument("--resume", metavar="SCAN_ID", help="continue an interrupted scan (its suspects not yet done)")
    parser.add_argument("--report", metavar="FILE", help="write a report: FILE.md (plot beside it) or FILE.html")
    parser.add_argument("--json", action="store_true", help="print the scan as one JSON object")
    _registry_option(parser)
    add_opening_options(parser, scan=True)
    parser.add_argument("--exit-code", action="store_true",
                        help="exit 1 when any suspect is judged derived, else 0 (2 is every error, as always); "
                             "without it, a finished scan exits 0")
    parser.set_defaults(run=cmd_scan)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print rows read from the registry (names, ids: untrusted text) one terminal line each."""
    from ..scanning.report import terminal_line

    rows = [[terminal_line(cell, 80) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def add_parsers(commands: Any) -> None:
    add_registry_parser(commands)
    add_scan_parser(commands)
