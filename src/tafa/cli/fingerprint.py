"""``tafa fingerprint``, ``tafa verify`` and ``tafa info``: thin adapters over
:class:`~tafa.fingerprint.Fingerprint` (the library is imported when a command runs, not when
the parser is built)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, printable
from .options import (DECISION_EXIT_CODES, DEFAULT_SCHEME, DEFAULT_TIME_BUDGET, EXIT_CODE_HELP, SCHEME_NAMES,
                      add_calibration_options, add_opening_options, add_quiet, add_white_box_option, main_schemes,
                      model_spec, open_options, refuse_missing, time_budget)
from .options import add_input_adaptation_options, open_suspect


def check_fingerprint(args: argparse.Namespace) -> None:
    """``tafa fingerprint``'s arguments, refused before the library is imported."""
    if not args.check_commitment:
        if args.domain is None or args.out is None:
            raise InvalidParameter("tafa fingerprint needs --domain and --out (or --check-commitment FILE).")
        if str(args.model).startswith(("http://", "https://")):
            raise InvalidParameter("A model on a service can be verified but not fingerprinted: the owner "
                                   "fingerprints its own model file.")
    refuse_missing(models=[args.model, ("--weights", args.weights), ("--parent", args.parent)],
                   files=[("Commitment file", args.check_commitment), ("Data file", args.owner_data)])
    if args.out:
        _refuse_overwrite(args.out, force=args.force)


def cmd_fingerprint(args: argparse.Namespace) -> int:
    if args.check_commitment:
        return _reproduce_commitment(args)
    from ..commitment import Commitment, commitment_path
    from ..fingerprint import Fingerprint

    owner = open_options(args).open(args.model)
    notice = owner.import_notice()
    if notice:
        print(f"notice: white-box import failed ({printable(notice)}); using black-box probes", file=sys.stderr)
    parent = _open_parent(args, owner)
    owner_data = None
    if args.owner_data:
        from ..make_references import load_data

        owner_data = load_data(args.owner_data, input_shape=owner.input_shape,
                               shape_source="the owner's input shape").x
    making = time.perf_counter()
    fingerprint = Fingerprint.create(owner, args.domain, scheme=args.scheme, points=args.probes,
                                     directions=args.directions, seed=args.seed, progress=not args.quiet,
                                     weights=args.white_box == "keep", parent=parent,
                                     **({} if parent is None else {"parent_references": args.parent_references}),
                                     time_budget=args.time_budget,
                                     second_stage=None if args.second_stage == "auto" else False,
                                     owner_data=owner_data)
    made = time.perf_counter() - making
    fingerprint.save(args.out, overwrite=args.force)  # and its commitment beside it
    commitment = Commitment.load(commitment_path(args.out))
    summary = {**fingerprint.describe(), "probe_sha256": fingerprint.probe_sha256,
               "commitment": str(commitment_path(args.out)), "commitment_sha256": commitment.digest,
               "create_seconds": made, "command_seconds": time.perf_counter() - args.started}
    if args.json:
        print(json.dumps({"path": args.out, **summary}, indent=2))
    else:
        print(f"fingerprint written to {args.out}")
        for key in ("scheme", "domain", "analysis", "points", "directions", "queries_per_verification", "stages",
                    "create_seconds", "cost_estimate_seconds", "shortcuts", "parent_sha256", "label_stage",
                    "sha256", "commitment", "commitment_sha256"):
            if key in ("parent_sha256", "label_stage", "stages") and key not in summary:
                continue
            value = summary.get(key)
            if key == "stages":
                value = ", ".join(f"{name} ({queries:,} queries)" for name, queries in
                                  zip(summary["stages"], summary["queries_per_stage"]))
            if key == "label_stage" and isinstance(value, dict) and value.get("data_free"):
                value = (f"data-free: {value['points']} points near the owner's boundaries, {value['directions']} "
                         "directions each (decides answers that keep little more than labels)")
            elif key == "label_stage" and isinstance(value, dict):
                value = (f"{value['points']} points across the owner's boundaries, from {value['owner_inputs']} "
                         f"owner inputs (sha256 {str(value['owner_inputs_sha256'])[:16]}...)")
            if key == "shortcuts":
                value = shortcuts_note(value, summary.get("cost_estimate_seconds"),
                                       summary.get("time_budget_seconds", args.time_budget), made)
            print(f"  {key:<26} {_for_people(value)}")
        print("publish or timestamp the commitment_sha256 (or the commitment file) now, before any dispute")
    return 0


