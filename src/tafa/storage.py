"""Writing files so that no reader ever sees half of one, and reading the files a user names
without trusting them.

:func:`write_atomically` is the one way tafa writes a file others read (fingerprints,
commitments, benchmark models and reports, cached service answers): the bytes go to a
temporary file in the target's folder, are flushed to disk, and the temporary file is then
renamed onto the target in one step (``os.replace``). A failure leaves the old file, if
any, and no temporary behind.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
>>> write_atomically(target, b"hello").read_bytes()
b'hello'

:func:`read_regular` is the one way tafa reads a small file a user names (fingerprints,
commitments, domain bounds): it opens without blocking (a FIFO or a device is never waited
on), refuses anything that is not a regular file, and reads at most a given number of bytes,
counting them (a file that yields more than its size says, as ``/proc/self/pagemap`` does, is
refused). :func:`open_regular` is its first half, for readers that stream (hashing model files).

>>> read_regular(target, limit=16, what="Note file")
b'hello'
>>> try:
...     read_regular(target, limit=4, what="Note file")
... except InvalidParameter as error:
...     print(str(error).split("note.txt' ")[1])
has 5 bytes; at most 4 are read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import InvalidParameter, TafaError, one_line


def write_atomically(path: str | os.PathLike[str], content: bytes | Callable[[IO[bytes]], object], *,
                     mode: int = 0o644) -> Path:
    """Write ``content`` (bytes, or a function that writes to the binary handle it is given)
    to ``path`` atomically, with permissions ``mode``; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                         delete=False)
    try:
        with handle:
            if isinstance(content, (bytes, bytearray, memoryview)):
                handle.write(content)
            else:
                content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, mode)  # a temporary file is made 0600
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str], refuse: Callable[[str], Exception]) -> Iterator[tuple[IO[bytes], int]]:
    """``(handle, size)`` of ``path`` opened for reading, if it is a regular file (symbolic links
    followed); else ``refuse("is not a regular file")`` is raised. The file is opened without
    blocking and checked on the open descriptor, so a FIFO (or a path swapped for one after a
    check) is never waited on. ``OSError`` from opening propagates."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise refuse("is not a regular file")
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as handle:
        yield handle, info.st_size


def read_regular(path: str | os.PathLike[str], *, limit: int, what: str,
                 error: type[TafaError] = InvalidParameter) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (:func:`open_regular`).

    Anything else is ``error`` with one line that starts with ``what`` and the path: a missing
    or unreadable file, a FIFO, device or folder, a file larger than ``limit``, or one that
    yields more bytes than its size says (a kernel file).
    """
    name = f"{what} {str(path)!r}"

    def refuse(why: str) -> TafaError:
        return error(f"{name} {why}; refused.")

    try:
        with open_regular(path, refuse) as (handle, size):
            if size > limit:
                raise error(f"{name} has {size} bytes; at most {limit} are read.")
            data = handle.read(size + 1)
    except FileNotFoundError:
        raise error(f"{name} does not exist.") from None
    except OSError as problem:
        raise error(f"{name} cannot be read ({one_line(problem)}).") from None
    if len(data) > size:
        raise refuse("holds more bytes than its size says (a kernel or growing file)")
    return data


#: Largest JSON text read back whole (a fingerprint's header, a commitment, domain bounds).
MAX_JSON_BYTES = 32 << 20
#: Most JSON values (numbers, strings, lists, objects) one header or stored JSON text holds,
#: counted before it is parsed (parsing costs up to ~150 bytes per value: an object of 2^20
#: distinct keys peaks near 200 MiB). A per-feature domain takes two values per input feature;
#: the largest input whose default fingerprint fits a fingerprint file has 233,000 features.
MAX_JSON_VALUES = 1 << 20
#: Deepest nesting of lists and objects in JSON read back (a fingerprint header nests 5 deep).
MAX_JSON_DEPTH = 32
#: Largest integer anywhere in JSON read back (seeds, sizes); bigger ones are refused as text.
MAX_INTEGER_DIGITS = 20


#: Every byte but brackets and braces (deleted to measure the nesting).
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def check_json_size(text: str | bytes, *, what: str, max_values: int = MAX_JSON_VALUES,
                    max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON ``text`` that holds more than ``max_values`` values or nests deeper than
    ``max_depth``, *before* it is parsed (``ValueError`` naming ``what``).

    Scans in C that allocate nothing per value (``bytes.count``, ``bytes.translate``, one
    numpy pass over the brackets): the number of values is at most the commas plus the opening
    brackets plus one, and the depth is the running count of open brackets. Commas and brackets
    inside strings are counted too, so the count is an upper bound: a header would need a million
    commas, or dozens of unmatched brackets, in its strings to be refused wrongly. Closing
    brackets inside strings can hide depth; Python's json then stops at its recursion limit
    (``RecursionError``, which the callers refuse), having built little.

    >>> check_json_size('{"a": [1, 2, {"b": []}]}', what="x")
    >>> check_json_size("[" + "[]," * 9 + "[]]", what="the header", max_values=5)
    Traceback (most recent call last):
    ...
    ValueError: the header holds 21 JSON values or more; at most 5 are read
    >>> check_json_size("[" * 40 + "]" * 40, what="the header")
    Traceback (most recent call last):
    ...
    ValueError: the header nests lists and objects 40 deep; at most 32 are read
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    values = data.count(b",") + data.count(b"[") + data.count(b"{") + 1
    if values > max_values:
        raise ValueError(f"{what} holds {values} JSON values or more; at most {max_values} are read")
    brackets = data.translate(None, _NOT_BRACKETS)
    del data
    if len(brackets) > 2 * max_values:
        raise ValueError(f"{what} holds {len(brackets)} brackets; JSON of at most {max_values} values has at most "
                         f"{2 * max_values}")
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), np.int8(1), np.int8(-1))
    deepest = int(np.cumsum(steps, dtype=np.int32).max()) if steps.size else 0
    if deepest > max_depth:
        raise ValueError(f"{what} nests lists and objects {deepest} deep; at most {max_depth} are read")


def strict_json(text: str | bytes, *, what: str) -> Any:
    """Parse JSON refusing NaN, infinities, floats that overflow and integers longer than
    :data:`MAX_INTEGER_DIGITS` digits, after :func:`check_json_size` has bounded how many values
    it holds and how deep it nests (``ValueError`` naming ``what``)."""
    check_json_size(text, what=what)

    def constant(name: str) -> Any:
        raise ValueError(f"{what} holds {name}, which JSON does not allow")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{what} holds the number {text[:40]}, which overflows a float")
        return value

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
            raise ValueError(f"{what} holds an integer of {len(text)} digits; at most {MAX_INTEGER_DIGITS} are read")
        return int(text)

    return json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
