"""Suspects behind an inference service that speaks the KServe v2 Open Inference Protocol.

The protocol is the one Triton, KServe and MLServer answer: ``GET /v2/models/NAME`` returns
the model's metadata (input and output names, datatypes, shapes with ``-1`` for the batch
axis) and ``POST /v2/models/NAME/infer`` answers
``{"inputs": [{"name", "shape", "datatype", "data"}]}`` with
``{"outputs": [{"name", "shape", "datatype", "data"}]}``, data flattened row-major.

:class:`HttpModel` is a :class:`~tafa.models.base.Model` like any other: the verifier calls
it with a batch of probes and gets the answers. On the way it keeps the manners a paid or
shared service needs: a query budget it never exceeds (and can check before starting), a
request rate, timeouts, retries with exponential backoff on 429/502/503/504 and connection
failures (honouring ``Retry-After``), a progress bar, and an on-disk cache of answers so that
an interrupted verification, run again, pays no query twice.

The endpoint is read from the URL alone; anything else is refused before a byte is sent:

>>> parse_endpoint("http://127.0.0.1:8080/v2/models/digits/versions/2").url
'http://127.0.0.1:8080/v2/models/digits/versions/2'
>>> parse_endpoint("http://localhost:8080/v2/models/digits/infer").infer_path
'/v2/models/digits/infer'
>>> parse_endpoint("ftp://host/v2/models/digits")
Traceback (most recent call last):
...
tafa.errors.InvalidParameter: The 'url' parameter of HttpModel must be an http(s) URL \
of the form http://HOST:PORT/v2/models/NAME[/versions/VERSION]. Got 'ftp://host/v2/models/digits' instead.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import math
import os
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from tqdm.auto import tqdm

from ..errors import (InvalidParameter, ModelLoadError, NonFiniteOutput, QueryBudgetExceeded,
                      ShapeMismatch, check_param)
from ..storage import write_atomically
from .base import Model

#: Input datatypes tafa can send (as JSON numbers) and the numpy type each is cast to.
FLOAT_TYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
#: Output datatypes read as class labels when the output has one value per input.
INTEGER_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
#: HTTP statuses that mean "not now": retried with backoff, never counted as queries.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
#: The largest answer read from a service; anything longer is refused unread.
MAX_ANSWER_BYTES = 256 << 20

_PATH = re.compile(r"^(/v2/models/[^/?#]+(?:/versions/[^/?#]+)?)(?:/infer)?/?$")


@dataclass(frozen=True)
class Endpoint:
    """Where a model answers: scheme, host, port and ``/v2/models/NAME[/versions/V]``."""

    scheme: str
    netloc: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        """The model's URL (also what its metadata is fetched from)."""
        return f"{self.scheme}://{self.netloc}{self.path}"

    @property
    def infer_path(self) -> str:
        return f"{self.path}/infer"


