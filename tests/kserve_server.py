"""Inference servers on loopback for the HTTP tests, started and stopped by the tests.

Two servers speak the KServe v2 Open Inference Protocol here:

- :class:`KServeServer`, a small server on the standard library's ``ThreadingHTTPServer``,
  serving any numpy function (the tests give it a trained torch MLP). It can misbehave on
  demand the ways real services do: answer slowly, answer 429/503 with ``Retry-After`` a
  number of times, drop connections, answer a wrong shape, NaN, or something that is not
  JSON. It is strict about requests (name, datatype, shape, data length), like Triton.
- :class:`MLServerProcess`, the maintained MLServer (``pip install mlserver``) run as a
  subprocess with :class:`NumpyMLPRuntime`, for a conformance check against a server tafa
  did not write. MLServer cannot be made to answer 429 or NaN, hence the first server.

This module imports only numpy and the standard library at the top, so that MLServer's
own Python (possibly another environment) can import :class:`NumpyMLPRuntime` from it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

#: An opener that never goes through a proxy (loopback traffic stays on loopback).
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_NUMPY_TYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
                "INT32": np.int32, "INT64": np.int64}


class KServeServer:
    """A KServe v2 server for one model on ``127.0.0.1`` (a free port unless one is given).

    ``predict`` maps a batch ``(b, *input_shape)`` to ``(b, *output_shape)``. The attributes
    below the constructor switch misbehaviours on and off at any time. :attr:`arrivals`
    records every inference request received as ``(time, batch size)``, answered or not;
    :attr:`log` every answer sent as ``(time, method, path, status, batch size)``.

    >>> with KServeServer(lambda x: x.sum(axis=1, keepdims=True), input_shape=(3,),
    ...                   output_shape=(1,)) as server:
    ...     body = json.dumps({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32",
    ...                                    "data": [1, 2, 3, 4, 5, 6]}]}).encode()
    ...     request = urllib.request.Request(server.url + "/infer", data=body,
    ...                                      headers={"Content-Type": "application/json"})
    ...     json.load(LOOPBACK.open(request))["outputs"][0]["data"]
    [6.0, 15.0]
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], *, input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...], model_name: str = "digits",
                 version: str | None = None, input_datatype: str = "FP32",
                 output_datatype: str = "FP32", port: int = 0, max_batch: int | None = None) -> None:
        self.predict = predict
        self.model_name = model_name
        self.version = version
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.input_datatype = input_datatype
        self.output_datatype = output_datatype
        self.max_batch = max_batch
        self.port = port
        # Misbehaviours, switched by the tests:
        self.sleep = 0.0           #: seconds to wait before answering an inference request
        self.busy = 0              #: answer this many inference requests with busy_status first
        self.busy_status = 429
        self.retry_after: str | None = "0"  #: the Retry-After header of busy answers (None: none)
        self.drop_after: int | None = None  #: after this many answers, close connections unanswered
        self.wrong_shape = False   #: drop the last output column
        self.nan: str | None = None  #: "NaN" or "null" (as orjson, MLServer) for the first value
        self.garbage = False       #: answer 200 with a body that is not JSON
        # Hostile services (the red-team cases):
        self.drip = 0.0            #: seconds between bytes of an inference answer (status line on)
        #: answer every inference request with these bytes (status 200), given the batch size:
        #: ``(pieces, content_length)``; ``None`` length: no Content-Length, closed when done
        self.hostile_answer: Callable[[int], tuple[Iterable[bytes], int | None]] | None = None
        self.hostile_metadata: bytes | None = None  #: the metadata answer, as these bytes
        self.noise = 0.0           #: Gaussian noise per answer, relative to each row's largest value
        self.adaptive = False      #: answer an input seen before otherwise (its outputs reversed)
        self._seen: set[bytes] = set()
        self.arrivals: list[tuple[float, int]] = []
        self.log: list[tuple[float, str, str, int, int]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.answered = 0

    @property
    def url(self) -> str:
        """The model's URL, as a user gives it to tafa."""
        return f"http://127.0.0.1:{self.port}{self.model_path}"

    @property
    def model_path(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return f"/v2/models/{self.model_name}{version}"

    def batches(self) -> list[int]:
        """The batch sizes of the inference requests answered 200, in order."""
        with self._lock:
            return [entry[4] for entry in self.log if entry[1] == "POST" and entry[3] == 200]

    def start(self) -> "KServeServer":
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.app = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening at once; requests still sleeping are abandoned."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "KServeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the protocol -----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        batch = self.max_batch or -1
        return {"name": self.model_name, "versions": [self.version] if self.version else [],
                "platform": "pytorch_numpy",
                "inputs": [{"name": "input", "datatype": self.input_datatype,
                            "shape": [batch, *self.input_shape]}],
                "outputs": [{"name": "output", "datatype": self.output_datatype,
                             "shape": [batch, *self.output_shape]}]}

    def infer(self, request: Any) -> tuple[int, dict[str, Any]]:
        """(status, answer) for a decoded request body."""
        try:
            (tensor,) = request["inputs"]
            name, shape, datatype, data = (tensor[key] for key in ("name", "shape", "datatype", "data"))
        except (KeyError, TypeError, ValueError):
            return 400, {"error": "expected {'inputs': [{name, shape, datatype, data}]}"}
        if name != "input":
            return 400, {"error": f"unexpected input {name!r}"}
        if datatype != self.input_datatype:
            return 400, {"error": f"input datatype must be {self.input_datatype}, got {datatype}"}
        if not isinstance(shape, list) or tuple(shape[1:]) != self.input_shape or not shape \
                or (self.max_batch and shape[0] > self.max_batch):
            return 400, {"error": f"unexpected input shape {shape}"}
        values = np.asarray(data, dtype=_NUMPY_TYPES[datatype])
        if values.size != int(np.prod(shape)):
            return 400, {"error": f"{values.size} values for shape {shape}"}
        inputs = values.reshape(shape)
        out = np.array(self.predict(inputs), dtype=np.float64)
        if self.noise:
            scale = np.abs(out).reshape(len(out), -1).max(axis=1).reshape(-1, *[1] * (out.ndim - 1))
            out = out + np.random.default_rng().normal(0.0, self.noise, out.shape) * scale
        if self.adaptive:
            with self._lock:
                for row, sample in enumerate(inputs):
                    key = sample.tobytes()
                    if key in self._seen:  # a repeated input: a probe, the service guesses
                        out[row] = out[row][::-1]
                    self._seen.add(key)
        if self.wrong_shape:
            out = out[..., :-1]
        if self.output_datatype.startswith("INT"):
            payload = out.astype(np.int64).ravel().tolist()
        else:
            payload = out.astype(_NUMPY_TYPES[self.output_datatype]).astype(np.float64).ravel().tolist()
        if self.nan and payload:
            payload[0] = float("nan") if self.nan == "NaN" else None
        return 200, {"model_name": self.model_name, "model_version": self.version or "",
                     "id": str(len(self.log)),
                     "outputs": [{"name": "output", "shape": list(out.shape),
                                  "datatype": self.output_datatype, "data": payload}]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a request that sleeps
    allow_reuse_address = True
    app: KServeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):  # a client that hung up: nothing to report
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet tests
        pass

    def do_GET(self) -> None:
        app = self.server.app
        path = self.path.rstrip("/")
        if path in ("/v2/health/ready", "/v2/health/live", app.model_path + "/ready"):
            self._reply(200, {}, batch=0)
        elif path == app.model_path:
            self._reply(200, app.hostile_metadata or app.metadata(), batch=0)
        else:
            self._reply(404, {"error": f"no model at {self.path}"}, batch=0)

    def do_POST(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != app.model_path + "/infer":
            self._reply(404, {"error": f"no model at {self.path}"}, batch=0)
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._reply(415, {"error": "Content-Type must be application/json"}, batch=0)
            return
        try:
            request = json.loads(body)
            batch = int(request["inputs"][0]["shape"][0])
        except (ValueError, KeyError, TypeError, IndexError):
            self._reply(400, {"error": "the request is not KServe v2 JSON"}, batch=0)
            return
        with app._lock:
            app.arrivals.append((time.monotonic(), batch))
        if app.sleep and app._stopping.wait(app.sleep):
            return  # stopped while sleeping: never answer
        with app._lock:
            busy = app.busy > 0
            app.busy -= busy
            dropped = app.drop_after is not None and app.answered >= app.drop_after
        if busy:
            headers = {} if app.retry_after is None else {"Retry-After": app.retry_after}
            self._reply(app.busy_status, {"error": "busy"}, batch=batch, headers=headers)
            return
        if dropped:
            with app._lock:
                app.log.append((time.monotonic(), "POST", self.path, 0, batch))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if app.garbage:
            self._reply(200, b"<html>Gateway says hello</html>", batch=batch)
            return
        if app.hostile_answer is not None:
            self._stream(*app.hostile_answer(batch), batch=batch)
            return
        status, answer = app.infer(request)
        with app._lock:
            app.answered += status == 200
        if app.drip:
            self._drip(status, answer, batch=batch)
            return
        self._reply(status, answer, batch=batch)

    def _stream(self, pieces: Iterable[bytes], length: int | None, *, batch: int) -> None:
        """Answer 200 with ``pieces``, announcing ``length`` (or no length: closed when done)."""
        app = self.server.app
        with app._lock:
            app.log.append((time.monotonic(), self.command, self.path, 200, batch))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.close_connection = True
        for piece in pieces:
            if app._stopping.is_set():
                return
            self.wfile.write(piece)

    def _drip(self, status: int, answer: dict[str, Any], *, batch: int) -> None:
        """The whole answer (status line, headers, body), one byte every ``drip`` seconds."""
        app = self.server.app
        with app._lock:
            app.log.append((time.monotonic(), self.command, self.path, status, batch))
        body = json.dumps(answer).encode()
        raw = (f"HTTP/1.0 {status} OK\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.close_connection = True
        for index in range(len(raw)):
            self.wfile.write(raw[index:index + 1])
            self.wfile.flush()
            if app._stopping.wait(app.drip):
                return

    def _reply(self, status: int, answer: dict[str, Any] | bytes, *, batch: int,
               headers: dict[str, str] | None = None) -> None:
        app = self.server.app
        with app._lock:
            app.log.append((time.monotonic(), self.command, self.path, status, batch))
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def json_bomb(values: int, *, piece: int = 1 << 20) -> Iterable[bytes]:
    """A valid KServe v2 answer of ``values`` zeros (about ``2 * values`` bytes), made as it
    is sent: never held whole."""
    yield json.dumps({"outputs": [{"name": "output", "shape": [values], "datatype": "FP32"}]})[:-3].encode()
    yield b', "data": ['
    run = piece // 2
    for start in range(0, values - 1, run):
        yield b"0," * min(run, values - 1 - start)
    yield b"0]}]}"


def json_bomb_length(values: int) -> int:
    """The bytes :func:`json_bomb` sends."""
    head = json.dumps({"outputs": [{"name": "output", "shape": [values], "datatype": "FP32"}]})[:-3]
    return len(head) + len(b', "data": [') + 2 * (values - 1) + len(b"0]}]}")


# -- MLServer -----------------------------------------------------------------------------

try:
    from mlserver import MLModel as _MLModel
except ImportError:  # MLServer is optional: only the conformance test needs it
    _MLModel = None

if _MLModel is not None:
    class NumpyMLPRuntime(_MLModel):  # type: ignore[misc, valid-type]
        """An MLServer runtime serving a ReLU MLP stored as ``w0, b0, w1, b1, ...`` in an .npz.

        Flatten, then ``x @ w.T + b`` per layer with ReLU between layers: the forward pass of
        ``tafa.bench.architectures.mlp``, in float32 numpy.
        """

        async def load(self) -> bool:
            with np.load(self.settings.parameters.uri) as weights:
                count = len(weights.files) // 2
                self.layers = [(weights[f"w{i}"], weights[f"b{i}"]) for i in range(count)]
            return True

        async def predict(self, payload: Any) -> Any:
            from mlserver.codecs import NumpyCodec
            from mlserver.types import InferenceResponse
            x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
            x = x.reshape(len(x), -1)
            for index, (weight, bias) in enumerate(self.layers):
                x = x @ weight.T + bias
                if index < len(self.layers) - 1:
                    x = np.maximum(x, 0)
            return InferenceResponse(model_name=self.name,
                                     outputs=[NumpyCodec.encode_output("output", x)])


def mlserver_command() -> list[str] | None:
    """How to start MLServer here: ``$TAFA_MLSERVER`` (CI installs MLServer in a venv of its own,
    since it pins protobuf below what onnx prefers), this Python if it has MLServer, else
    ``mlserver`` on PATH."""
    configured = os.environ.get("TAFA_MLSERVER")
    if configured:
        return [configured]
    if importlib.util.find_spec("mlserver") is not None:
        return [sys.executable, "-c", "from mlserver.cli import main; main()"]
    found = shutil.which("mlserver")
    return [found] if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MLServerProcess:
    """MLServer in a subprocess on loopback, serving ``layers`` (a list of (weight, bias))."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], *, input_shape: tuple[int, ...],
                 output_dim: int, model_name: str = "digits") -> None:
        command = mlserver_command()
        if command is None:
            raise RuntimeError("MLServer is not installed (pip install mlserver)")
        self.command = command
        self.model_name = model_name
        self.folder = Path(tempfile.mkdtemp(prefix="tafa-mlserver-"))
        weights = {}
        for index, (weight, bias) in enumerate(layers):
            weights[f"w{index}"], weights[f"b{index}"] = weight, bias
        np.savez(self.folder / "weights.npz", **weights)
        self.port = free_port()
        settings = {"host": "127.0.0.1", "http_port": self.port, "grpc_port": free_port(),
                    "metrics_port": free_port(), "parallel_workers": 0, "debug": False}
        model = {"name": model_name, "implementation": "kserve_server.NumpyMLPRuntime",
                 "parameters": {"uri": str(self.folder / "weights.npz")},
                 "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *input_shape]}],
                 "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, output_dim]}]}
        (self.folder / "settings.json").write_text(json.dumps(settings))
        (self.folder / "model-settings.json").write_text(json.dumps(model))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/{self.model_name}"

    def start(self, wait: float = 60.0) -> "MLServerProcess":
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self.process = subprocess.Popen([*self.command, "start", str(self.folder)], cwd=self.folder,
                                        stdout=open(self.folder / "log.txt", "wb"),
                                        stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with LOOPBACK.open(self.url + "/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        log = (self.folder / "log.txt").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"MLServer did not become ready:\n{log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "MLServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