def shortcuts_note(shortcuts: list[str] | None, estimate: float | None, budget: float | None, took: float) -> str:
    """What ``tafa fingerprint`` says of the time budget, true of the run: the shortcuts taken,
    or why none were, and whether the fingerprint (``took`` seconds) stayed within the budget."""
    over = budget is not None and took > budget
    spent = f"it took {took:.0f} s" + (f", over the {budget:g} s budget" if over else "")
    if shortcuts:
        return f"{', '.join(map(str, shortcuts))} (the estimate was over the {budget or 0:g} s budget; {spent})"
    if budget is None:
        return f"none (the exact analysis: no time budget; {spent})"
    if estimate is None:
        return f"none (the scheme has no cost plan; {spent})"
    return (f"none (the estimate, {estimate:.0f} s, was within the {budget:g} s budget; {spent}"
            + (": the estimate fell short" if over else "") + ")")


def _open_parent(args: argparse.Namespace, owner: Any) -> Any:
    """The ``--parent`` model (``None`` without one), opened with the owner's options (a
    weights-only parent file with the owner's factory when the owner was given as one), and
    refused in one line unless it is a file with the owner's input and output shapes."""
    from ..errors import ShapeMismatch
    from ..models.options import FACTORY_SPEC

    if args.parent is None:
        return None
    text = str(args.parent)
    if text.startswith(("http://", "https://")) or not Path(text).is_file():
        raise InvalidParameter(f"--parent must be the parent model's file (the public network MODEL was "
                               f"fine-tuned from); got {printable(text)!r}, which is not a file.")
    owner_factory = args.factory is None and args.weights and not Path(str(args.model)).exists() \
        and FACTORY_SPEC.match(str(args.model))
    options = open_options(args, factory=str(args.model)) if owner_factory else open_options(args)
    parent = options.open(text, input_shapes=[owner.input_shape])
    if parent.input_shape != owner.input_shape or \
            math.prod(parent.output_shape) != math.prod(owner.output_shape):
        raise ShapeMismatch(f"--parent {printable(text)!r} takes inputs of shape {parent.input_shape} and returns "
                            f"{parent.output_shape}; MODEL takes {owner.input_shape} and returns "
                            f"{owner.output_shape}: a parent must have the owner's input and output shapes.")
    return parent


def _refuse_overwrite(out: str, *, force: bool) -> None:
    """One line naming ``--force`` when the fingerprint ``out`` or its commitment would be overwritten."""
    from ..fingerprint_file import commitment_path, refuse_overwrite

    refuse_overwrite(out, commitment_path(out), overwrite=force, flag="--force")


def _reproduce_commitment(args: argparse.Namespace) -> int:
    from ..commitment import UNVERIFIED, VERIFIED, Commitment

    commitment = Commitment.load(args.check_commitment, digest=args.commitment_digest)
    owner = open_options(args).open(args.model, input_shapes=[tuple(commitment.input_shape)])
    fingerprint = commitment.reproduce(owner, args.domain, progress=not args.quiet,
                                       parent=_open_parent(args, owner))
    if args.out:
        fingerprint.save(args.out, overwrite=args.force)  # with a commitment of its own (made now)
    result = {"reproduced": True, "commitment": args.check_commitment, "commitment_sha256": commitment.digest,
              "committed": commitment.created, "owner_sha256": commitment.owner_sha256,
              "probe_sha256": fingerprint.probe_sha256, "seed": commitment.seed,
              "status": VERIFIED if args.commitment_digest else UNVERIFIED}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"reproduced: the committed owner model and seed {commitment.seed} give the committed probes and "
              f"owner signature (reproducible content hash {fingerprint.probe_sha256}); commitment "
              f"{VERIFIED + ' against the published digest' if args.commitment_digest else UNVERIFIED}")
    return 0


