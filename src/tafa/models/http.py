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
import socket
import ssl
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from tqdm.auto import tqdm

from ..errors import (InvalidParameter, ModelLoadError, NonFiniteOutput, QueryBudgetExceeded,
                      ShapeMismatch, TafaError, check_param, is_finite_number, is_integer)
from ..storage import write_atomically
from .base import Consistency, Model  # noqa: F401 - Consistency: importers find it here too

#: Input datatypes tafa can send (as JSON numbers) and the numpy type each is cast to.
FLOAT_TYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
#: Output datatypes read as class labels when the output has one value per input.
INTEGER_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
#: HTTP statuses that mean "not now": retried with backoff, never counted as queries.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
#: The largest inference answer ever read; the limit of one answer is usually far lower: see
#: :meth:`HttpModel.answer_limit`. Parsing JSON costs up to ~10x its size in memory.
MAX_ANSWER_BYTES = 32 << 20
#: JSON bytes allowed per output value expected (a float64 needs at most 26 with its
#: separator; pretty-printing adds a few more), and for everything around the values.
ANSWER_BYTES_PER_VALUE = 64
ANSWER_OVERHEAD_BYTES = 1 << 20
#: The largest metadata answer read, and how much of an error answer is read (to quote it).
MAX_METADATA_BYTES = 1 << 20
MAX_ERROR_BYTES = 64 << 10
#: Bounds on what metadata may declare, checked before anything is sized from it: tensors
#: listed, characters of a name, axes of a shape (batch axis included), size of one axis and
#: values of one sample.
MAX_TENSORS = 64
MAX_NAME_CHARS = 256
MAX_RANK = 8
MAX_AXIS = 1 << 24
MAX_SAMPLE_VALUES = 1 << 24
#: Bytes read from the socket at a time.
READ_PIECE_BYTES = 1 << 16

#: The fewest inputs of a call asked again for the consistency check (see ``recheck``).
RECHECK_MIN = 4

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


