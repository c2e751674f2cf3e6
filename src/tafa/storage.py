"""Writing files so that no reader ever sees half of one.

:func:`write_atomically` is the one way tafa writes a file others read (fingerprints,
commitments, benchmark models and reports, cached service answers): the bytes go to a
temporary file in the target's folder, are flushed to disk, and the temporary file is then
renamed onto the target in one step (``os.replace``). A failure leaves the old file, if
any, and no temporary behind.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
>>> write_atomically(target, b"hello").read_bytes()
b'hello'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


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