def _check_commitment(fingerprint: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    from ..commitment import check_commitment

    if args.commitment is None:
        return None
    return check_commitment(fingerprint, args.commitment, digest=args.commitment_digest)


def _references(fingerprint: Any, directory: str | None, args: argparse.Namespace, flag: str) -> list[Any]:
    """The models in ``directory``, each opened at the fingerprint's input shape when its file
    does not declare one, and checked to fit the fingerprint (an error names the file as what
    it is: a reference or a positive, never a suspect)."""
    from ..errors import ShapeMismatch

    if directory is None:
        return []
    role = {"--references": "Reference", "--positives": "Positive"}[flag]
    models = open_options(args).open_folder(directory, input_shapes=[fingerprint.input_shape], role=role)
    for model in models:
        try:
            fingerprint.check_shapes(model)
        except ShapeMismatch as error:
            detail = str(error).removeprefix(f"Suspect {model.name} ")
            raise ShapeMismatch(f"{role} model {model.name!r} (in {flag} {directory}) {detail}") from None
    return models


def _model_files(*specs: str | None) -> list[str]:
    """The model files (or folders of them) among ``specs``: neither absent nor a service URL;
    the sandbox's zygotes they need are started early."""
    return [str(spec) for spec in specs if spec and not str(spec).startswith(("http://", "https://"))]


def check_verify(args: argparse.Namespace) -> None:
    """``tafa verify``'s arguments, refused before the library is imported."""
    if args.commitment is None and args.commitment_digest is not None:
        raise InvalidParameter("--commitment-digest needs --commitment FILE.")
    refuse_missing(fingerprint=args.fingerprint, models=[args.suspect, ("--weights", args.weights)],
                   folders=[("Reference", args.references), ("Positive", args.positives)],
                   files=[("Commitment file", args.commitment), ("Data file", args.owner_data)])


def cmd_verify(args: argparse.Namespace) -> int:
    from ..fingerprint import Fingerprint

    fingerprint = Fingerprint.load(args.fingerprint)
    committed = _check_commitment(fingerprint, args)
    suspect = open_suspect(args, args.suspect, fingerprint.input_shape, progress=not args.quiet)
    from ..signature.consistency import CHECK_QUERIES

    suspect.check_budget(fingerprint.queries() + CHECK_QUERIES)  # every stage (the label stage's too), and the check
    references = _references(fingerprint, args.references, args, "--references")
    positives = _references(fingerprint, args.positives, args, "--positives")
    owner_data = None
    if args.owner_data:
        from ..make_references import load_data

        owner_data = load_data(args.owner_data, input_shape=fingerprint.input_shape,
                               shape_source="the fingerprint's input shape").x
    weights = None
    if args.white_box == "auto":
        weights = fingerprint.weight_evidence(suspect, references)
    verdict = fingerprint.verify(suspect, references, positives=positives or None, alpha=args.alpha,
                                 parametric=args.parametric, progress=not args.quiet,
                                 weights=False if weights is None else weights, owner_data=owner_data)
    command_seconds = time.perf_counter() - args.started
    if args.json:
        print(json.dumps({**json.loads(verdict.to_json()), "command_seconds": command_seconds,
                          "weights": None if weights is None else weights.to_dict(),
                          **({"commitment": committed} if committed else {})}))
    else:
        print(printable(verdict.render()))
        print(f"command seconds {command_seconds:.2f} (the whole command: start, opening the models, the references "
              "and the suspect; 'seconds' above: querying and scoring the suspect)")
        if weights is not None and (weights.applicable or fingerprint.owner_layers):  # said when it could apply
            print(printable(weights.render()))
        if committed:
            from ..commitment import describe_check

            print(describe_check(committed))
    return DECISION_EXIT_CODES[verdict.decision.value] if args.exit_code else 0


def _for_people(value: Any) -> str:
    """A value as a person reads it: floats rounded (JSON keeps them whole), lists of plain values
    joined with commas, yes / no / none for Python's True / False / None, control characters
    from files escaped (a mapping is laid out by :func:`_lines`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 and value != 0 else f"{value:.2f}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        changes = [v["relative_weight_change"] for v in value
                   if isinstance(v.get("relative_weight_change"), (int, float))]
        moved = f"; relative weight change {min(changes):.2f}-{max(changes):.2f}" if changes else ""
        return f"{len(value)} records{moved} (--json lists them)"
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        if all(isinstance(v, (str, int, float)) or v is None for v in value):
            return ", ".join(_for_people(v) for v in value)
        return f"{len(value)} items (--json lists them)"
    if isinstance(value, dict):
        return ", ".join(f"{printable(key)}: {_for_people(item)}" for key, item in value.items())
    return printable(value)


def _lines(summary: dict[str, Any], indent: str = "") -> list[str]:
    """``key value`` lines of a summary, a nested mapping as its own indented ``key value`` lines."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{printable(key)}")
            lines += _lines(value, indent + "  ")
        else:
            lines.append(f"{indent}{printable(key):<{max(1, 26 - len(indent))}} {_for_people(value)}")
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    from ..fingerprint import Fingerprint

    summary = Fingerprint.load(args.fingerprint).describe()
    print(json.dumps(summary, indent=2) if args.json else "\n".join(_lines(summary)))
    return 0