def relative_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per input (axis 0), the largest absolute difference of two answers over the largest
    magnitude either has (0 where both are all zeros).

    >>> relative_difference(np.array([[1.0, -4.0], [0.0, 0.0], [2.0, 3.0]]),
    ...                     np.array([[1.0, -4.0], [0.0, 0.0], [3.0, 2.0]])).tolist()
    [0.0, 0.0, 0.3333333333333333]
    """
    count = len(first)
    first, second = first.reshape(count, -1), second.reshape(count, -1)
    scale = np.maximum(np.abs(first), np.abs(second)).max(axis=1)
    gap = np.abs(first - second).max(axis=1)
    return np.divide(gap, scale, out=np.zeros_like(gap), where=scale > 0)


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
        timeout: seconds one try of a request may take in all: connecting, sending, and
            reading the whole answer, however slowly its bytes arrive. A try that runs out of
            time ends the request (a service that hangs or drips would only do it again).
        retries: how many times a request is tried again after a 429/502/503/504 answer or a
            connection failure, before the call fails (at most ``retries + 1`` tries).
        backoff: the first retry waits this many seconds, each further one twice as long,
            unless the service sends ``Retry-After``.
        max_wait: the most seconds all the waits before retries of one request add up to,
            ``Retry-After`` included; a service asking for a longer wait than is left fails
            the request at once. One request thus takes at most
            ``(retries + 1) * timeout + max_wait`` seconds (plus the wait ``rate`` asks), and a
            service that never answers holds it for one ``timeout``.
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
        recheck: the fraction of the inputs of each call asked a second time, in other
            batches, to check that the service answers the same input the same way (at least
            :data:`RECHECK_MIN`; within ``max_queries``; ``0``: no check). See
            :attr:`consistency`.
        recheck_tolerance: the largest :func:`relative_difference` between two answers to
            one input still counted as the same answer.

    Attributes:
        queries: inputs answered, from the network or the cache.
        network_queries: inputs sent in requests the service may have answered (answered,
            or timed out after sending); this is what ``max_queries`` bounds.
        cached_queries: inputs answered from the cache.
        requests, retried, seconds: HTTP requests made (metadata and retries included),
            retries among them, and seconds spent in requests and waits.
        metadata: what the service reported about itself: its name, versions and platform
            (as printable text of bounded length) and its checked inputs and outputs.
        consistency: a :class:`Consistency`: inputs re-asked, how many were answered
            otherwise, the largest relative difference. Re-asks count in
            ``network_queries``, not in ``queries``.
        labels_only: ``True`` when the service returns only a class label per input (an
            integer output of shape ``[-1]`` or ``[-1, 1]``); its answers are then that label
            as a float, of shape ``(1,)``.
    """

    #: How answers to re-asked inputs compared with the first answers (set in ``__init__``).
    consistency: Consistency

    def __init__(self, url: str, *, batch_size: int = 64, max_queries: int | None = None,
                 rate: float | None = None, timeout: float = 20.0, retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 20.0,
                 cache_dir: str | os.PathLike[str] | None = None, progress: bool = True,
                 output: str | None = None, input_shape: tuple[int, ...] | None = None,
                 output_shape: tuple[int, ...] | None = None, name: str | None = None,
                 headers: dict[str, str] | None = None, recheck: float = 0.05,
                 recheck_tolerance: float = 1e-3) -> None:
        caller = "HttpModel"
        self.endpoint = parse_endpoint(url)
        check_param("batch_size", batch_size, "an integer >= 1",
                    is_integer(batch_size) and batch_size >= 1, caller=caller)
        check_param("max_queries", max_queries, "None or an integer >= 0",
                    max_queries is None or (is_integer(max_queries) and max_queries >= 0), caller=caller)
        check_param("rate", rate, "None or a number of requests per second > 0",
                    rate is None or (is_finite_number(rate) and rate > 0), caller=caller)
        check_param("timeout", timeout, "a number of seconds > 0",
                    is_finite_number(timeout) and timeout > 0, caller=caller)
        check_param("retries", retries, "an integer >= 0", is_integer(retries) and retries >= 0,
                    caller=caller)
        check_param("backoff", backoff, "a number of seconds >= 0",
                    is_finite_number(backoff) and backoff >= 0, caller=caller)
        check_param("max_wait", max_wait, "a number of seconds >= 0",
                    is_finite_number(max_wait) and max_wait >= 0, caller=caller)
        check_param("recheck", recheck, "a fraction from 0 to 1", is_finite_number(recheck)
                    and 0 <= recheck <= 1, caller=caller)
        check_param("recheck_tolerance", recheck_tolerance, "a number >= 0",
                    is_finite_number(recheck_tolerance) and recheck_tolerance >= 0, caller=caller)
        self.recheck = float(recheck)
        self.recheck_tolerance = float(recheck_tolerance)
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
        #: How answers to re-asked inputs compared with the first answers (see ``recheck``).
        self.consistency = Consistency(0, 0, 0, 0.0, self.recheck_tolerance)

        received = self._fetch_metadata()
        sample_in, sample_out, fixed_batch = self._read_metadata(received, output,
                                                                 input_shape, output_shape)
        self.metadata = _metadata_summary(received)
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
                answers = super().__call__(x)
            finally:
                self._bar = None
        self._recheck(np.asarray(x, dtype=np.float32), answers)
        return answers

    def _recheck(self, x: np.ndarray, answers: np.ndarray) -> None:
        """Ask a random few of ``x`` again, in a random order (so in other batches), and fold
        how the new answers compare with ``answers`` into :attr:`consistency`.

        ``recheck`` of the inputs are re-asked, at least :data:`RECHECK_MIN` (all of them if
        fewer), within what ``max_queries`` leaves. The choice is drawn from fresh entropy on
        every call: the service cannot know which inputs will come back. A deterministic
        service answers them as before up to float rounding (batched otherwise, float32
        sums differ in their last bits); a noisy one, or one that answers a repeated input
        otherwise than a new one, does not."""
        if self.recheck == 0 or len(x) == 0:
            return
        planned = min(len(x), max(RECHECK_MIN, math.ceil(self.recheck * len(x))))
        room = planned if self.max_queries is None \
            else max(0, min(planned, self.max_queries - self.network_queries))
        chosen = np.random.default_rng().permutation(len(x))[:room]
        worst, differing = 0.0, 0
        for start in range(0, room, self.batch_size):
            index = chosen[start:start + self.batch_size]
            again = self._ask(np.ascontiguousarray(x[index], dtype=FLOAT_TYPES[self.input_datatype]))
            difference = relative_difference(answers[index], again)
            worst = max(worst, float(difference.max()))
            differing += int((difference > self.recheck_tolerance).sum())
        seen = self.consistency
        self.consistency = Consistency(
            planned=seen.planned + planned, rechecked=seen.rechecked + room,
            differing=seen.differing + differing,
            max_relative_difference=max(seen.max_relative_difference, worst),
            tolerance=self.recheck_tolerance)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        wire = np.ascontiguousarray(x, dtype=FLOAT_TYPES[self.input_datatype])
        count = len(wire)
        key = self._cache_key(wire)
        out = self._cache_read(key, count)
        if out is not None:
            self.cached_queries += count
        else:
            out = self._ask(wire)
            self._cache_write(key, out)
        if self._bar is not None:
            self._bar.set_postfix(sent=self.network_queries, cached=self.cached_queries,
                                  refresh=False)
            self._bar.update(count)
        return out

    def _ask(self, wire: np.ndarray) -> np.ndarray:
        """The service's answers to one batch (sent as it is, never from the cache), checked."""
        count = len(wire)
        request: dict[str, Any] = {"inputs": [{
            "name": self.input_name, "shape": list(wire.shape),
            "datatype": self.input_datatype, "data": wire.ravel().tolist()}]}
        if self._several_outputs:
            request["outputs"] = [{"name": self.output_name}]  # only the one read, please
        answer = self._exchange("POST", self.endpoint.infer_path, json.dumps(request).encode(),
                                queries=count, what=f"an inference request of {count} inputs",
                                limit=self.answer_limit(count))
        return self._read_answer(answer, count)

    def answer_limit(self, count: int) -> int:
        """The most bytes read of an answer to ``count`` inputs: what ``count`` answers of the
        output read take as JSON (other outputs the metadata declares count for nothing), with
        slack (:data:`ANSWER_BYTES_PER_VALUE` per value, :data:`ANSWER_OVERHEAD_BYTES` more), never more than
        :data:`MAX_ANSWER_BYTES`. Anything longer is refused before it is parsed."""
        return min(MAX_ANSWER_BYTES,
                   ANSWER_OVERHEAD_BYTES + ANSWER_BYTES_PER_VALUE * count * self._answer_values)

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
            "seconds": round(self.seconds, 3),
            "consistency": {**asdict(self.consistency), "consistent": self.consistency.consistent}})
        return info

    def check_budget(self, queries: int | np.ndarray) -> int:
        """Refuse, before anything is sent, a run that would pass ``max_queries``.

        ``queries`` is the number of inputs the run will send, or the inputs themselves:
        then those whose answers are already cached (batched as a call would batch them) are
        not counted. Returns the number of queries the run would send.
        """
        if is_integer(queries):
            check_param("queries", queries, "an integer >= 0 or an array of inputs",
                        int(queries) >= 0, caller="HttpModel.check_budget")
            needed = int(queries)
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
                             what="the metadata request", limit=MAX_METADATA_BYTES)
        metadata = self._parse_json(raw, "metadata")
        if not isinstance(metadata, dict):
            raise self._malformed("metadata", "not a JSON object")
        return metadata

    def _read_metadata(self, metadata: dict[str, Any], output: str | None,
                       input_shape: tuple[int, ...] | None,
                       output_shape: tuple[int, ...] | None,
                       ) -> tuple[tuple[int, ...], tuple[int, ...], int | None]:
        """Set names, datatypes and ``labels_only``; return the per-sample input and output
        shapes and the fixed batch size the service accepts (``None``: any). Every field is
        checked against the bounds above before anything is sized from it."""
        inputs = self._tensors(metadata, "inputs")
        outputs = self._tensors(metadata, "outputs")
        url = self.endpoint.url
        if len(inputs) != 1:
            raise ModelLoadError(f"{url} takes {len(inputs)} input tensors "
                                 f"({_printable(', '.join(t['name'] for t in inputs))}); tafa "
                                 f"queries models with one.")
        tensor_in = inputs[0]
        if tensor_in["datatype"] not in FLOAT_TYPES:
            raise ModelLoadError(f"{url} takes {_printable(tensor_in['datatype'])} inputs; tafa "
                                 f"sends {', '.join(FLOAT_TYPES)}.")
        names = [t["name"] for t in outputs]
        if output is None:
            tensor_out = outputs[0]
        elif output in names:
            tensor_out = outputs[names.index(output)]
        else:
            raise InvalidParameter(f"The 'output' parameter of HttpModel must be one of "
                                   f"{_printable(repr(names))} (the outputs {url} reports). "
                                   f"Got {_printable(repr(output))} instead.")
        datatype = tensor_out["datatype"]
        if datatype not in FLOAT_TYPES and datatype not in INTEGER_TYPES:
            raise ModelLoadError(f"{url} answers {_printable(datatype)} outputs; tafa reads "
                                 f"numeric tensors.")
        self.input_name: str = tensor_in["name"]
        self.input_datatype: str = tensor_in["datatype"]
        self.output_name: str = tensor_out["name"]
        self.output_datatype: str = datatype
        self._several_outputs = len(outputs) > 1
        sample_in, fixed_in = self._sample_shape(tensor_in, input_shape, "input_shape")
        sample_out, fixed_out = self._sample_shape(tensor_out, output_shape, "output_shape")
        if sample_out in ((), (1,)):
            sample_out = (1,)  # one value per input: a score, a probability or a label
        #: True when the service returns only a class label per input.
        self.labels_only: bool = datatype in INTEGER_TYPES and sample_out == (1,)
        # Values per input of the one output read: requests name it alone, so outputs the
        # service declares but tafa does not read size neither batches nor answers, and an
        # answer that carries them anyway is refused by its length before it is parsed.
        self._answer_values = math.prod(sample_out)
        per_request = (MAX_ANSWER_BYTES - ANSWER_OVERHEAD_BYTES) // (ANSWER_BYTES_PER_VALUE
                                                                     * self._answer_values)
        if per_request < 1:
            raise ModelLoadError(f"{url} reports output {_printable(repr(self.output_name))} of "
                                 f"{self._answer_values} values per input; tafa reads answers of at "
                                 f"most {MAX_ANSWER_BYTES} bytes.")
        fixed = [size for size in (fixed_in, fixed_out, per_request) if size is not None]
        return sample_in, sample_out, min(fixed)

    def _tensors(self, metadata: dict[str, Any], key: str) -> list[dict[str, Any]]:
        tensors = metadata.get(key)
        if not isinstance(tensors, list) or not tensors:
            raise self._malformed("metadata", f"no {key!r} list")
        if len(tensors) > MAX_TENSORS:
            raise self._malformed("metadata", f"{len(tensors)} {key} (at most {MAX_TENSORS} "
                                  f"are read)")
        for tensor in tensors:
            if not (isinstance(tensor, dict) and _is_name(tensor.get("name"))
                    and _is_name(tensor.get("datatype"))
                    and _is_shape(tensor.get("shape"), dynamic=True) and tensor["shape"]):
                raise self._malformed(
                    "metadata", f"an {key} entry without a name, a datatype and a shape (a list "
                    f"of 1 to {MAX_RANK} integers from -1 to {MAX_AXIS}): "
                    f"{_printable(json.dumps(tensor))}")
        return tensors

    def _sample_shape(self, tensor: dict[str, Any], given: tuple[int, ...] | None,
                      param: str) -> tuple[tuple[int, ...], int | None]:
        """Per-sample shape (metadata, completed by ``given``) and a fixed batch size or None."""
        batch, *sample = (int(size) for size in tensor["shape"])
        fixed_batch = batch if batch > 0 else None
        name = _printable(repr(tensor["name"]))
        if batch == 0:
            raise self._malformed("metadata", f"a batch axis of size 0 for {name}")
        if given is not None:
            check_param(param, given, f"a tuple of at most {MAX_RANK - 1} integers from 1 to "
                        f"{MAX_AXIS}", isinstance(given, (tuple, list)) and len(given) < MAX_RANK
                        and all(is_integer(size) and 1 <= size <= MAX_AXIS for size in given),
                        caller="HttpModel")
            given = tuple(int(size) for size in given)
            compatible = len(given) == len(sample) and all(
                size == -1 or size == wanted for size, wanted in zip(sample, given))
            if not compatible:
                raise ShapeMismatch(f"{self.endpoint.url} reports {name} of shape "
                                    f"{tensor['shape']} (batch axis first); the {param} given "
                                    f"is {given}.")
            sample = list(given)
        elif any(size < 0 for size in sample):
            raise ModelLoadError(f"{self.endpoint.url} reports {name} of shape "
                                 f"{tensor['shape']} with a dynamic axis besides the batch axis; "
                                 f"give {param}=... to fix it.")
        if math.prod(sample) > MAX_SAMPLE_VALUES:
            raise ModelLoadError(f"{self.endpoint.url} reports {name} of shape {tensor['shape']}: "
                                 f"{math.prod(sample)} values per input, more than the "
                                 f"{MAX_SAMPLE_VALUES} tafa accepts.")
        return tuple(sample), fixed_batch

    # -- answers ----------------------------------------------------------------------------

    def _read_answer(self, raw: bytes, count: int) -> np.ndarray:
        """The chosen output of an inference answer, checked, as ``(count, *output_shape)``.

        The declared shape must be the one expected before the data is read, and the data
        must be that many JSON numbers (``null`` reads as NaN): nothing is sized from what
        the service declares."""
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
        if not _is_shape(shape, dynamic=False):
            raise self._malformed("inference answer", f"an output without a valid 'shape' (a "
                                  f"list of at most {MAX_RANK} integers from 0 to {MAX_AXIS})")
        expected = [count, *self.output_shape]
        if shape != expected and not (self.output_shape == (1,) and shape == [count]):
            raise ShapeMismatch(f"{self.endpoint.url} answered shape {shape} for {count} inputs; "
                                f"its metadata promised {expected}.")
        if tensor.get("datatype") == "BYTES" or not isinstance(data, list):
            raise self._malformed("inference answer", "an output without numeric 'data'")
        values = _numbers(data, math.prod(expected))
        if values is None:
            raise self._malformed("inference answer", f"an output whose 'data' is not "
                                  f"{math.prod(expected)} numbers for shape {shape}")
        out = values.reshape(expected)
        if not np.all(np.isfinite(out)):
            bad = int((~np.isfinite(out)).reshape(count, -1).any(axis=1).sum())
            raise NonFiniteOutput(f"{self.endpoint.url} answered NaN or inf (or a number beyond "
                                  f"float64) for {bad} of {count} inputs.")
        return out

    def _parse_json(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw, parse_int=_json_int)
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
                  what: str, limit: int) -> bytes:
        """The body of a 200 answer to one request, after rate limiting and retries.

        Each try has ``timeout`` seconds for all of it (connect, send, read the whole
        answer); the waits between tries add up to at most ``max_wait`` seconds, and there
        are at most ``retries + 1`` tries. An answer longer than ``limit`` bytes is refused.
        """
        url = self.endpoint.url
        started = time.monotonic()
        waited = 0.0
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
                    status, headers, payload = self._send(method, path, body, what, limit)
                except _NoAnswer as failure:
                    if failure.sent:
                        self.network_queries += queries  # the service may have answered it
                    if failure.refusal is not None:
                        raise failure.refusal from None
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
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                if attempt == self.retries:
                    raise ModelLoadError(f"{url} did not answer {what} after {tries} "
                                         f"(last: {problem}; retries={self.retries}).")
                left = max(0.0, self.max_wait - waited)
                if retry_after is not None and retry_after > left:
                    raise ModelLoadError(
                        f"{url} did not answer {what} after {tries} (last: {problem}) and asks "
                        f"to retry after {retry_after:.3g} s, more than the {left:.3g} s left of "
                        f"max_wait={self.max_wait:g} s; gave up without waiting.")
                wait = min(self.backoff * 2 ** attempt if retry_after is None else retry_after, left)
                time.sleep(wait)
                waited += wait
                attempt += 1
                self.retried += 1
        finally:
            self.seconds += time.monotonic() - started

    def _send(self, method: str, path: str, body: bytes | None, what: str,
              limit: int) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Status, headers and body of one HTTP exchange on a fresh connection, all of it
        within ``timeout`` seconds.

        A watchdog shuts the socket down when the deadline passes, whatever the exchange is
        doing (connecting, sending, reading headers or a body dripped a byte at a time): the
        per-operation socket timeout alone never fires while bytes keep trickling in.
        Raises :class:`_NoAnswer` (saying whether the request went out, and carrying a
        refusal that is not to be retried: an answer longer than ``limit``, an untrusted TLS
        certificate).
        """
        url = self.endpoint.url
        sent = False
        connection = self._connect()
        watchdog = _Watchdog(connection, self.timeout)
        try:
            try:
                connection.connect()
                # The connection lets go of its socket once an answer that ends with the
                # connection (HTTP/1.0, no Content-Length) begins: the watchdog keeps it.
                watchdog.hold(connection.sock)
                connection.request(method, path, body=body, headers=self._headers(body))
                sent = True
                response = connection.getresponse()
                if response.status != 200:
                    limit = min(limit, MAX_ERROR_BYTES)  # only its first words are shown
                length = (response.getheader("Content-Length") or "").strip()
                if response.status == 200 and length.isascii() and length.isdigit() \
                        and (len(length) > 18 or int(length) > limit):
                    raise _NoAnswer("too long", sent, ModelLoadError(
                        f"{url} announced an answer to {what} of {_printable(length, 40)} bytes; at most "
                        f"{limit} are expected, so it was refused unread."))
                payload = _read_at_most(response, limit + 1)
                # Stopped before the socket closes: a close-delimited body that the watchdog
                # cut short would otherwise read as whole.
                late = watchdog.expire()
            except ssl.SSLCertVerificationError as error:
                raise _NoAnswer("untrusted", sent, ModelLoadError(
                    f"{url}: TLS certificate not trusted "
                    f"({_printable(str(error.verify_message))}).")) from None
            except (OSError, http.client.HTTPException) as error:
                # the socket's own timeout is the whole try's too, and can fire a moment before the
                # watchdog's thread runs (a loaded machine): it is the same lateness, never retried
                if watchdog.expire() or isinstance(error, TimeoutError):
                    raise _NoAnswer(self._late(), sent, ModelLoadError(self._late_refusal(what))) from None
                raise _NoAnswer(_describe_failure(error), sent) from None
        finally:
            watchdog.expire()
            connection.close()
        if late:
            raise _NoAnswer(self._late(), sent, ModelLoadError(self._late_refusal(what)))
        if len(payload) > limit:
            if response.status != 200:
                payload = payload[:limit]
            else:
                raise _NoAnswer("too long", sent, ModelLoadError(
                    f"{url} answered {what} with more than {limit} bytes (at most that many are "
                    f"expected); refused after reading {limit + 1}."))
        return response.status, response.headers, payload

    def _late(self) -> str:
        return f"timed out: no whole answer within timeout={self.timeout:g} s"

    def _late_refusal(self, what: str) -> str:
        # Not retried: a service that hangs or drips its answer would only do it again, and
        # retrying it would multiply the time a hostile service can hold tafa by retries + 1.
        return (f"{self.endpoint.url} {self._late()} to {what}; a service this slow is not asked again "
                "(raise --timeout if it is only slow).")

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
    """A request that got no usable HTTP answer (refused, reset, timed out, refused by tafa);
    internal to retries. ``refusal``, when set, is raised at once instead of retrying."""

    def __init__(self, problem: str, sent: bool, refusal: TafaError | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.sent = sent
        self.refusal = refusal


class _Watchdog:
    """Shuts a connection's socket down ``seconds`` after it is made, unless stopped first.

    :meth:`expire` stops it and says whether it fired (under a lock: an exchange that ends
    just as the deadline passes is either whole or late, never both).
    """

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            sock = self._socket or self._connection.sock  # during connect: the connection's
        if sock is not None:  # the plain socket's shutdown (an SSL socket's would unwrap it mid-read)
            self._shut(sock)

    def hold(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down at the deadline, whoever holds it by then."""
        with self._lock:
            self._socket = sock
        if self.fired and sock is not None:  # fired while connecting, just before this
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def expire(self) -> bool:
        with self._lock:
            self._done = True
        self._timer.cancel()
        return self.fired


