"""Options shared by the commands, declared once: how models are opened (one argparse group,
turned into one :class:`~tafa.models.options.OpenOptions`), ``--quiet`` after a command, and the
light lists the parser needs (scheme names) without importing the library.

Nothing here imports torch, numpy or scipy: ``tafa --help`` is built from this module, and the
arguments are checked here (values at parsing, files by :func:`refuse_missing` before a command
imports the library) so that a bad one is refused at once.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import FingerprintError, InvalidParameter, ModelLoadError
from ..models.options import FACTORY_SPEC, absolute_factory

if TYPE_CHECKING:
    from ..models.options import OpenOptions

#: The schemes tafa registers (tafa.scheme and tafa.baselines), named here so that the parser
#: is built without importing them; a test checks it against the registry.
SCHEME_NAMES = ("tafa", "tafa-one-stage", "tafa-learned", "tafa-free", "tafa-select", "tafa-extract", "tafa-boundary",
                "tafa-students", "tafa-outputs", "tafa-datalike", "ablate-no-datalike", "random-output",
                "modeldiff", "ipguard", "sac-m", "metav", "metav-free",
                "ablate-random-points", "ablate-inverted-start", "ablate-no-groups", "ablate-outputs-only",
                "ablate-32-points", "ablate-8-directions", "ablate-select-uniform", "ablate-free-select",
                "ablate-meta-verifier", "ablate-meta-verifier-data", "ablate-extract-uniform", "ablate-float32",
                "ablate-slice-4", "ablate-no-lp", "ablate-budget-cheapest", "ablate-ladder",
                "ablate-boundary-projected", "ablate-boundary-bounded", "ablate-stop-passed")

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


#: ``tafa verify --exit-code``: the exit status of each decision (every error exits 2, with or
#: without the flag; ``tafa scan --exit-code`` exits 1 when any suspect is derived). A test checks
#: that every decision has one.
DECISION_EXIT_CODES: dict[str, int] = {"independent": 0, "derived": 1, "undecided": 3, "evasive": 4}

EXIT_CODE_HELP = ("exit with the decision's status: 0 independent, 1 derived, 3 undecided, 4 evasive (2 is every "
                  "error, as always); without it, every decision exits 0")


def alpha(text: str) -> float:
    """``--alpha 0.05`` -> ``0.05``: a rate strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a false-positive rate between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a false-positive rate between 0 and 1 (exclusive), got {text!r}")
    return value


def model_spec(text: str) -> str:
    """A MODEL or SUSPECT as given, except a ``path/to/file.py:function`` factory with a relative
    path, which is made absolute against the working directory (:func:`absolute_factory`)."""
    if text.startswith(("http://", "https://")) or Path(text).exists() or not FACTORY_SPEC.match(text):
        return text
    return absolute_factory(text)


def factory_spec(text: str) -> str:
    """``--factory arch.py:cnn`` -> ``/working/directory/arch.py:cnn`` (:func:`absolute_factory`);
    ``package.module:function`` as given."""
    if not FACTORY_SPEC.match(text):
        raise argparse.ArgumentTypeError(f"expected package.module:function or path/to/file.py:function, got {text!r}")
    return absolute_factory(text)


def refuse_missing(*, models: Iterable[str | tuple[str, str | None] | None] = (),
                   folders: Iterable[tuple[str, str | None]] = (),
                   files: Iterable[tuple[str, str | None]] = (), fingerprint: str | None = None) -> None:
    """Refuse, before the library is imported, arguments that name nothing: ``models`` (files; a
    service URL or a ``package.module:function`` factory is not a file; an ``(option, spec)`` pair
    names the option in the message), ``folders`` and ``files`` as ``(what, path)`` pairs, and the
    ``fingerprint`` file. The one-line messages are those the openers give later."""
    if fingerprint is not None and not Path(fingerprint).exists():
        raise FingerprintError(f"Fingerprint file {fingerprint!r} does not exist.")
    for entry in models:
        option, spec = entry if isinstance(entry, tuple) else (None, entry)
        if spec is None or spec.startswith(("http://", "https://")) or Path(spec).exists():
            continue
        said = f"{option}: " if option else ""
        module = spec.rpartition(":")[0]
        if FACTORY_SPEC.match(spec):
            if module.endswith(".py") and not Path(module).is_file():
                raise ModelLoadError(f"{said}Factory file {module!r} does not exist.")
            continue
        raise ModelLoadError(f"{said}Model file {spec!r} does not exist.")
    for what, folder in folders:
        if folder is not None and not Path(folder).is_dir():
            raise ModelLoadError(f"{what} directory {folder!r} does not exist.")
    for what, path in files:
        if path is not None and not Path(path).exists():
            raise InvalidParameter(f"{what} {path!r} does not exist.")