def add_parsers(commands: Any) -> None:
    fp = commands.add_parser("fingerprint", help="fingerprint an owner model, with no data")
    fp.add_argument("model", metavar="MODEL", type=model_spec,
                    help="ONNX file, TorchScript file (with --allow-torchscript), or package.module:factory with "
                         "--weights")
    fp.add_argument("--domain", help="box:LO,HI | box:FILE.json | gaussian[:MEAN,STD] (required unless "
                                     "--check-commitment)")
    fp.add_argument("--out", help="fingerprint file to write; its commitment is written to OUT.commitment.json")
    fp.add_argument("--force", action="store_true", help="overwrite an existing OUT and its commitment")
    fp.add_argument("--scheme", default=DEFAULT_SCHEME, choices=SCHEME_NAMES, metavar="SCHEME",
                    help=f"default {DEFAULT_SCHEME}; one of {', '.join(main_schemes())} (and the ablate-* variants "
                         "of tafa bench --ablation)")
    fp.add_argument("--probes", type=int, help="probe points (default: the scheme's)")
    fp.add_argument("--directions", type=int, help="directions per probe (default: the scheme's)")
    fp.add_argument("--seed", type=int, default=0)
    fp.add_argument("--time-budget", type=time_budget, default=DEFAULT_TIME_BUDGET, metavar="SECONDS",
                    help=f"aim to finish within SECONDS (default {DEFAULT_TIME_BUDGET:g}; 'none': no budget): the cost "
                         "is estimated first and, over the budget, the white-box analysis takes shortcuts (float32, "
                         "smaller slices, fewer LPs, the black-box linearity check), listed in the fingerprint")
    fp.add_argument("--second-stage", choices=("auto", "off"), default="auto",
                    help="auto (default): owners also get the boundary-geometry second stage (up to 5,162 more "
                         "queries; not for a first layer whose units times input values exceed 2^25, a convolution "
                         "over a large image, nor for filters that see fewer than 17 values, 3x3 over one "
                         "channel), and owners answering a vector of values (classifiers) the extraction stage "
                         "for distilled students, owners answering one value or an image (regressors, decoders) "
                         "the outputs stage (64 queries each); verify runs each only when the earlier stages do "
                         "not already judge a suspect derived, and each stage decides at its equal share of alpha "
                         "(with references too few for every share by rank, the stages together by max-T); off: "
                         "the first stage alone")
    fp.add_argument("--parent", metavar="PARENT",
                    help="the shared public model MODEL was fine-tuned from (a file, opened like MODEL): the "
                         "fingerprint measures what the owner's fine-tuning changed relative to it, so models "
                         "fine-tuned from the same parent on other data are not judged derived")
    fp.add_argument("--parent-references", type=int, default=19, metavar="N",
                    help="with --parent: data-free fine-tunes of the parent the owner makes and scores, so that "
                         "verify without --references calibrates against the parent's fine-tunes (default 19, with "
                         "the parent itself 20; 0: none)")
    fp.add_argument("--owner-data", metavar="FILE",
                    help="the owner's own inputs (.npz with x and y, or .csv with the target last, as `tafa "
                         "references` takes), for a classifier: its label stage (which decides suspects whose answers "
                         "keep little more than labels: one-hot, top-k, rounded probabilities) is made from them, "
                         "100 points just across the owner's decision boundaries, instead of data-free; the inputs "
                         "themselves are not stored (their SHA-256 is)")
    fp.add_argument("--json", action="store_true", help="print a JSON summary")
    fp.add_argument("--check-commitment", metavar="COMMITMENT", help="re-create the fingerprint of MODEL with the "
                    "committed scheme, domain and seed and check it gives the committed probes (exit 2 if not)")
    fp.add_argument("--commitment-digest", metavar="SHA256", help="with --check-commitment: the published digest "
                                                                  "the commitment file must have")
    add_quiet(fp)
    add_white_box_option(fp, owner=True)
    add_opening_options(fp, services=False, weights=True)
    fp.set_defaults(run=cmd_fingerprint, check=check_fingerprint,
                    model_files=lambda args: _model_files(args.model, args.parent))

    verify = commands.add_parser("verify", help="verify a suspect model against a fingerprint (black box)")
    verify.add_argument("fingerprint", metavar="FINGERPRINT")
    verify.add_argument("suspect", metavar="SUSPECT", type=model_spec,
                        help="model file, package.module:factory with --weights, or http://HOST:PORT/v2/models/NAME")
    verify.add_argument("--references", metavar="DIR", help="independently trained models of the same task "
                                                             "(negatives) that calibrate the threshold")
    verify.add_argument("--positives", metavar="DIR", help="derived copies, to report the margin on the other side")
    add_calibration_options(verify, decides="no decision is made")
    verify.add_argument("--json", action="store_true", help="print the verdict as one JSON object ('seconds': "
                        "querying and scoring the suspect; 'command_seconds': the whole command)")
    verify.add_argument("--exit-code", action="store_true", help=EXIT_CODE_HELP)
    verify.add_argument("--commitment", metavar="FILE", help="check the fingerprint against its commitment first "
                                                             "(a mismatch is reported as tampering, exit 2)")
    verify.add_argument("--commitment-digest", metavar="SHA256", help="the published digest the commitment file "
                                                                      "must have")
    verify.add_argument("--owner-data", metavar="FILE", help="a data file of the owner's (.npz with x and y, or .csv "
                        "with the target last, as `tafa references` takes): the evasion check starts from its inputs "
                        "instead of data-like inputs made from the domain, so that a service routing what does not "
                        "look like its data to another model is exposed (a few dozen of them are sent to the suspect)")
    add_quiet(verify)
    add_white_box_option(verify)
    add_opening_options(verify, weights=True)
    add_input_adaptation_options(verify)
    verify.set_defaults(run=cmd_verify, check=check_verify, runs_torch=False,
                        model_files=lambda args: _model_files(args.suspect, args.references, args.positives))

    info = commands.add_parser("info", help="describe a fingerprint file (and check its hash)")
    info.add_argument("fingerprint", metavar="FINGERPRINT")
    info.add_argument("--json", action="store_true")
    add_quiet(info)
    info.set_defaults(run=cmd_info, runs_torch=False,
                      check=lambda args: refuse_missing(fingerprint=args.fingerprint))
