"""The sandbox every untrusted model file is opened and run in.

A model file (ONNX, TorchScript, safetensors or a torch state dict with a factory) is
parsed, inspected, loaded and run in a **worker process**, never in tafa's own process:

- the worker is forked from a *zygote*: a process started once per tafa process and flavour
  of file with ``python -I -B``, a minimal environment (no ``PYTHONPATH``, no user
  variables), an empty temporary working directory and stdout/stderr captured into a
  bounded buffer that is never shown; it imports the loaders once (onnx and onnxruntime for
  ONNX files; torch and safetensors too for the others: :data:`~tafa.models.zygote.FLAVOURS`)
  and never touches a file, so forking a worker costs milliseconds instead of the seconds an
  import takes;
- each worker gets its own empty temporary working directory and resource limits before
  it opens the file: address space (:attr:`SandboxLimits.memory_bytes` above what the
  zygote already maps, plus four times the file size), CPU seconds, ``RLIMIT_FSIZE`` = 0
  (no file can be written or grown: ``SIGXFSZ`` is ignored, so writes fail with ``EFBIG``),
  ``RLIMIT_NOFILE``, no core dumps;
- parent and worker talk over a socket of plain arrays: an 8-byte header (magic, kind,
  dtype, number of axes) and the axes' lengths, then the raw bytes; the parent checks the
  header against a bound *before* it allocates anything, and never unpickles;
- every request has a wall-clock deadline (:attr:`SandboxLimits.load_seconds`,
  :attr:`SandboxLimits.call_seconds`); a worker that misses it is killed. A worker that dies
  (segfault, limit hit, ``os._exit``) or misses its deadline becomes one
  :class:`~tafa.errors.ModelLoadError` naming the file.

This module is the parent's side and the wire format both sides speak; what runs in the
zygote and its workers is :mod:`tafa.models.worker`. The parent-side object,
:class:`SandboxedModel`, is a :class:`~tafa.models.Model` like any
other. The weight evidence reads a file's first layers in its worker too
(:meth:`SandboxedModel.weight_layers`): only bounded unit matrices come back. Torch modules
given in memory by the library's user (:class:`~tafa.models.TorchModel`) are the user's own
objects and run in-process.

What the sandbox does **not** do (see docs/security.md): it is not a container. The worker
runs as the same user, sees the same file system (it can read what the user can read: a
hostile ONNX kernel exploit could read files and hand their bytes back as "answers"), and
shares the network; there is no seccomp filter or namespace. Limits bound memory, CPU and
writes; the allow-lists in :mod:`tafa.models.files` keep TorchScript and ONNX programs away
from file and network operators in the first place.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors as _errors
from ..errors import ModelLoadError, TafaError, UnsafeModelFile, one_line
from .base import Model
from .zygote import (FLAVOURS, _BOOT, _Closed, _Late, _library_paths, _recv_exact, _the_zygote, _Zygote,  # noqa: F401
                     flavour, shutdown)

# --- the wire format: plain arrays ------------------------------------------------------

_MAGIC = b"TAFA"
_HEADER = struct.Struct("<4sBBBB")  # magic, kind, dtype code, number of axes, reserved
_AXIS = struct.Struct("<Q")
_DTYPES = (np.dtype("<f4"), np.dtype("<f8"), np.dtype("<i8"), np.dtype("u1"))
_MAX_AXES = 8

# message kinds
READY, CALL, ANSWER, ERROR, EXPORT, BYTES, WEIGHTS, COUNT, NAME, ARRAY, LAYERS = range(1, 12)

#: Largest message the parent accepts that it did not size itself (errors, names).
MAX_TEXT_BYTES = 4096
#: Largest number of tensors a worker may hand back as a state dict.
MAX_TENSORS = 100_000


def send_array(sock: socket.socket, kind: int, array: np.ndarray) -> None:
    """Send one array message (header, axis lengths, raw bytes)."""
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = next(i for i, d in enumerate(_DTYPES) if d == dtype)
    header = _HEADER.pack(_MAGIC, kind, code, array.ndim, 0) + b"".join(_AXIS.pack(n) for n in array.shape)
    sock.sendall(header + array.astype(_DTYPES[code], copy=False).tobytes())


def recv_array(sock: socket.socket, *, kinds: tuple[int, ...], max_bytes: int,
               deadline: float | None = None) -> tuple[int, np.ndarray]:
    """Receive one array message; its kind must be one of ``kinds`` and its data at most
    ``max_bytes`` (:data:`MAX_TEXT_BYTES` for errors), checked before the data is allocated."""
    magic, kind, code, ndim, _ = _HEADER.unpack(bytes(_recv_exact(sock, _HEADER.size, deadline)))
    if magic != _MAGIC or kind not in (*kinds, ERROR) or code >= len(_DTYPES) or ndim > _MAX_AXES:
        raise _Malformed("a malformed message header")
    axes = bytes(_recv_exact(sock, _AXIS.size * ndim, deadline))
    shape = tuple(_AXIS.unpack_from(axes, i * _AXIS.size)[0] for i in range(ndim))
    limit = MAX_TEXT_BYTES if kind == ERROR else max_bytes
    size = _DTYPES[code].itemsize
    for n in shape:
        if n > limit:
            raise _Malformed(f"a message of shape {shape}, more than the {limit} bytes expected")
        size *= n
        if size > limit:
            raise _Malformed(f"a message of shape {shape}, more than the {limit} bytes expected")
    data = _recv_exact(sock, size, deadline)
    return kind, np.frombuffer(data, dtype=_DTYPES[code]).reshape(shape)


class _Malformed(Exception):
    """A message broke the wire format or its bound."""


def _text(array: np.ndarray) -> str:
    return bytes(array.astype(np.uint8)).decode("utf-8", "replace")


def _as_bytes(text: str, limit: int = MAX_TEXT_BYTES) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8")[:limit], dtype=np.uint8)


# --- limits ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox worker.

    ``memory_bytes`` is the address space a worker may add to what the zygote maps (plus
    four times the model file's size, so that genuine large models fit); ``cpu_seconds`` the
    CPU time of the worker's whole life; ``load_seconds`` and ``call_seconds`` the wall-clock
    deadline for opening the file and for each later request; ``open_files`` the most file
    descriptors.
    """

    memory_bytes: int = 512 * 1024 ** 2
    cpu_seconds: int = 3600
    load_seconds: float = 25.0
    call_seconds: float = 20.0
    open_files: int = 64

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "open_files"):
            value = getattr(self, name)
            _errors.check_param(name, value, "an integer >= 1", isinstance(value, int) and value >= 1,
                                caller="SandboxLimits")
        for name in ("load_seconds", "call_seconds"):
            value = getattr(self, name)
            _errors.check_param(name, value, "a number of seconds > 0",
                                isinstance(value, (int, float)) and value > 0, caller="SandboxLimits")


