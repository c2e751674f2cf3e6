"""The parent's handle on the sandbox's zygotes, importable without torch or numpy.

A zygote (see :mod:`tafa.models.sandbox`) is a ``python -I -B`` process that imports the
loaders of one *flavour* of model file once and then forks one sandbox worker per file of that
flavour (:data:`FLAVOURS`): ``"onnx"`` imports onnx and onnxruntime and no torch (ONNX files
run on onnxruntime alone), ``"torch"`` also imports torch and safetensors (TorchScript,
safetensors and state-dict files). The flavour follows from the file's name
(:func:`flavour`), the same rule the loaders' :func:`~tafa.models.files.sniff` applies, so the
parent knows it before it imports anything heavy; a worker refuses a file of another flavour.

A zygote's imports take as long as the parent's own, so a command that will open model files
starts the zygotes they need first (:func:`prestart`), before importing the library: they
import in parallel instead of one after the other. Nothing here weakens the sandbox: every
zygote is the process :class:`~tafa.models.sandbox.SandboxedModel` would start, with the same
isolated interpreter, environment, working directory and captured output, and its workers
get the same limits; only *when* it starts, and which libraries it imports, change. A zygote
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
from typing import Any, Iterable

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
         "from tafa.models.worker import _zygote_main; _zygote_main(int(sys.argv[1]), sys.argv[3])")

#: Zygote flavour -> the libraries it imports before forking workers (what its files need).
FLAVOURS = {
    "onnx": ("onnx", "onnxruntime"),
    "torch": ("onnx", "onnxruntime", "torch", "safetensors.torch"),
}

#: The name endings of model files (what a folder of models is searched for), and that of ONNX
#: files (:func:`tafa.models.files.sniff` reads a file as ONNX by it).
MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".ts", ".jit", ".safetensors", ".tsm")
ONNX_SUFFIX = ".onnx"


def flavour(path: str | os.PathLike[str]) -> str:
    """The zygote flavour that opens the model file ``path``: ``"onnx"`` for an ``.onnx`` file,
    ``"torch"`` for any other file (TorchScript, safetensors, state dicts)."""
    return "onnx" if Path(path).suffix == ONNX_SUFFIX else "torch"


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
    """The parent's handle on one zygote process (of one flavour)."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.owner = os.getpid()
        self.used = False  # asked for a worker yet (an unused zygote is killed at exit, not waited for)
        self.root = tempfile.mkdtemp(prefix="tafa-sandbox-")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        paths = _library_paths()
        environment = {key: os.environ[key] for key in _ENVIRONMENT_KEPT if key in os.environ}
        environment.update({"HOME": self.root, "TMPDIR": self.root, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                            "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0"})
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", _BOOT, str(child.fileno()), json.dumps(paths), flavour],
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


#: This process's zygotes, by flavour.
_zygotes: dict[str, _Zygote] = {}
_zygote_lock = threading.Lock()


def _the_zygote(kind: str) -> _Zygote:
    """This process's zygote of flavour ``kind``, started if it is not running."""
    if kind not in FLAVOURS:
        raise ValueError(f"Unknown zygote flavour {kind!r}; known: {sorted(FLAVOURS)}.")
    with _zygote_lock:
        zygote = _zygotes.get(kind)
        if zygote is None or not zygote.alive():
            if zygote is not None and zygote.owner == os.getpid():
                zygote.stop()
            zygote = _zygotes[kind] = _Zygote(kind)
        return zygote


def prestart(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Start now, without waiting for them, the zygotes that the model files ``paths`` (a folder
    stands for the model files in it) will need: a command that will open them calls this before
    its own imports (see the module doc). Only names are read here, never a file."""
    kinds: set[str] = set()
    for path in paths:
        if not os.path.isdir(path):
            kinds.add(flavour(path))
            continue
        try:
            names = os.listdir(path)
        except OSError:  # the command opening the folder says what is wrong with it, in one line
            continue
        kinds.update(flavour(name) for name in names if Path(name).suffix in MODEL_SUFFIXES)
    for kind in sorted(kinds):
        _the_zygote(kind)


def shutdown() -> None:
    """Stop this process's zygotes (and with them every idle worker); the next sandboxed model
    starts a new one. Runs at exit."""
    with _zygote_lock:
        for zygote in _zygotes.values():
            zygote.stop()
        _zygotes.clear()


atexit.register(shutdown)

__all__ = ["FLAVOURS", "flavour", "prestart", "shutdown"]
