"""The parent's handle on the sandbox's zygote, importable without torch or numpy.

The zygote (see :mod:`tafa.models.sandbox`) is a ``python -I -B`` process that imports torch,
onnxruntime and the loaders once and then forks one sandbox worker per model file. Its
imports take as long as the parent's own, so a command that will open a model file starts it
first (:func:`prestart`), before importing the library: the two import in parallel instead
of one after the other. Nothing here weakens the sandbox: the process is the one
:class:`~tafa.models.sandbox.SandboxedModel` would start, with the same isolated interpreter,
environment, working directory and captured output; only *when* it starts changes. A zygote
that was started but never asked for a worker is killed at exit rather than waited for.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError


class _Closed(Exception):
    """The other end closed the connection."""


class _Late(Exception):
    """The deadline passed."""


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Late()
            sock.settimeout(left)
        try:
            count = sock.recv_into(view[got:])
        except socket.timeout:
            raise _Late() from None
        except OSError:
            raise _Closed() from None
        if count == 0:
            raise _Closed()
        got += count
    return buffer


_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[2]); "
         "from tafa.models.sandbox import _zygote_main; _zygote_main(int(sys.argv[1]))")

_ENVIRONMENT_KEPT = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")


def _library_paths() -> list[str]:
    """The zygote's ``sys.path``: this process's absolute entries, with the current directory
    (which ``python -m`` and ``python -c`` put first) moved last, so that a seized folder's
    ``onnx.py`` or ``torch.py`` can never shadow a library the sandbox imports."""
    here = os.path.realpath(os.getcwd())
    paths = [p for p in sys.path if p and Path(p).is_absolute()]
    return ([p for p in paths if os.path.realpath(p) != here]
            + [p for p in paths if os.path.realpath(p) == here])


class _Zygote:
    """The parent's handle on its zygote process."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.used = False  # asked for a worker yet (an unused zygote is killed at exit, not waited for)
        self.root = tempfile.mkdtemp(prefix="tafa-sandbox-")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        paths = _library_paths()
        environment = {key: os.environ[key] for key in _ENVIRONMENT_KEPT if key in os.environ}
        environment.update({"HOME": self.root, "TMPDIR": self.root, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                            "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0"})
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", _BOOT, str(child.fileno()), json.dumps(paths)],
            pass_fds=[child.fileno()], cwd=self.root, env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        child.close()
        self.sock = parent
        self.lock = threading.Lock()
        self.output = bytearray()  # the last bytes the zygote and workers printed: kept, never shown
        assert self.process.stdout is not None
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()

    def _drain(self, stream: Any) -> None:
        for chunk in iter(lambda: stream.read1(1 << 16), b""):
            self.output = (self.output + chunk)[-(1 << 16):]

    def request(self, message: dict[str, Any], fd: int | None = None, timeout: float = 60.0) -> dict[str, Any]:
        data = json.dumps(message).encode()
        with self.lock:
            self.used = True
            try:
                self.sock.settimeout(timeout)
                payload = struct.pack("<I", len(data)) + data
                if fd is None:
                    self.sock.sendall(payload)
                else:
                    socket.send_fds(self.sock, [payload], [fd])
                size = struct.unpack("<I", bytes(_recv_exact(self.sock, 4, time.monotonic() + timeout)))[0]
                return dict(json.loads(bytes(_recv_exact(self.sock, size, time.monotonic() + timeout))))
            except (_Closed, _Late, OSError, ValueError):
                self.stop()
                raise ModelLoadError("tafa's model sandbox stopped answering; rerun the command.") from None

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def stop(self) -> None:
        if self.owner != os.getpid():
            return
        try:
            self.sock.close()
            if not self.used:  # still importing, most likely: nothing of it is needed
                self.process.kill()
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - stopping must not fail
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _the_zygote() -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None or not _zygote.alive():
            if _zygote is not None and _zygote.owner == os.getpid():
                _zygote.stop()
            _zygote = _Zygote()
        return _zygote


def prestart() -> None:
    """Start this process's zygote now, if it is not running, without waiting for it: a command
    that will open a model file calls this before its own imports (see the module doc)."""
    _the_zygote()


def shutdown() -> None:
    """Stop this process's zygote (and with it every idle worker); the next sandboxed model
    starts a new one. Runs at exit."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.stop()
            _zygote = None


atexit.register(shutdown)

__all__ = ["prestart", "shutdown"]
