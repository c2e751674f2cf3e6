"""What runs inside the sandbox: the zygote's loop and each worker's life (see
:mod:`tafa.models.sandbox` for the sandbox as a whole and its parent's side).

The zygote (started by :mod:`tafa.models.zygote`, which names :func:`_zygote_main` in its boot
line) imports the libraries of its flavour and the loaders of :mod:`tafa.models.files` once,
then forks a worker per file; a worker limits itself, opens its file with
:func:`~tafa.models.files.load_file` and answers the parent's requests over the wire format of
:mod:`tafa.models.sandbox` until the parent closes the socket.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, TafaError
from ..threads import pin_torch_threads
from .sandbox import (ANSWER, ARRAY, BYTES, CALL, COUNT, ERROR, EXPORT, LAYERS, NAME, READY, WEIGHTS, _as_bytes,
                      _Malformed, recv_array, send_array)
from .zygote import FLAVOURS, _Closed, _recv_exact, flavour


# --- the zygote: started once (see .zygote), forks one worker per model -------------------

def _zygote_main(fd: int, own_flavour: str) -> None:
    """The zygote's loop: import the libraries of its flavour ``own_flavour`` once (so that workers
    start in milliseconds), then fork a worker per request."""
    import importlib

    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    for library in FLAVOURS[own_flavour]:
        importlib.import_module(library)

    from . import files  # noqa: F401

    if "torch" in FLAVOURS[own_flavour]:
        pin_torch_threads(1)
    root = os.getcwd()
    statuses: dict[int, dict[str, Any]] = {}

    def reap(pid: int = -1, flags: int = os.WNOHANG) -> None:
        while True:
            try:
                found, status, usage = os.wait4(pid, flags)
            except ChildProcessError:
                return
            if found == 0:
                return
            statuses[found] = {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                               "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1,
                               "maxrss_kb": usage.ru_maxrss}
            if len(statuses) > 10_000:
                statuses.pop(next(iter(statuses)))
            if pid != -1:
                return

    while True:
        try:
            # the descriptor travels with the message's first bytes: receive them with it
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
            if not data:
                break
            while len(data) < 4:
                data += bytes(_recv_exact(sock, 4 - len(data), None))
            size = struct.unpack("<I", data[:4])[0]
            data = data[4:]
            if len(data) < size:
                data += bytes(_recv_exact(sock, size - len(data), None))
        except (_Closed, OSError, struct.error):
            break
        message = json.loads(data)
        reap()
        if message["op"] == "fork":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    sock.close()
                    _worker_main(fds[0], message, root, own_flavour)
                except BaseException:  # noqa: BLE001 - a worker never returns into the zygote's loop
                    import traceback

                    traceback.print_exc()  # into the captured output, for debugging; never shown
                    code = 3
                finally:
                    os._exit(code)
            for descriptor in fds:
                os.close(descriptor)
            reply: dict[str, Any] = {"pid": pid}
        else:  # "status": how a worker ended (waits for it a moment, then kills it)
            pid = int(message["pid"])
            waited = time.monotonic() + 2.0
            while pid not in statuses and time.monotonic() < waited:
                reap(pid)
                if pid not in statuses:
                    time.sleep(0.01)
            if pid not in statuses:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                reap(pid, 0)
            reply = statuses.pop(pid, {"signal": 0, "exit": -1, "maxrss_kb": 0})
        out = json.dumps(reply).encode()
        try:
            sock.sendall(struct.pack("<I", len(out)) + out)
        except OSError:
            break
    reap(-1, 0)  # workers end when their parent's sockets close


def _virtual_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit(worker_limits: dict[str, Any], file_bytes: int) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    memory = _virtual_bytes() + int(worker_limits["memory_bytes"]) + 4 * file_bytes
    cpu = int(worker_limits["cpu_seconds"])
    for name, value in (("RLIMIT_AS", memory), ("RLIMIT_CPU", cpu), ("RLIMIT_FSIZE", 0), ("RLIMIT_CORE", 0),
                        ("RLIMIT_NOFILE", int(worker_limits["open_files"]))):
        resource.setrlimit(getattr(resource, name), (value, value))


def _worker_main(fd: int, message: dict[str, Any], root: str, own_flavour: str) -> None:
    """One worker of a zygote of flavour ``own_flavour``: limits, an empty directory, the file opened
    by the in-process loader (a file of another flavour is refused), then requests answered
    until the parent closes the socket."""
    from .files import load_file

    sock = socket.socket(fileno=fd)
    workdir = tempfile.mkdtemp(dir=root)
    os.chdir(workdir)
    path = message["path"]
    options = message["options"]
    try:
        _limit(message["limits"], os.stat(path).st_size)
        if flavour(path) != own_flavour:
            raise ModelLoadError(f"{path!r} is not a file of the {own_flavour!r} sandbox; refused.")
        if "torch" in FLAVOURS[own_flavour]:
            pin_torch_threads(1)
        model = load_file(path, **options)
    except BaseException as error:  # noqa: BLE001 - every failure goes back as one error message
        _send_error(sock, error)
        return
    send_array(sock, READY, np.array([model.batch_size, len(model.input_shape), *model.input_shape,
                                      len(model.output_shape), *model.output_shape], dtype=np.int64))
    budget = 1 << 31
    while True:
        try:
            kind, array = recv_array(sock, kinds=(CALL, EXPORT, WEIGHTS, LAYERS), max_bytes=budget)
        except (_Closed, _Malformed) as error:
            print(f"worker: {type(error).__name__}: {error}", file=sys.stderr)
            return
        try:
            if kind == CALL:
                send_array(sock, ANSWER, np.asarray(model._forward(np.array(array, dtype=np.float32)),
                                                    dtype=np.float64))
            elif kind == EXPORT:
                send_array(sock, BYTES, np.frombuffer(_onnx_bytes(model), dtype=np.uint8))
            elif kind == LAYERS:
                _send_layers(sock, model, int(array.ravel()[0]) if array.size == 1 else 0, repr(Path(path).name))
            else:
                state = model.module.state_dict()  # type: ignore[attr-defined]
                send_array(sock, COUNT, np.array([len(state)], dtype=np.int64))
                for name, tensor in state.items():
                    send_array(sock, NAME, _as_bytes(name))
                    send_array(sock, ARRAY, tensor.detach().float().numpy())
        except BaseException as error:  # noqa: BLE001
            _send_error(sock, error)


def _send_layers(sock: socket.socket, model: Any, max_layers: int, source: str) -> None:
    """The worker's side of :meth:`SandboxedModel.weight_layers`: the model's first
    ``max_layers`` weighted layers read as units here, where the file was parsed (an ONNX file
    from its checked graph, without torch; a TorchScript file through the ONNX export and
    import; a weights file from the factory's module), then sent as a count (-1: the weights
    cannot be read) and a description and an array per layer."""
    from ..weights.layers import MAX_LAYERS, MAX_STORED_VALUES, unit_layers
    from .files import OnnxModel

    max_layers = max(0, min(max_layers, MAX_LAYERS))
    if isinstance(model, OnnxModel):
        from .onnx_units import proto_unit_layers

        layers: list[Any] | None = proto_unit_layers(model._proto, source=source, max_layers=max_layers,
                                                     max_values=MAX_STORED_VALUES)
    else:
        module = model.torch_module()
        layers = None if module is None else unit_layers(module, source=source, max_layers=max_layers,
                                                         max_values=MAX_STORED_VALUES)
    send_array(sock, COUNT, np.array([-1 if layers is None else len(layers)], dtype=np.int64))
    for layer in layers or []:
        send_array(sock, NAME, _as_bytes(json.dumps({**layer.describe(), "name": layer.name[:200]})))
        send_array(sock, ARRAY, np.asarray(layer.vectors, dtype=np.float64))


def _onnx_bytes(model: Any) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.onnx.export(model.module, (torch.zeros(1, *model.input_shape),), buffer, dynamo=False,  # type: ignore[arg-type]
                      input_names=["x"], output_names=["y"])
    return buffer.getvalue()


def _send_error(sock: socket.socket, error: BaseException) -> None:
    if isinstance(error, TafaError):
        name, text = type(error).__name__, str(error)
    elif isinstance(error, MemoryError):
        name, text = "ModelLoadError", "ran out of the sandbox's memory limit"
    else:
        name, text = "ModelLoadError", f"failed in the sandbox ({type(error).__name__}: {str(error)[:300]})"
    try:
        send_array(sock, ERROR, _as_bytes(f"{name}\0{text}"))
    except OSError:
        pass
