"""Options shared by the commands, declared once: how models are opened (one argparse group,
turned into one :class:`~tafa.models.options.OpenOptions`), ``--quiet`` after a command, and the
light lists the parser needs (scheme names) without importing the library.

Nothing here imports torch, numpy or scipy: ``tafa --help`` is built from this module.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models.options import OpenOptions

#: The schemes tafa registers (tafa.scheme and tafa.baselines), named here so that the parser
#: is built without importing them; a test checks it against the registry.
SCHEME_NAMES = ("tafa", "tafa-one-stage", "tafa-learned", "tafa-free", "tafa-select", "tafa-extract", "tafa-boundary",
                "random-output",
                "modeldiff", "ipguard", "sac-m", "metav", "metav-free",
                "ablate-random-points", "ablate-inverted-start", "ablate-no-groups", "ablate-outputs-only",
                "ablate-32-points", "ablate-8-directions", "ablate-select-uniform", "ablate-free-select",
                "ablate-meta-verifier", "ablate-meta-verifier-data", "ablate-extract-uniform", "ablate-float32",
                "ablate-slice-4", "ablate-no-lp", "ablate-budget-cheapest", "ablate-ladder",
                "ablate-boundary-projected")

#: The scheme ``tafa fingerprint`` uses unless told otherwise (tafa.scheme.DEFAULT_SCHEME).
DEFAULT_SCHEME = "tafa"
#: The service options' defaults, here so that parsing imports nothing heavy; a test checks them
#: against OpenOptions' and HttpModel's own.
SERVICE_DEFAULTS: dict[str, float] = {"timeout": 20.0, "retries": 3, "max_wait": 20.0}


def main_schemes() -> list[str]:
    return [name for name in SCHEME_NAMES if not name.startswith("ablate-")]


def input_shape(text: str) -> tuple[int, ...]:
    """``--input-shape 1,8,8`` -> ``(1, 8, 8)``."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,8, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return shape


#: ``tafa fingerprint --time-budget`` unless told otherwise (tafa.fingerprint.DEFAULT_TIME_BUDGET).
DEFAULT_TIME_BUDGET = 60.0


def time_budget(text: str) -> float | None:
    """``--time-budget 120`` -> ``120.0``; ``none`` -> ``None`` (no budget)."""
    if text.strip().lower() == "none":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0 or 'none', got {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0 or 'none', got {text!r}")
    return seconds


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` accepted after the command too (``tafa verify ... --quiet``)."""
    parser.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")


def add_calibration_options(parser: argparse.ArgumentParser, *, decides: str) -> None:
    """``--alpha`` and ``--parametric`` of every command that calibrates a threshold on references."""
    parser.add_argument("--alpha", type=float, default=0.01, help="false-positive rate to bound (default 0.01; "
                        f"by rank this needs at least 1/alpha - 1 distinct references, else {decides})")
    parser.add_argument("--parametric", action="store_true", help="with too few references for --alpha by rank, "
                        "bound the rate by a normal tail fitted to their scores (labelled parametric)")


def add_white_box_option(parser: argparse.ArgumentParser, *, owner: bool = False) -> None:
    """``--white-box``: weight evidence beside the black-box score (docs/method.md, "Weight
    evidence for file suspects"). The owner chooses ``keep`` or ``off`` (default: a fingerprint
    reveals no weights); a verifier ``auto`` (default) or ``off``."""
    if owner:
        parser.add_argument("--white-box", choices=("keep", "off"), default="off",
                            help="keep: store the owner's first layers in the fingerprint, so that verify can add "
                            "weight evidence against suspects that arrive as files (whoever holds the fingerprint "
                            "then holds those layers); off (default): store none")
        return
    parser.add_argument("--white-box", choices=("auto", "off"), default="auto",
                        help="auto (default): when the fingerprint holds the owner's layers (fingerprint "
                        "--white-box keep) and the suspect is a file whose weights tafa can read, also report weight "
                        "evidence (units aligned with the owner's, a p-value against independent initialisation) on "
                        "its own line / JSON field 'weights'; it never changes the black-box decision. off: compute "
                        "nothing")


def add_opening_options(parser: argparse.ArgumentParser, *, services: bool = True, weights: bool = False,
                        scan: bool = False) -> None:
    """The options of every command that opens models (defaults: :class:`OpenOptions`'s).

    ``services``: the command may open models behind a KServe v2 service (timeouts, retries,
    rate, budget, answer cache); ``weights``: MODEL may be a factory whose weights ``--weights``
    names; ``scan``: wording for many suspects.
    """
    group = parser.add_argument_group("opening models")
    if weights:
        group.add_argument("--weights", metavar="FILE",
                           help="safetensors (or state-dict) file for a MODEL given as package.module:factory")
    group.add_argument("--factory", metavar="MODULE:FUNCTION",
                       help="package.module:function building the nn.Module of weights-only files (.safetensors, "
                            "state dicts), in reference folders too")
    shapes = "each registered fingerprint's input shape in turn" if scan else "the fingerprint's input shape"
    group.add_argument("--input-shape", type=input_shape, metavar="SHAPE",
                       help=f"shape of one input, e.g. 1,8,8, for files that do not declare it (TorchScript, "
                            f"weights-only files; ONNX declares it); default: {shapes}")
    group.add_argument("--allow-torchscript", action="store_true",
                       help="open TorchScript files (refused by default: loading one runs its TorchScript program)")
    group.add_argument("--batch", type=int, default=256, metavar="N", help="inputs per call to a model (default 256)")
    group.add_argument("--max-model-bytes", type=int, metavar="BYTES",
                       help="refuse model files (and zip archives' declared content) larger than this (default 2 GiB)")
    if not services:
        return
    group.add_argument("--timeout", type=float, default=SERVICE_DEFAULTS["timeout"], metavar="SECONDS",
                       help="seconds for one whole request to a service (default %(default)g; a late answer is not "
                            "asked again)")
    group.add_argument("--retries", type=int, default=SERVICE_DEFAULTS["retries"], metavar="N",
                       help="retries of a request after 429/502/503/504 or a lost connection (default %(default)d)")
    group.add_argument("--max-wait", type=float, default=SERVICE_DEFAULTS["max_wait"], metavar="SECONDS",
                       help="cap on all waiting for retries (Retry-After included) of one request "
                            "(default %(default)g)")
    group.add_argument("--rate", type=float, metavar="PER_SECOND", help="requests per second to a service")
    group.add_argument("--max-queries", type=int, metavar="N",
                       help="refuse a service suspect that would need more queries" +
                            (" (recorded as failed)" if scan else ""))
    group.add_argument("--answer-cache", metavar="DIR",
                       help="keep a service's answers in DIR and reuse them (an interrupted verification resumes)")


def open_options(args: argparse.Namespace, **overrides: Any) -> "OpenOptions":
    """The :class:`~tafa.models.options.OpenOptions` of parsed arguments (``--input-shape`` etc.)."""
    from ..models.options import OpenOptions

    values = {"factory": args.factory, "weights": getattr(args, "weights", None), "input_shape": args.input_shape,
              "allow_torchscript": args.allow_torchscript, "batch_size": args.batch,
              "max_bytes": args.max_model_bytes}
    for field, flag in (("timeout", "timeout"), ("retries", "retries"), ("max_wait", "max_wait"), ("rate", "rate"),
                        ("max_queries", "max_queries"), ("answer_cache", "answer_cache")):
        if hasattr(args, flag):
            values[field] = getattr(args, flag)
    values.update(overrides)
    return OpenOptions(**values)
