"""``tafa fingerprint``, ``tafa verify`` and ``tafa info``: thin adapters over
:class:`~tafa.fingerprint.Fingerprint` (the library is imported when a command runs, not when
the parser is built)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidParameter, printable
from .options import (DEFAULT_SCHEME, DEFAULT_TIME_BUDGET, SCHEME_NAMES, add_calibration_options,
                      add_opening_options, add_quiet, add_white_box_option, main_schemes, open_options, time_budget)
from .options import add_input_adaptation_options, open_suspect


def cmd_fingerprint(args: argparse.Namespace) -> int:
    if args.check_commitment:
        return _reproduce_commitment(args)
    if args.domain is None or args.out is None:
        raise InvalidParameter("tafa fingerprint needs --domain and --out (or --check-commitment FILE).")
    from ..commitment import Commitment, commitment_path

    _refuse_overwrite(args.out, commitment_path(args.out), force=args.force)
    from ..fingerprint import Fingerprint

    if str(args.model).startswith(("http://", "https://")):
        raise InvalidParameter("A model on a service can be verified but not fingerprinted: the owner "
                               "fingerprints its own model file.")
    owner = open_options(args).open(args.model)
    notice = owner.import_notice()
    if notice:
        print(f"notice: white-box import failed ({printable(notice)}); using black-box probes", file=sys.stderr)
    parent = _open_parent(args, owner)
    fingerprint = Fingerprint.create(owner, args.domain, scheme=args.scheme, points=args.probes,
                                     directions=args.directions, seed=args.seed, progress=not args.quiet,
                                     weights=args.white_box == "keep", parent=parent,
                                     **({} if parent is None else {"parent_references": args.parent_references}),
                                     time_budget=args.time_budget,
                                     second_stage=None if args.second_stage == "auto" else False)
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
                    "fingerprint_seconds", "cost_estimate_seconds", "shortcuts", "parent_sha256", "sha256",
                    "commitment", "commitment_sha256"):
            if key == "parent_sha256" and key not in summary:
                continue
            value = summary.get(key)
            if key == "shortcuts":
                value = ", ".join(map(str, value)) if value else "none (the exact analysis fitted the time budget)"
            print(f"  {key:<26} {_for_people(value)}")
        print("publish or timestamp the commitment_sha256 (or the commitment file) now, before any dispute")
    return 0


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


def _refuse_overwrite(*paths: Any, force: bool) -> None:
    """One line naming ``--force`` when a fingerprint or its commitment would be overwritten."""
    existing = [str(path) for path in paths if Path(path).exists()]
    if existing and not force:
        raise InvalidParameter(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                               "refusing to overwrite a fingerprint or its commitment (pass --force to replace "
                               "them).")


def _reproduce_commitment(args: argparse.Namespace) -> int:
    from ..commitment import UNVERIFIED, VERIFIED, Commitment

    commitment = Commitment.load(args.check_commitment, digest=args.commitment_digest)
    if args.out:
        _refuse_overwrite(args.out, force=args.force)
    owner = open_options(args).open(args.model, input_shapes=[tuple(commitment.input_shape)])
    fingerprint = commitment.reproduce(owner, args.domain, progress=not args.quiet,
                                       parent=_open_parent(args, owner))
    if args.out:
        fingerprint.save(args.out)
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
        if args.commitment_digest is not None:
            raise InvalidParameter("--commitment-digest needs --commitment FILE.")
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


def cmd_verify(args: argparse.Namespace) -> int:
    from ..fingerprint import Fingerprint

    fingerprint = Fingerprint.load(args.fingerprint)
    committed = _check_commitment(fingerprint, args)
    suspect = open_suspect(args, args.suspect, fingerprint.input_shape, progress=not args.quiet)
    from ..signature.consistency import CHECK_QUERIES

    suspect.check_budget(fingerprint.queries() + CHECK_QUERIES)  # every stage, and the evasion check
    references = _references(fingerprint, args.references, args, "--references")
    positives = _references(fingerprint, args.positives, args, "--positives")
    weights = None
    if args.white_box == "auto":
        weights = fingerprint.weight_evidence(suspect, references)
    verdict = fingerprint.verify(suspect, references, positives=positives or None, alpha=args.alpha,
                                 parametric=args.parametric, progress=not args.quiet,
                                 weights=False if weights is None else weights)
    if args.json:
        print(json.dumps({**json.loads(verdict.to_json()), "weights": None if weights is None else weights.to_dict(),
                          **({"commitment": committed} if committed else {})}))
    else:
        print(printable(verdict.render()))
        if weights is not None and (weights.applicable or fingerprint.owner_layers):  # said when it could apply
            print(printable(weights.render()))
        if committed:
            from ..commitment import describe_check

            print(describe_check(committed))
    return 0


def _for_people(value: Any) -> str:
    """A value as a person reads it: floats rounded (JSON keeps them whole), control
    characters from files escaped."""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 and value != 0 else f"{value:.2f}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        changes = [v["relative_weight_change"] for v in value
                   if isinstance(v.get("relative_weight_change"), (int, float))]
        moved = f"; relative weight change {min(changes):.2f}-{max(changes):.2f}" if changes else ""
        return f"{len(value)} records{moved} (--json lists them)"
    return printable(value)


def cmd_info(args: argparse.Namespace) -> int:
    from ..fingerprint import Fingerprint

    summary = Fingerprint.load(args.fingerprint).describe()
    print(json.dumps(summary, indent=2) if args.json else
          "\n".join(f"{key:<26} {_for_people(value)}" for key, value in summary.items()))
    return 0


def add_parsers(commands: Any) -> None:
    fp = commands.add_parser("fingerprint", help="fingerprint an owner model, with no data")
    fp.add_argument("model", metavar="MODEL",
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
                    help="auto (default): owners whose first weighted layer is fully connected also get the "
                         "boundary-geometry second stage (up to 4,930 more queries, run by verify only when the "
                         "first stage does not already judge a suspect derived; each stage decides at half of "
                         "alpha); off: the first stage alone")
    fp.add_argument("--parent", metavar="PARENT",
                    help="the shared public model MODEL was fine-tuned from (a file, opened like MODEL): the "
                         "fingerprint measures what the owner's fine-tuning changed relative to it, so models "
                         "fine-tuned from the same parent on other data are not judged derived")
    fp.add_argument("--parent-references", type=int, default=19, metavar="N",
                    help="with --parent: data-free fine-tunes of the parent the owner makes and scores, so that "
                         "verify without --references calibrates against the parent's fine-tunes (default 19, with "
                         "the parent itself 20; 0: none)")
    fp.add_argument("--json", action="store_true", help="print a JSON summary")
    fp.add_argument("--check-commitment", metavar="COMMITMENT", help="re-create the fingerprint of MODEL with the "
                    "committed scheme, domain and seed and check it gives the committed probes (exit 2 if not)")
    fp.add_argument("--commitment-digest", metavar="SHA256", help="with --check-commitment: the published digest "
                                                                  "the commitment file must have")
    add_quiet(fp)
    add_white_box_option(fp, owner=True)
    add_opening_options(fp, services=False, weights=True)
    fp.set_defaults(run=cmd_fingerprint, model_files=lambda args: _model_files(args.model, args.parent))

    verify = commands.add_parser("verify", help="verify a suspect model against a fingerprint (black box)")
    verify.add_argument("fingerprint", metavar="FINGERPRINT")
    verify.add_argument("suspect", metavar="SUSPECT", help="model file, package.module:factory with --weights, "
                                                           "or http://HOST:PORT/v2/models/NAME")
    verify.add_argument("--references", metavar="DIR", help="independently trained models of the same task "
                                                             "(negatives) that calibrate the threshold")
    verify.add_argument("--positives", metavar="DIR", help="derived copies, to report the margin on the other side")
    add_calibration_options(verify, decides="no decision is made")
    verify.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    verify.add_argument("--commitment", metavar="FILE", help="check the fingerprint against its commitment first "
                                                             "(a mismatch is reported as tampering, exit 2)")
    verify.add_argument("--commitment-digest", metavar="SHA256", help="the published digest the commitment file "
                                                                      "must have")
    add_quiet(verify)
    add_white_box_option(verify)
    add_opening_options(verify, weights=True)
    add_input_adaptation_options(verify)
    verify.set_defaults(run=cmd_verify, runs_torch=False,
                        model_files=lambda args: _model_files(args.suspect, args.references, args.positives))

    info = commands.add_parser("info", help="describe a fingerprint file (and check its hash)")
    info.add_argument("fingerprint", metavar="FINGERPRINT")
    info.add_argument("--json", action="store_true")
    add_quiet(info)
    info.set_defaults(run=cmd_info, runs_torch=False)
