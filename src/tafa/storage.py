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
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

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