def _error_type(name: str) -> type[TafaError]:
    found = getattr(_errors, name, None)
    if isinstance(found, type) and issubclass(found, TafaError):
        return found
    return ModelLoadError


# --- the parent's side ------------------------------------------------------------------

#: How the last worker whose end was asked about ended: ``path``, ``signal``, ``exit`` and
#: ``maxrss_kb`` (its peak resident memory). Set after a refusal, a crash or a timeout.
last_worker_status: dict[str, Any] = {}


class SandboxedModel(Model):
    """A model file opened and run in a sandbox worker (see the module doc).

    ``options`` are the keyword arguments of :func:`tafa.models.files.load_file`
    (``factory``, ``input_shape``, ``allow_torchscript``, ``batch_size``, ``max_bytes``).
    """

    def __init__(self, path: str, content_hash: str, options: dict[str, Any],
                 limits: SandboxLimits | None = None) -> None:
        self.path = path
        self.limits = limits or SandboxLimits()
        self._options = dict(options)
        self._hash = content_hash
        self._module: Any = None
        self._import_error: str | None = None
        self._kind = ""
        name = Path(path).name
        self.name = name
        zygote = _the_zygote(flavour(path))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        limits_message = {"memory_bytes": self.limits.memory_bytes, "cpu_seconds": self.limits.cpu_seconds,
                          "open_files": self.limits.open_files}
        try:
            reply = zygote.request({"op": "fork", "path": path, "options": self._options,
                                    "limits": limits_message}, fd=theirs.fileno())
        finally:
            theirs.close()
        self._zygote = zygote
        self._sock = mine
        self._pid = int(reply["pid"])
        try:
            _, ready = self._receive((READY,), 8 * (3 + 2 * _MAX_AXES), self.limits.load_seconds, "opening it")
        except TafaError:
            if self._sock.fileno() >= 0:
                self.close()
                self._status()
            raise
        values = [int(v) for v in ready.ravel()]
        try:
            worker_batch, n_in = values[0], values[1]
            input_shape, rest = tuple(values[2:2 + n_in]), values[2 + n_in:]
            output_shape = tuple(rest[1:1 + rest[0]])
            if len(output_shape) != rest[0] or len(rest) != 1 + rest[0]:
                raise IndexError
        except IndexError:
            self.close()
            raise ModelLoadError(f"The sandbox worker for {path!r} answered a malformed shape; refused.") from None
        from .files import bounded_batch, check_shape

        try:
            check_shape(input_shape, "input", path)
            check_shape(output_shape, "output", path)
        except TafaError:
            self.close()
            raise

        batch = bounded_batch(max(1, min(worker_batch, int(options.get("batch_size", 256)))), input_shape,
                              output_shape)
        super().__init__(input_shape, output_shape, name=name, batch_size=batch)

    def _receive(self, kinds: tuple[int, ...], max_bytes: int, seconds: float, doing: str) -> tuple[int, np.ndarray]:
        try:
            kind, array = recv_array(self._sock, kinds=kinds, max_bytes=max_bytes,
                                     deadline=time.monotonic() + seconds)
        except _Late:
            self._kill()
            raise ModelLoadError(f"{self.path!r} took longer than {seconds:g} s while {doing} in the sandbox; "
                                 "killed.") from None
        except _Malformed as error:
            self._kill()
            raise ModelLoadError(f"The sandbox worker for {self.path!r} sent {error}; killed.") from None
        except _Closed:
            raise ModelLoadError(f"{self.path!r} {self._death()} while {doing} in the sandbox.") from None
        if kind == ERROR:
            name, _, text = _text(array).partition("\0")
            raise _error_type(name)(text)
        return kind, array

    def _status(self) -> dict[str, Any]:
        """How the worker ended (signal, exit code, peak resident memory), also kept in
        :data:`last_worker_status`."""
        global last_worker_status
        status = self._zygote.request({"op": "status", "pid": self._pid})
        last_worker_status = {"path": self.path, **status}
        return status

    def _death(self) -> str:
        self._sock.close()
        status = self._status()
        number = int(status.get("signal", 0))
        if number:
            reasons: dict[int, str] = {
                signal.SIGSEGV: "crashed (segmentation fault)", signal.SIGBUS: "crashed (bus error)",
                signal.SIGXCPU: "hit the sandbox's CPU-time limit", signal.SIGKILL: "was killed (memory or a limit)",
                signal.SIGABRT: "aborted (often: out of the sandbox's memory limit)"}
            reason = reasons.get(number)
            return reason or f"died of signal {number}"
        return f"ended the sandbox worker (exit code {status.get('exit')})"

    def _kill(self) -> None:
        try:
            os.kill(self._pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._sock.close()
        try:
            self._status()
        except ModelLoadError:
            pass

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._sock.fileno() < 0:
            raise ModelLoadError(f"{self.path!r} is closed: its sandbox worker has ended.")
        try:
            send_array(self._sock, CALL, np.ascontiguousarray(x, dtype=np.float32))
        except OSError:
            raise ModelLoadError(f"{self.path!r} {self._death()} in the sandbox.") from None
        expected = 8 * len(x) * int(np.prod(self.output_shape, dtype=np.int64))
        _, answer = self._receive((ANSWER,), expected, self.limits.call_seconds, "answering")
        return answer

    def close(self) -> None:
        """End the worker (it exits when its socket closes)."""
        if getattr(self, "_sock", None) is not None and self._sock.fileno() >= 0:
            self._sock.close()

    def __del__(self) -> None:
        self.close()

    def content_hash(self) -> str:
        return self._hash

    def describe(self) -> dict[str, Any]:
        """What the model is, for reports; never imports it into tafa's process (a suspect's
        file is parsed only in its worker), so ``white_box`` says whether it already was."""
        return {"name": self.name, "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "white_box": self._module is not None}

    def torch_module(self) -> Any:
        """The model as a torch module in tafa's process, for white-box analysis of an owner:
        ONNX files are imported from their parsed graph, TorchScript through an ONNX export
        made in the worker, weights files by building the factory's module and loading the
        tensors the worker read (plain arrays)."""
        if self._module is None and self._import_error is None:
            from .onnx_import import check_reproduces

            try:
                module = self._import()
                check_reproduces(module, self._forward, self.input_shape)
                self._module = module
            except UnsafeModelFile:
                raise  # a file the import would misread (a local function shadowing an operator): refused
            except TafaError as error:
                self._import_error = str(error)
            except Exception as error:  # noqa: BLE001 - a graph the importer did not foresee: black box
                self._import_error = f"{type(error).__name__}: {one_line(error)}"
        return self._module

    def import_notice(self) -> str | None:
        """Why the white-box import failed, if it did."""
        self.torch_module()
        return self._import_error

    def weight_layers(self, max_layers: int | None = None) -> list[Any] | None:
        """The model's first ``max_layers`` weighted layers as
        :class:`~tafa.weights.layers.UnitLayer` rows, for weight evidence, read **in the sandbox
        worker** (the file is never parsed in tafa's process): ``None`` when its weights cannot
        be read. What comes back is bounded before it is used: at most ``max_layers`` layers
        (at most, and by default, :data:`~tafa.weights.layers.STORED_LAYERS`: as many as a
        fingerprint keeps),
        at most :data:`~tafa.weights.layers.MAX_STORED_VALUES` float64 values in all (each
        array's size checked before it is received), descriptions of at most
        :data:`MAX_TEXT_BYTES`, and shapes, kinds and finiteness checked by
        :func:`~tafa.weights.layers.layers_from_arrays`."""
        import json

        from ..weights.layers import MAX_STORED_VALUES, STORED_LAYERS, layers_from_arrays

        wanted = STORED_LAYERS if max_layers is None else max(0, min(int(max_layers), STORED_LAYERS))
        if self._sock.fileno() < 0:
            raise ModelLoadError(f"{self.path!r} is closed: its sandbox worker has ended.")
        try:
            send_array(self._sock, LAYERS, np.array([wanted], dtype=np.int64))
        except OSError:
            raise ModelLoadError(f"{self.path!r} {self._death()} in the sandbox.") from None
        seconds, doing = self.limits.load_seconds, "reading its weights"
        _, count = self._receive((COUNT,), 8, seconds, doing)
        number = int(count.ravel()[0]) if count.size == 1 else -2
        if number == -1:
            return None
        if not 0 <= number <= wanted:
            self._kill()
            raise ModelLoadError(f"The sandbox worker for {self.path!r} announced {number} weight layers, not at "
                                 f"most {wanted}; killed.")
        described, arrays, left = [], {}, 8 * MAX_STORED_VALUES
        for index in range(number):
            _, text = self._receive((NAME,), MAX_TEXT_BYTES, seconds, doing)
            _, array = self._receive((ARRAY,), left, seconds, doing)
            left -= array.nbytes
            try:
                described.append(json.loads(_text(text)))
            except ValueError:
                described.append(None)
            arrays[str(index)] = array if array.dtype == np.float64 else np.zeros((0, 0))
        try:
            return layers_from_arrays(arrays, described, whose=f"{self.name!r}'s")
        except ValueError as error:
            raise ModelLoadError(f"The sandbox worker for {self.path!r} sent weight layers that do not fit their "
                                 f"description ({error}); refused.") from None

    def _import(self) -> Any:
        import onnx

        from .files import sniff
        from .onnx_checks import check_onnx
        from .onnx_import import import_onnx

        kind = sniff(Path(self.path))
        if kind == "onnx":
            proto = onnx.load_model(self.path, load_external_data=False)
            check_onnx(proto, self.path)
            return import_onnx(proto).float()
        limit = int(self._options.get("max_bytes") or 1 << 31)
        if kind == "torchscript":
            send_array(self._sock, EXPORT, np.zeros(0, dtype=np.uint8))
            _, data = self._receive((BYTES,), limit * 4, self.limits.load_seconds, "exporting it to ONNX")
            return import_onnx(onnx.load_model_from_string(bytes(data))).float()
        import torch

        from .files import load_factory

        send_array(self._sock, WEIGHTS, np.zeros(0, dtype=np.uint8))
        _, count = self._receive((COUNT,), 8, self.limits.load_seconds, "reading its weights")
        number = int(count.ravel()[0]) if count.size == 1 else -1
        if not 0 <= number <= MAX_TENSORS:
            self._kill()
            raise ModelLoadError(f"The sandbox worker for {self.path!r} announced {number} tensors; refused.")
        state, total = {}, 0
        for _ in range(number):
            _, name = self._receive((NAME,), MAX_TEXT_BYTES, self.limits.load_seconds, "reading its weights")
            _, array = self._receive((ARRAY,), limit * 2 - total, self.limits.load_seconds, "reading its weights")
            total += array.nbytes
            state[_text(name)] = torch.from_numpy(array.copy())
        module = load_factory(str(self._options["factory"]))()
        module.load_state_dict(state, strict=True)
        return module.float().eval()