def _read_at_most(response: http.client.HTTPResponse, count: int) -> bytes:
    """Up to ``count`` bytes of a response body, read in small pieces (never one buffer of
    ``count`` bytes made up front)."""
    pieces: list[bytes] = []
    size = 0
    while size < count:
        piece = response.read(min(READ_PIECE_BYTES, count - size))
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def _metadata_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The parts of checked metadata kept for reports, each bounded and printable."""
    summary: dict[str, Any] = {}
    for key in ("name", "platform"):
        if isinstance(metadata.get(key), str):
            summary[key] = _printable(metadata[key], MAX_NAME_CHARS)
    versions = metadata.get("versions")
    if isinstance(versions, list):
        summary["versions"] = [_printable(str(v), MAX_NAME_CHARS) for v in versions[:MAX_TENSORS]
                               if isinstance(v, (str, int))]
    for key in ("inputs", "outputs"):  # checked by _tensors: short names, bounded shapes
        summary[key] = [{"name": _printable(t["name"], MAX_NAME_CHARS),
                         "datatype": _printable(t["datatype"], MAX_NAME_CHARS),
                         "shape": list(t["shape"])} for t in metadata[key]]
    return summary


def _is_name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


def _is_shape(value: object, *, dynamic: bool) -> bool:
    """A list of at most :data:`MAX_RANK` integers from 0 (-1 where ``dynamic``) to
    :data:`MAX_AXIS`."""
    low = -1 if dynamic else 0
    return isinstance(value, list) and len(value) <= MAX_RANK and all(
        type(size) is int and low <= size <= MAX_AXIS for size in value)


def _json_int(text: str) -> int | float:
    """A JSON integer: exact when it fits 64 bits, else a float (``inf`` past float64), so
    that 10^400 is neither a Python bignum nor a shape."""
    return int(text) if len(text) <= 18 else float(text)


def _numbers(data: list[Any], count: int) -> np.ndarray | None:
    """``data`` (a list, possibly nested row-major) as ``count`` float64 values, or ``None``
    when it holds anything but JSON numbers and ``null`` (read as NaN), is nested deeper
    than :data:`MAX_RANK`, or holds another number of values. Stops reading past ``count``."""
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                if len(stack) >= MAX_RANK:
                    return None
                stack.append(iter(item))
                break
            if not (type(item) is int or type(item) is float or item is None) \
                    or len(flat) == count:
                return None
            flat.append(item)
        else:
            stack.pop()
    if len(flat) != count:
        return None
    return np.array(flat, dtype=np.float64)


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
