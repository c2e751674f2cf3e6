"""The command line: thin adapters that parse, call the library, print.

One module per group of commands: :mod:`.fingerprint` (fingerprint, verify, info),
:mod:`.registry` (registry, scan), :mod:`.demo`, :mod:`.bench`; :mod:`.options` declares the
options they share (how models are opened, once). The parser is built without importing
torch, numpy or scipy: a command imports the library when it runs, so ``tafa --help`` is fast.

Every error caused by input from outside (a :class:`~tafa.errors.TafaError`, or arguments
argparse refuses) becomes one line on stderr and exit code 2; :data:`ERRORS` is the one table
from exception types to messages and exit codes. Arguments are refused before anything heavy is
imported: values when parsed, files by the command's ``check`` (set with its parser) before the
sandbox starts. Otherwise a command exits 0, unless asked for its decision's status:
``tafa verify --exit-code`` exits with :data:`~tafa.cli.options.DECISION_EXIT_CODES` (0
independent, 1 derived, 3 undecided, 4 evasive), ``tafa scan --exit-code`` with 1 when any suspect
is derived.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn, Sequence

from ..errors import TafaError, one_line
from . import bench, demo, fingerprint, references, registry
from .options import DECISION_EXIT_CODES, command_started

#: Exception type -> (exit code, the line printed on stderr). The first matching row wins;
#: anything else is a bug and keeps its traceback.
ERRORS: list[tuple[type[BaseException], int, Callable[[BaseException], str]]] = [
    (TafaError, 2, lambda error: f"tafa: error: {one_line(error)}"),
    (KeyboardInterrupt, 130, lambda error: "tafa: interrupted"),
]

#: The command groups, in the order ``tafa --help`` lists them.
COMMANDS = (fingerprint, references, demo, registry, bench)


class _Parser(argparse.ArgumentParser):
    """argparse, with a refused argument worded like every other bad input: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog if self.prog.startswith("tafa") else "tafa"
        self.exit(2, f"tafa: error: {' '.join(message.split())} (see {command} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tafa", description="Task-agnostic, data-free fingerprinting of ReLU networks, and "
                                              "black-box verification of suspects.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for group in COMMANDS:
        group.add_parsers(commands)
    return parser


def _torch_threads(args: argparse.Namespace) -> None:
    """One torch thread unless ``TAFA_TORCH_THREADS`` says otherwise: the models tafa queries are
    small, and on a busy machine a second intra-op thread that waits for a core made every
    forward pass of a small MLP ~100x slower here (0.26 ms -> 24 ms). A command that runs no
    torch in this process (``runs_torch`` false: ``verify``, whose models run in the sandbox or
    behind a service, and ``info``) does not import torch for it."""
    if getattr(args, "runs_torch", True):
        from ..threads import pin_torch_threads

        pin_torch_threads()


def _start_sandbox(args: argparse.Namespace) -> None:
    """A command that will open model files (``model_files`` names them) starts the sandbox's
    zygotes they need before importing the library: the zygotes' imports then run beside the
    command's own instead of after them (about halves ``tafa verify``'s fixed cost on two cores)."""
    model_files = getattr(args, "model_files", None)
    paths = model_files(args) if model_files is not None else []
    if paths:
        from ..models.zygote import prestart

        prestart(paths)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tafa`` command."""
    started = command_started(argv is not None)
    args = build_parser().parse_args(argv)
    args.started = started
    try:
        check = getattr(args, "check", None)
        if check is not None:
            check(args)
        _start_sandbox(args)
        _torch_threads(args)
        return int(args.run(args))
    except BaseException as error:  # noqa: BLE001 - mapped through the table
        for kind, code, message in ERRORS:
            if isinstance(error, kind):
                print(message(error), file=sys.stderr)
                return code
        raise


__all__ = ["DECISION_EXIT_CODES", "ERRORS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
