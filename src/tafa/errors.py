"""The errors tafa raises for bad input, and the one template that words them.

Every error a user can cause is a :class:`TafaError`; the command line maps each to one
line on stderr and exit code 2 (see ``tafa.cli``). Library code never uses ``assert`` on
user input: it calls :func:`check` or raises one of these.

>>> try:
...     check_param("probes", 0, "an integer >= 1", 0 >= 1, caller="Fingerprint.create")
... except InvalidParameter as error:
...     print(error)
The 'probes' parameter of Fingerprint.create must be an integer >= 1. Got 0 instead.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeGuard


class TafaError(Exception):
    """Base of every error caused by input from outside (files, models, parameters)."""

    exit_code = 2


class InvalidParameter(TafaError, ValueError):
    """A parameter has a value outside what it must be."""


class ModelLoadError(TafaError):
    """A model file or service could not be opened (missing, corrupt, unsupported, unsafe)."""


class UnsafeModelFile(ModelLoadError):
    """A model file would need unpickling or arbitrary code to load; it is refused."""


class ShapeMismatch(TafaError):
    """A suspect's input or output shape differs from what the fingerprint needs."""


class InputShapeRequired(ShapeMismatch):
    """A model file does not declare its input shape and none was given (``--input-shape``)."""


class NonFiniteOutput(TafaError):
    """A model answered NaN or inf."""


class FingerprintError(TafaError):
    """A fingerprint file is missing, corrupt, or of an unknown format version."""


class TamperedFingerprint(FingerprintError):
    """A fingerprint file's content does not match its own hash or its commitment."""


class DomainError(InvalidParameter):
    """An input-domain specification could not be understood."""


class RefusedReference(InvalidParameter):
    """A calibration reference that would make the verdict meaningless: the suspect itself, the
    owner itself, or (all of them) probable copies of the owner."""


class QueryBudgetExceeded(TafaError):
    """Verification would need more queries than the budget allows."""


def check_param(name: str, value: object, must_be: str, ok: bool, *, caller: str,
                error: type[TafaError] = InvalidParameter) -> None:
    """Raise ``error`` worded by the project's one template when ``ok`` is false."""
    if not ok:
        raise error(f"The {name!r} parameter of {caller} must be {must_be}. Got {value!r} instead.")


def is_integer(value: object) -> TypeGuard[int]:
    """An integer (Python's or numpy's), not a bool: what validation of a count accepts
    (typed as ``int``: numpy's integers behave as one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value: object) -> TypeGuard[float]:
    """A finite real number (Python's or numpy's), not a bool.

    >>> [is_finite_number(v) for v in (1, 2.5, float("inf"), True, "1")]
    [True, True, False, False, False]
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def printable(text: object) -> str:
    r"""``text`` safe for a terminal: control characters (ANSI escape sequences, carriage
    returns, bells, C1 controls, bidirectional overrides) are written as ``\x1b``-style escapes.

    Text read from a file or a service (names, pickle globals, owner names) goes through
    this before it reaches stdout or stderr, so that a file cannot move the cursor, rewrite
    earlier lines or forge output.

    >>> printable("owner\x1b[2K\rverdict: derived")
    'owner\\x1b[2K\\rverdict: derived'
    """
    out = []
    for char in str(text):
        code = ord(char)
        if code < 0x20 and char not in "\t\n" or 0x7F <= code < 0xA0 or char in _INVISIBLE:
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


#: Unicode format characters that reorder or hide text on a terminal (bidi overrides, isolates).
_INVISIBLE = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


#: Longest message :func:`one_line` returns: an error that quotes a whole file or answer is cut.
MAX_LINE = 500


def one_line(error: BaseException) -> str:
    """The message of ``error`` folded to a single line of at most :data:`MAX_LINE` characters,
    for stderr and for error columns (the one place tafa folds errors), with control
    characters escaped (:func:`printable`)."""
    text = printable(" ".join(str(error).split())) or type(error).__name__
    return text if len(text) <= MAX_LINE else text[:MAX_LINE - 3] + "..."