def parse_endpoint(url: str) -> Endpoint:
    """The :class:`Endpoint` a KServe v2 model URL names (a trailing ``/infer`` is tolerated)."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        port = parts.port if parts is not None else None
    except ValueError:  # e.g. a port that is not a number, a broken IPv6 address
        parts, port = None, None
    match = _PATH.match(parts.path) if parts is not None else None
    ok = parts is not None and match is not None and parts.scheme in ("http", "https") \
        and bool(parts.hostname) and not parts.query and not parts.fragment \
        and parts.username is None
    check_param("url", url, "an http(s) URL of the form http://HOST:PORT/v2/models/NAME"
                "[/versions/VERSION]", ok, caller="HttpModel")
    default_port = 443 if parts.scheme == "https" else 80  # type: ignore[union-attr]
    return Endpoint(parts.scheme, parts.netloc, parts.hostname,  # type: ignore[union-attr,arg-type]
                    port or default_port, match.group(1))  # type: ignore[union-attr]


class HttpModel(Model):
    """A suspect model queried over HTTP with the KServe v2 Open Inference Protocol.

    Args:
        url: ``http://HOST:PORT/v2/models/NAME`` (optionally ``/versions/VERSION``). The
            metadata fetched from it sets :attr:`input_shape` and :attr:`output_shape`.
        batch_size: inputs per inference request (capped at a fixed batch size the service
            reports).
        max_queries: the most inputs ever sent to the service by this object; a request that
            would pass it raises :class:`~tafa.errors.QueryBudgetExceeded` unsent. Answers
            taken from the cache are free. ``None``: no limit.
        rate: the most HTTP requests per second (``None``: as fast as answers come).
        timeout: seconds to wait for the service on each socket operation.
        retries: how many times a request is retried after a 429/502/503/504 answer, a
            timeout or a connection failure, before the call fails.
        backoff: the first retry waits this many seconds, each further one twice as long,
            unless the service sends ``Retry-After``.
        max_wait: no single wait before a retry is longer than this, ``Retry-After`` included.
        cache_dir: folder of answers already received (created if missing). A batch whose
            answer is there is not sent again; rerunning an interrupted verification with the
            same folder and batch size resumes where it stopped.
        progress: show a tqdm bar of the queries answered.
        output: the name of the output to read when the model has several (default: the
            first its metadata lists).
        input_shape, output_shape: per-sample shapes, needed only where the metadata leaves
            an axis other than the batch axis dynamic (``-1``).
        name: how messages name the model (default: its URL).
        headers: extra HTTP headers sent with every request (e.g. an ``Authorization``).

    Attributes:
        queries: inputs answered, from the network or the cache.
        network_queries: inputs sent in requests the service may have answered (answered,
            or timed out after sending); this is what ``max_queries`` bounds.
        cached_queries: inputs answered from the cache.
        requests, retried, seconds: HTTP requests made (metadata and retries included),
            retries among them, and seconds spent in requests and waits.
        metadata: what the service reported about itself (its JSON, as received).
        labels_only: ``True`` when the service returns only a class label per input (an
            integer output of shape ``[-1]`` or ``[-1, 1]``); its answers are then that label
            as a float, of shape ``(1,)``.
    """

    def __init__(self, url: str, *, batch_size: int = 64, max_queries: int | None = None,
                 rate: float | None = None, timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.5, max_wait: float = 60.0,
                 cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 output: str | None = None, input_shape: tuple[int, ...] | None = None,
                 output_shape: tuple[int, ...] | None = None, name: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        caller = "HttpModel"
        self.endpoint = parse_endpoint(url)
        check_param("batch_size", batch_size, "an integer >= 1",
                    _is_int(batch_size) and batch_size >= 1, caller=caller)
        check_param("max_queries", max_queries, "None or an integer >= 0",
                    max_queries is None or (_is_int(max_queries) and max_queries >= 0), caller=caller)
        check_param("rate", rate, "None or a number of requests per second > 0",
                    rate is None or (_is_number(rate) and rate > 0), caller=caller)
        check_param("timeout", timeout, "a number of seconds > 0",
                    _is_number(timeout) and timeout > 0, caller=caller)
        check_param("retries", retries, "an integer >= 0", _is_int(retries) and retries >= 0,
                    caller=caller)
        check_param("backoff", backoff, "a number of seconds >= 0",
                    _is_number(backoff) and backoff >= 0, caller=caller)
        check_param("max_wait", max_wait, "a number of seconds >= 0",
                    _is_number(max_wait) and max_wait >= 0, caller=caller)
        self.max_queries = None if max_queries is None else int(max_queries)
        self.rate = None if rate is None else float(rate)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_wait = float(max_wait)
        self.progress = bool(progress)
        self.headers = dict(headers or {})
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InvalidParameter(f"The 'cache_dir' parameter of {caller} must be a folder "
                                       f"that can be written. Got {str(cache_dir)!r} instead "
                                       f"({error.strerror or error}).") from None
        self.network_queries = 0
        self.cached_queries = 0
        self.requests = 0
        self.retried = 0
        self.seconds = 0.0
        self._last_request = -math.inf
        self._bar: Any = None

        self.metadata = self._fetch_metadata()
        sample_in, sample_out, fixed_batch = self._read_metadata(self.metadata, output,
                                                                 input_shape, output_shape)
        if fixed_batch is not None:
            batch_size = min(int(batch_size), fixed_batch)
        super().__init__(sample_in, sample_out, name=name or self.endpoint.url,
                         batch_size=batch_size)

    # -- the Model interface ---------------------------------------------------------------

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch of inputs, as float64, with a progress bar of queries answered."""
        total = len(x) if np.ndim(x) else 0
        with tqdm(total=total, unit="query", desc=f"querying {self.endpoint.path}",
                  disable=not self.progress, leave=False, dynamic_ncols=True) as bar:
            self._bar = bar
            try:
                return super().__call__(x)
            finally:
                self._bar = None

    def _forward(self, x: np.ndarray) -> np.ndarray:
        wire = np.ascontiguousarray(x, dtype=FLOAT_TYPES[self.input_datatype])
        count = len(wire)
        key = self._cache_key(wire)
        out = self._cache_read(key, count)
        if out is not None:
            self.cached_queries += count
        else:
            body = json.dumps({"inputs": [{
                "name": self.input_name, "shape": list(wire.shape),
                "datatype": self.input_datatype, "data": wire.ravel().tolist()}]}).encode()
            answer = self._exchange("POST", self.endpoint.infer_path, body, queries=count,
                                    what=f"an inference request of {count} inputs")
            out = self._read_answer(answer, count)
            self._cache_write(key, out)
        if self._bar is not None:
            self._bar.set_postfix(sent=self.network_queries, cached=self.cached_queries,
                                  refresh=False)
            self._bar.update(count)
        return out

    def describe(self) -> dict[str, Any]:
        """The endpoint, what it reported about itself, and what querying it cost."""
        info = super().describe()
        info.update({
            "endpoint": self.endpoint.url, "metadata": self.metadata,
            "input": {"name": self.input_name, "datatype": self.input_datatype},
            "output": {"name": self.output_name, "datatype": self.output_datatype},
            "labels_only": self.labels_only, "batch_size": self.batch_size,
            "max_queries": self.max_queries, "queries": self.queries,
            "network_queries": self.network_queries, "cached_queries": self.cached_queries,
            "requests": self.requests, "retries": self.retried,
            "seconds": round(self.seconds, 3)})
        return info

    def check_budget(self, queries: int | np.ndarray) -> int:
        """Refuse, before anything is sent, a run that would pass ``max_queries``.

        ``queries`` is the number of inputs the run will send, or the inputs themselves:
        then those whose answers are already cached (batched as a call would batch them) are
        not counted. Returns the number of queries the run would send.
        """
        if _is_int(queries):
            check_param("queries", queries, "an integer >= 0 or an array of inputs",
                        int(queries) >= 0, caller="HttpModel.check_budget")  # type: ignore[arg-type]
            needed = int(queries)  # type: ignore[arg-type]
        else:
            inputs = np.asarray(queries, dtype=np.float32)
            if inputs.shape[1:] != self.input_shape:
                raise ShapeMismatch(f"{self.name} takes inputs of shape {self.input_shape}; "
                                    f"the fingerprint queries with shape {inputs.shape[1:]}.")
            needed = 0
            for start in range(0, len(inputs), self.batch_size):
                batch = np.ascontiguousarray(inputs[start:start + self.batch_size],
                                             dtype=FLOAT_TYPES[self.input_datatype])
                if not self._cache_has(self._cache_key(batch)):
                    needed += len(batch)
        if self.max_queries is not None and needed > self.max_queries - self.network_queries:
            raise QueryBudgetExceeded(
                f"{self.endpoint.url}: the run needs {needed} queries but max_queries="
                f"{self.max_queries} allows {self.max_queries - self.network_queries} more; "
                f"nothing was sent.")
        return needed

    # -- metadata ---------------------------------------------------------------------------

    def _fetch_metadata(self) -> dict[str, Any]:
        raw = self._exchange("GET", self.endpoint.path, None, queries=0,
                             what="the metadata request")
        metadata = self._parse_json(raw, "metadata")
        if not isinstance(metadata, dict):
            raise self._malformed("metadata", "not a JSON object")
        return metadata

    def _read_metadata(self, metadata: dict[str, Any], output: str | None,
                       input_shape: tuple[int, ...] | None,
                       output_shape: tuple[int, ...] | None,
                       ) -> tuple[tuple[int, ...], tuple[int, ...], int | None]:
        """Set names, datatypes and ``labels_only``; return the per-sample input and output
        shapes and the fixed batch size the service accepts (``None``: any)."""
        inputs = self._tensors(metadata, "inputs")
        outputs = self._tensors(metadata, "outputs")
        url = self.endpoint.url
        if len(inputs) != 1:
            raise ModelLoadError(f"{url} takes {len(inputs)} input tensors "
                                 f"({', '.join(t['name'] for t in inputs)}); tafa queries models "
                                 f"with one.")
        tensor_in = inputs[0]
        if tensor_in["datatype"] not in FLOAT_TYPES:
            raise ModelLoadError(f"{url} takes {tensor_in['datatype']} inputs; tafa sends "
                                 f"{', '.join(FLOAT_TYPES)}.")
        names = [t["name"] for t in outputs]
        if output is None:
            tensor_out = outputs[0]
        elif output in names:
            tensor_out = outputs[names.index(output)]
        else:
            raise InvalidParameter(f"The 'output' parameter of HttpModel must be one of {names} "
                                   f"(the outputs {url} reports). Got {output!r} instead.")
        datatype = tensor_out["datatype"]
        if datatype not in FLOAT_TYPES and datatype not in INTEGER_TYPES:
            raise ModelLoadError(f"{url} answers {datatype} outputs; tafa reads numeric tensors.")
        self.input_name: str = tensor_in["name"]
        self.input_datatype: str = tensor_in["datatype"]
        self.output_name: str = tensor_out["name"]
        self.output_datatype: str = datatype
        sample_in, fixed_in = self._sample_shape(tensor_in, input_shape, "input_shape")
        sample_out, fixed_out = self._sample_shape(tensor_out, output_shape, "output_shape")
        if sample_out in ((), (1,)):
            sample_out = (1,)  # one value per input: a score, a probability or a label
        #: True when the service returns only a class label per input.
        self.labels_only: bool = datatype in INTEGER_TYPES and sample_out == (1,)
        fixed = [size for size in (fixed_in, fixed_out) if size is not None]
        return sample_in, sample_out, (min(fixed) if fixed else None)

    def _tensors(self, metadata: dict[str, Any], key: str) -> list[dict[str, Any]]:
        tensors = metadata.get(key)
        if not isinstance(tensors, list) or not tensors:
            raise self._malformed("metadata", f"no {key!r} list")
        for tensor in tensors:
            if not (isinstance(tensor, dict) and isinstance(tensor.get("name"), str)
                    and isinstance(tensor.get("datatype"), str)
                    and isinstance(tensor.get("shape"), list) and tensor["shape"]
                    and all(_is_int(size) and size >= -1 for size in tensor["shape"])):
                raise self._malformed("metadata", f"an {key} entry without name, datatype "
                                      f"and shape: {_printable(json.dumps(tensor))}")
        return tensors

    def _sample_shape(self, tensor: dict[str, Any], given: tuple[int, ...] | None,
                      param: str) -> tuple[tuple[int, ...], int | None]:
        """Per-sample shape (metadata, completed by ``given``) and a fixed batch size or None."""
        batch, *sample = (int(size) for size in tensor["shape"])
        fixed_batch = batch if batch > 0 else None
        if batch == 0:
            raise self._malformed("metadata", f"a batch axis of size 0 for {tensor['name']!r}")
        if given is not None:
            given = tuple(int(size) for size in given)
            compatible = len(given) == len(sample) and all(
                size == -1 or size == wanted for size, wanted in zip(sample, given))
            if not compatible:
                raise ShapeMismatch(f"{self.endpoint.url} reports {tensor['name']!r} of shape "
                                    f"{tensor['shape']} (batch axis first); the {param} given "
                                    f"is {given}.")
            return given, fixed_batch
        if any(size < 0 for size in sample):
            raise ModelLoadError(f"{self.endpoint.url} reports {tensor['name']!r} of shape "
                                 f"{tensor['shape']} with a dynamic axis besides the batch axis; "
                                 f"give {param}=... to fix it.")
        return tuple(sample), fixed_batch

    # -- answers ----------------------------------------------------------------------------

    def _read_answer(self, raw: bytes, count: int) -> np.ndarray:
        """The chosen output of an inference answer, checked, as ``(count, *output_shape)``."""
        answer = self._parse_json(raw, "inference answer")
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, list) or not outputs or not all(isinstance(t, dict) for t in outputs):
            raise self._malformed("inference answer", "no 'outputs' list")
        chosen = [t for t in outputs if t.get("name") == self.output_name]
        if not chosen and len(outputs) == 1:
            chosen = outputs
        if not chosen:
            raise self._malformed("inference answer", f"no output named {self.output_name!r}")
        tensor = chosen[0]
        shape, data = tensor.get("shape"), tensor.get("data")
        if not (isinstance(shape, list) and all(_is_int(s) and s >= 0 for s in shape)):
            raise self._malformed("inference answer", "an output without a valid 'shape'")
        if tensor.get("datatype") == "BYTES" or not isinstance(data, list):
            raise self._malformed("inference answer", "an output without numeric 'data'")
        try:
            values = np.asarray(data, dtype=np.float64).ravel()  # JSON null reads as NaN
        except (TypeError, ValueError):
            raise self._malformed("inference answer", "an output with non-numeric 'data'") from None
        if values.size != math.prod(shape):
            raise self._malformed("inference answer", f"{values.size} values for shape {shape}")
        out = values.reshape(shape)
        if self.output_shape == (1,) and out.shape == (count,):
            out = out.reshape(count, 1)
        if out.shape != (count, *self.output_shape):
            raise ShapeMismatch(f"{self.endpoint.url} answered shape {list(out.shape)} for "
                                f"{count} inputs; its metadata promised "
                                f"{[count, *self.output_shape]}.")
        if not np.all(np.isfinite(out)):
            bad = int((~np.isfinite(out)).reshape(count, -1).any(axis=1).sum())
            raise NonFiniteOutput(f"{self.endpoint.url} answered NaN or inf for {bad} of "
                                  f"{count} inputs.")
        return out

    def _parse_json(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise self._malformed(what, f"not JSON: {_printable(raw[:80])}") from None

    def _malformed(self, what: str, detail: str) -> ModelLoadError:
        return ModelLoadError(f"{self.endpoint.url} sent a malformed {what} "
                              f"(KServe v2 expected): {detail}.")

    # -- the cache --------------------------------------------------------------------------

    def _cache_key(self, wire: np.ndarray) -> str:
        """SHA-256 of (endpoint URL, output name, input dtype, input shape, input bytes)."""
        digest = hashlib.sha256()
        for part in (self.endpoint.url, self.output_name, wire.dtype.str, str(wire.shape)):
            digest.update(part.encode())
            digest.update(b"\0")
        digest.update(wire.tobytes())
        return digest.hexdigest()

    def _cache_path(self, key: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{key}.npy"

    def _cache_has(self, key: str) -> bool:
        return self.cache_dir is not None and self._cache_path(key).is_file()

    def _cache_read(self, key: str, count: int) -> np.ndarray | None:
        if not self._cache_has(key):
            return None
        try:
            out = np.load(self._cache_path(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # unreadable: ask the service again and overwrite it
        if out.shape != (count, *self.output_shape) or not np.all(np.isfinite(out)):
            return None
        return np.asarray(out, dtype=np.float64)

    def _cache_write(self, key: str, out: np.ndarray) -> None:
        if self.cache_dir is None:
            return
        write_atomically(self._cache_path(key), lambda handle: np.save(handle, out, allow_pickle=False))

    # -- the wire ---------------------------------------------------------------------------

    def _exchange(self, method: str, path: str, body: bytes | None, *, queries: int,
                  what: str) -> bytes:
        """The body of a 200 answer to one request, after rate limiting and retries."""
        url = self.endpoint.url
        started = time.monotonic()
        try:
            attempt = 0
            while True:
                if queries and self.max_queries is not None \
                        and self.network_queries + queries > self.max_queries:
                    raise QueryBudgetExceeded(
                        f"{url}: sending {queries} more queries would pass max_queries="
                        f"{self.max_queries} ({self.network_queries} sent); stopped before sending.")
                self._keep_rate()
                retry_after = None
                try:
                    status, headers, payload = self._send(method, path, body, what)
                except _NoAnswer as failure:
                    if failure.sent:
                        self.network_queries += queries  # the service may have answered it
                    problem = failure.problem
                else:
                    if status == 200:
                        self.network_queries += queries
                        return payload
                    problem = f"HTTP {status}"
                    if status not in RETRIED_STATUSES:
                        self.network_queries += queries if status >= 500 else 0
                        raise ModelLoadError(f"{url} answered {what} with {problem}: "
                                             f"{_error_text(payload)}")
                    retry_after = _retry_after(headers.get("Retry-After"))
                if attempt == self.retries:
                    raise ModelLoadError(f"{url} did not answer {what} after {attempt + 1} "
                                         f"attempt{'s' if attempt else ''} (last: {problem}).")
                wait = self.backoff * 2 ** attempt if retry_after is None else retry_after
                time.sleep(min(wait, self.max_wait))
                attempt += 1
                self.retried += 1
        finally:
            self.seconds += time.monotonic() - started

    def _send(self, method: str, path: str, body: bytes | None,
              what: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Status, headers and body of one HTTP exchange on a fresh connection.

        Raises :class:`_NoAnswer` (saying whether the request went out) when the network
        fails, and :class:`ModelLoadError` when the answer is too long or TLS is not trusted.
        """
        url = self.endpoint.url
        sent = False
        connection = self._connect()
        try:
            connection.request(method, path, body=body, headers=self._headers(body))
            sent = True
            response = connection.getresponse()
            length = response.getheader("Content-Length") or ""
            if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
                raise ModelLoadError(f"{url} answered {what} with {length} bytes; more than "
                                     f"{MAX_ANSWER_BYTES} is refused.")
            payload = response.read(MAX_ANSWER_BYTES + 1)
        except ssl.SSLCertVerificationError as error:
            raise ModelLoadError(f"{url}: TLS certificate not trusted "
                                 f"({_printable(str(error.verify_message))}).") from None
        except (OSError, http.client.HTTPException) as error:
            raise _NoAnswer(_describe_failure(error), sent) from None
        finally:
            connection.close()
        if len(payload) > MAX_ANSWER_BYTES:
            raise ModelLoadError(f"{url} answered {what} with more than {MAX_ANSWER_BYTES} "
                                 f"bytes; refused.")
        return response.status, response.headers, payload

    def _connect(self) -> http.client.HTTPConnection:
        self.requests += 1
        if self.endpoint.scheme == "https":
            return http.client.HTTPSConnection(self.endpoint.host, self.endpoint.port,
                                               timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port,
                                          timeout=self.timeout)

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "tafa", **self.headers}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _keep_rate(self) -> None:
        if self.rate is not None:
            delay = self._last_request + 1.0 / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._last_request = time.monotonic()


class _NoAnswer(Exception):
    """A request that got no HTTP answer (refused, reset, timed out); internal to retries."""

    def __init__(self, problem: str, sent: bool) -> None:
        super().__init__(problem)
        self.problem = problem
        self.sent = sent


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))  # type: ignore[arg-type]


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (ConnectionResetError, http.client.RemoteDisconnected)):
        return "connection closed without an answer"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return _printable(text)


def _error_text(payload: bytes) -> str:
    """What an error answer says, from its ``error`` field or its first characters."""
    try:
        answer = json.loads(payload)
    except (ValueError, RecursionError):
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        return _printable(str(answer["error"]))
    return _printable(payload[:200]) or "(empty answer)"


def _printable(text: str | bytes, limit: int = 200) -> str:
    """Text from a stranger, safe to print on one terminal line (no control characters)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