def process_seconds() -> float | None:
    """Seconds since this process started (Linux: from ``/proc``; elsewhere ``None``): the whole
    command's time includes the interpreter's start and the imports."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rpartition(")")[2].split()[19])
            return max(0.0, float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def command_started(argv_given: bool) -> float:
    """The ``time.perf_counter()`` at which the command started: the process's start when it runs
    as ``tafa`` (``argv_given`` false), else now (``main([...])`` called from Python)."""
    now = time.perf_counter()
    age = None if argv_given else process_seconds()
    return now - (age or 0.0)


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
    parser.add_argument("--alpha", type=alpha, default=0.01, help="false-positive rate to bound (default 0.01; "
                        f"by rank this needs at least 1/alpha - 1 distinct references, else {decides})")
    parser.add_argument("--parametric", action="store_true", help="with too few references for --alpha by rank, "
                        "bound the rate by a normal tail fitted to their scores (labelled parametric); with too "
                        "few for every stage's share, each share by that tail (without it, tafa verify decides "
                        "the stages together by max-T, and a stored calibration keeps the stages they support)")


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
                        "its own line / JSON field 'weights', and its exact p-value is a stage of the decision (at the "
                        "share of alpha the references leave it; the verdict names the stage that fired). off: "
                        "compute nothing")


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
    group.add_argument("--factory", metavar="MODULE:FUNCTION", type=factory_spec,
                       help="package.module:function or path/to/file.py:function (relative to the working directory) "
                            "building the nn.Module of weights-only files (.safetensors, "
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


# ------------------------------------------------- the suspect's input: --input-layout, --input-affine
#: Bounds on a declared layout, tafa.models.adapt's (a test checks them), here so that parsing
#: imports nothing heavy: an absurd shape is refused while the arguments are parsed.
MAX_LAYOUT_AXES = 32
MAX_LAYOUT_ELEMENTS = 1 << 24


def input_layout(text: str) -> tuple[int, ...]:
    """``--input-layout 64`` -> ``(64,)``: the shape the suspect takes, bounded before use."""
    shape = input_shape(text)
    if len(shape) > MAX_LAYOUT_AXES or math.prod(shape[:MAX_LAYOUT_AXES]) > MAX_LAYOUT_ELEMENTS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_LAYOUT_AXES} axes and {MAX_LAYOUT_ELEMENTS} values "
                                         f"in all, got {text[:80]!r}")
    return shape


def input_affine(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``--input-affine 0.5,0.25`` -> ``((0.5,), (0.25,))``; per channel ``M1:M2:M3,S1:S2:S3``."""
    usage = f"expected MEAN,STD (numbers, or per-channel lists like 0.4:0.5:0.6,0.2:0.2:0.2), got {text[:80]!r}"
    parts = text.split(",")
    if len(parts) != 2 or len(text) > 100_000:
        raise argparse.ArgumentTypeError(usage)
    try:
        mean, std = (tuple(float(value) for value in part.split(":")) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(usage) from None
    if not all(math.isfinite(v) for v in mean + std) or any(v == 0 for v in std):
        raise argparse.ArgumentTypeError(f"expected finite numbers and a nonzero STD, got {text[:80]!r}")
    return mean, std


def add_input_adaptation_options(parser: argparse.ArgumentParser) -> None:
    """``--input-layout`` and ``--input-affine`` of ``tafa verify``: what the verifier knows of how
    the suspect takes the owner's input (:mod:`tafa.models.adapt`). They apply to SUSPECT only:
    references (and positives) are the owner's panel and take the owner's input."""
    group = parser.add_argument_group("the suspect's input (SUSPECT only; references take the owner's input)")
    group.add_argument("--input-layout", type=input_layout, metavar="SHAPE",
                       help="the shape SUSPECT takes, e.g. 64 for the owner's (1, 8, 8) flattened: each query is "
                            "reshaped to it (C order; it must hold as many values as the owner's input)")
    group.add_argument("--input-affine", type=input_affine, metavar="MEAN,STD",
                       help="SUSPECT expects inputs normalised as (x - MEAN) / STD of the owner's input x "
                            "(numbers, or per-channel lists along the owner's first axis: 0.4:0.5:0.6,0.2:0.2:0.2); "
                            "for a suspect that normalises by itself inputs the owner took normalised by (m, s), "
                            "give -m/s,1/s")


def open_suspect(args: argparse.Namespace, spec: str, owner_shape: tuple[int, ...], *, progress: bool = False) -> Any:
    """SUSPECT opened with the shared options, then adapted (``--input-layout``, ``--input-affine``)
    so that it takes ``owner_shape``, the fingerprint's input shape."""
    from ..errors import ShapeMismatch
    from ..models.adapt import adapt_input, check_layout

    layout, affine = getattr(args, "input_layout", None), getattr(args, "input_affine", None)
    if layout is not None:
        check_layout(layout, owner_shape)  # before opening anything
    options = open_options(args) if layout is None else open_options(args, input_shape=layout)
    model = options.open(spec, input_shapes=[layout or owner_shape], progress=progress)
    if layout is None and model.input_shape != tuple(owner_shape) and \
            math.prod(model.input_shape) == math.prod(owner_shape):
        raise ShapeMismatch(f"Suspect {model.name} takes inputs of shape {model.input_shape}; the fingerprint's "
                            f"owner took {tuple(owner_shape)}, the same {math.prod(owner_shape)} values: if it takes "
                            f"them reshaped, pass --input-layout {','.join(map(str, model.input_shape))}.")
    mean, std = affine if affine is not None else (None, None)
    return adapt_input(model, owner_shape, layout=layout, mean=mean, std=std)
