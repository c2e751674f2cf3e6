"""The fingerprints one scan checks every suspect against, and one suspect checked against
all of them with one batch of queries.

A :class:`Panel` holds the registered fingerprints of a scan. For a suspect it keeps those
whose input and output shapes fit, builds (once per set of fitting fingerprints) a
:class:`QueryPlan` -- the union of every fitting fingerprint's query inputs, identical inputs
sent once -- queries the suspect with it in one batched call, and hands each fingerprint its
own answers back through its signature's ``assemble``. The suspect is opened once and
queried once, however many fingerprints there are.

>>> from tafa.bench.architectures import build
>>> from tafa import Fingerprint, TorchModel
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> fp = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=4, directions=2)
>>> panel = Panel.from_fingerprints({"a": fp, "b": fp})
>>> plan = panel.plan(panel.entries)
>>> len(plan.inputs), fp.queries()        # the same inputs twice are sent once
(20, 20)
>>> outcome = panel.check_model(TorchModel(owner, (1, 8, 8)), Suspect("owner.onnx"))
>>> [(f.fingerprint, round(f.score, 6), f.decision) for f in outcome.findings], outcome.queries
([('a', 1.0, 'undecided'), ('b', 1.0, 'undecided')], 20)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..decide.similarity import Similarity
from ..decide.verdict import Verdict
from ..errors import TafaError, check_param, one_line
from ..fingerprint import Fingerprint
from ..models.base import Model, file_hash
from ..registry import Finding, RegisteredFingerprint, Registry, SuspectOutcome, load_registered
from ..signature.base import Measurement


@dataclass(frozen=True)
class Suspect:
    """A model to scan: a file path or a KServe v2 endpoint URL (see :mod:`tafa.models.http`)."""

    source: str

    @property
    def kind(self) -> str:
        return "endpoint" if self.source.startswith(("http://", "https://")) else "file"

    @classmethod
    def parse(cls, text: str | os.PathLike[str]) -> "Suspect":
        """A suspect from the command line: URLs kept as given, paths made absolute."""
        spec = str(text).strip()
        check_param("suspect", text, "a model file path or an http(s) endpoint URL", bool(spec), caller="Suspect")
        if spec.startswith(("http://", "https://")):
            return cls(spec)
        return cls(str(Path(spec).expanduser().absolute()))


@dataclass(frozen=True)
class OpenOptions:
    """How a scan opens its suspects (the same for every suspect; stored with the scan).

    ``input_shape`` is needed only by files that do not declare theirs (TorchScript,
    safetensors); when it is ``None`` such a file is tried with each input shape the
    registered fingerprints take. Endpoints get ``timeout``, ``retries`` (with ``backoff``),
    ``rate`` and ``max_queries`` (see :class:`~tafa.models.http.HttpModel`); files larger than
    ``max_bytes`` are refused unread (default: :func:`~tafa.models.open_model`'s limit).
    """

    factory: str | None = None
    input_shape: tuple[int, ...] | None = None
    allow_torchscript: bool = True
    batch_size: int = 256
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.5
    rate: float | None = None
    max_queries: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        caller = "OpenOptions"
        check_param("batch_size", self.batch_size, "an integer >= 1",
                    isinstance(self.batch_size, int) and self.batch_size >= 1, caller=caller)
        check_param("retries", self.retries, "an integer >= 0",
                    isinstance(self.retries, int) and self.retries >= 0, caller=caller)
        check_param("timeout", self.timeout, "a number of seconds > 0",
                    isinstance(self.timeout, (int, float)) and self.timeout > 0, caller=caller)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = None if self.input_shape is None else list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OpenOptions":
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        if known.get("input_shape") is not None:
            known["input_shape"] = tuple(known["input_shape"])
        return cls(**known)

    def file_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~tafa.models.open_model` for a file (no input shape)."""
        options: dict[str, Any] = {"factory": self.factory, "allow_torchscript": self.allow_torchscript,
                                   "batch_size": self.batch_size, "input_shape": self.input_shape}
        if self.max_bytes is not None:
            options["max_bytes"] = self.max_bytes
        return options

    def open(self, suspect: Suspect, candidate_shapes: Sequence[tuple[int, ...]] = ()) -> Model:
        """Open ``suspect``; a file that does not declare its input shape is tried with each of
        ``candidate_shapes`` when :attr:`input_shape` is not set."""
        from ..errors import ShapeMismatch
        from ..models import open_model

        if suspect.kind == "endpoint":
            return open_model(suspect.source, batch_size=self.batch_size, timeout=self.timeout,
                              retries=self.retries, backoff=self.backoff, max_wait=max(self.backoff, 5.0),
                              rate=self.rate, max_queries=self.max_queries, progress=False)
        options = self.file_options()
        if self.input_shape is not None or not candidate_shapes:
            return open_model(suspect.source, **options)
        options.pop("input_shape")
        try:
            return open_model(suspect.source, input_shape=None, **options)
        except ShapeMismatch as first:
            if "--input-shape" not in str(first):
                raise
            for shape in candidate_shapes:
                try:
                    return open_model(suspect.source, input_shape=shape, **options)
                except Exception:  # noqa: BLE001 - a wrong shape fails in many ways; try the next
                    continue
            raise ShapeMismatch(f"{suspect.source!r} does not declare its input shape and runs on none of the "
                                f"registered fingerprints' input shapes {sorted(set(candidate_shapes))}.") from None


@dataclass
class PanelEntry:
    """One fingerprint of the panel, with its stages built once."""

    registered: RegisteredFingerprint
    signature: Measurement
    similarity: Similarity
    inputs: np.ndarray

    @property
    def name(self) -> str:
        return self.registered.name

    @property
    def fingerprint(self) -> Fingerprint:
        return self.registered.fingerprint

    def fits(self, model: Model) -> bool:
        """Whether ``model`` takes and returns what this fingerprint's owner did."""
        fp = self.fingerprint
        return model.input_shape == fp.input_shape and \
            int(np.prod(model.output_shape)) == int(np.prod(fp.output_shape))

    def judge(self, outputs: np.ndarray) -> Finding:
        """The finding for a suspect whose answers to :attr:`inputs` are ``outputs``."""
        started = time.perf_counter()
        fp = self.fingerprint
        calibration = self.registered.calibration
        threshold = None if calibration is None else calibration.threshold
        try:
            signature = self.signature.assemble(fp.probes, outputs)
            score = self.similarity.compare(fp.owner_signature, signature)
            verdict = Verdict.decide(score, calibration, queries=len(self.inputs), seconds=0.0, suspect={},
                                     scheme=fp.scheme.name, fingerprint_sha256=self.registered.sha256)
        except Exception as error:  # noqa: BLE001 - one fingerprint failing must not sink the others
            return Finding(self.name, self.registered.sha256, None, "error", threshold, len(self.inputs),
                           time.perf_counter() - started, _describe(error))
        return Finding(self.name, self.registered.sha256, float(verdict.score), verdict.decision, threshold,
                       len(self.inputs), time.perf_counter() - started)


@dataclass
class QueryPlan:
    """The inputs sent to a suspect for a set of fingerprints, and where each one's are."""

    inputs: np.ndarray
    index: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Sequence[PanelEntry]) -> "QueryPlan":
        """Union of the entries' inputs (as the float32 a model receives), each distinct input once."""
        if not entries:
            return cls(np.zeros((0,)), {})
        shape = entries[0].fingerprint.input_shape
        check_param("entries", [e.name for e in entries], "fingerprints of one input shape",
                    all(e.fingerprint.input_shape == shape for e in entries), caller="QueryPlan.build")
        seen: dict[bytes, int] = {}
        rows: list[np.ndarray] = []
        index: dict[str, np.ndarray] = {}
        for entry in entries:
            positions = np.empty(len(entry.inputs), dtype=np.int64)
            for i, row in enumerate(entry.inputs):
                key = row.tobytes()
                position = seen.get(key)
                if position is None:
                    position = seen[key] = len(rows)
                    rows.append(row)
                positions[i] = position
            index[entry.name] = positions
        return cls(np.stack(rows) if rows else np.zeros((0, *shape), dtype=np.float32), index)

    def __len__(self) -> int:
        return len(self.inputs)


#: What a scan ships to its workers: (name, file bytes, content SHA-256, calibration dict) each.
PanelPayload = tuple[tuple[str, bytes, str, "dict[str, Any] | None"], ...]


def payload_key(payload: PanelPayload) -> str:
    """A short digest naming a payload (workers cache the panel they built under it)."""
    digest = hashlib.sha256()
    for name, _, sha256, calibration in payload:
        digest.update(json.dumps([name, sha256, calibration], sort_keys=True).encode())
    return digest.hexdigest()[:16]


class Panel:
    """The fingerprints of one scan (see module doc)."""

    def __init__(self, registered: Sequence[RegisteredFingerprint]) -> None:
        names = [item.name for item in registered]
        check_param("registered", names, "fingerprints with distinct names", len(set(names)) == len(names),
                    caller="Panel")
        self.entries: list[PanelEntry] = []
        for item in registered:
            signature, similarity = item.fingerprint.scheme.make_signature(), item.fingerprint.similarity()
            inputs = np.ascontiguousarray(signature.inputs(item.fingerprint.probes), dtype=np.float32)
            self.entries.append(PanelEntry(item, signature, similarity, inputs))
        self._plans: dict[tuple[str, ...], QueryPlan] = {}

    @classmethod
    def from_registry(cls, registry: Registry, names: Sequence[str] | None = None) -> "Panel":
        return cls(registry.fingerprints(names))

    @classmethod
    def from_fingerprints(cls, fingerprints: Mapping[str, Fingerprint], calibrations: Mapping[str, Any] | None = None,
                          ) -> "Panel":
        """A panel of in-memory fingerprints (for the library and tests; nothing registered)."""
        import tempfile

        items = []
        for name, fingerprint in fingerprints.items():
            with tempfile.TemporaryDirectory() as folder:
                data = fingerprint.save(Path(folder) / "fp.tafa").read_bytes()
            items.append(RegisteredFingerprint(name, fingerprint, data, fingerprint.sha256,
                                               (calibrations or {}).get(name)))
        return cls(items)

    @classmethod
    def from_payload(cls, payload: PanelPayload) -> "Panel":
        """Rebuild a panel in a worker; every fingerprint is checked against its hash again."""
        return cls([load_registered(name, data, sha256, calibration) for name, data, sha256, calibration in payload])

    def payload(self) -> PanelPayload:
        return tuple((e.name, e.registered.file, e.registered.sha256,
                      None if e.registered.calibration is None else e.registered.calibration.to_dict())
                     for e in self.entries)

    def input_shapes(self) -> list[tuple[int, ...]]:
        """The distinct input shapes of the panel's fingerprints, in order of first appearance."""
        return list(dict.fromkeys(e.fingerprint.input_shape for e in self.entries))

    def fitting(self, model: Model) -> list[PanelEntry]:
        return [entry for entry in self.entries if entry.fits(model)]

    def plan(self, entries: Sequence[PanelEntry]) -> QueryPlan:
        """The (cached) query plan of ``entries``."""
        key = tuple(entry.name for entry in entries)
        if key not in self._plans:
            self._plans[key] = QueryPlan.build(entries)
        return self._plans[key]

    def check_model(self, model: Model, suspect: Suspect, started: float | None = None) -> SuspectOutcome:
        """Score an opened ``model`` against every fitting fingerprint with one batched query."""
        started = time.perf_counter() if started is None else started
        entries = self.fitting(model)
        plan = self.plan(entries)
        budget = getattr(model, "check_budget", None)
        if budget is not None and len(plan):
            budget(len(plan))
        before = model.queries
        answers = model(plan.inputs) if len(plan) else None
        queries = model.queries - before
        findings = [entry.judge(answers[plan.index[entry.name]]) for entry in entries]  # type: ignore[index]
        identity = suspect.source if suspect.kind == "endpoint" else (model.content_hash() or suspect.source)
        return SuspectOutcome(suspect.source, identity, suspect.kind, "done", None, queries,
                              time.perf_counter() - started, findings)

    def check(self, suspect: Suspect, options: OpenOptions) -> SuspectOutcome:
        """Open ``suspect`` and check it; a suspect that fails to open or answer comes back as a
        ``failed`` outcome carrying the error, never as an exception."""
        started = time.perf_counter()
        try:
            model = options.open(suspect, self.input_shapes())
            return self.check_model(model, suspect, started)
        except Exception as error:  # noqa: BLE001 - any failure of one suspect is recorded, the scan goes on
            return failed_outcome(suspect, _describe(error), time.perf_counter() - started)


def failed_outcome(suspect: Suspect, error: str, seconds: float = 0.0) -> SuspectOutcome:
    """The outcome of a suspect that could not be checked (identity: its file's hash if readable)."""
    identity = suspect.source
    if suspect.kind == "file":
        try:
            identity = file_hash(suspect.source)
        except (OSError, TafaError):  # unreadable, or not a regular file (never hashed past its size)
            pass
    return SuspectOutcome(suspect.source, identity, suspect.kind, "failed", error, 0, seconds, [])


def _describe(error: BaseException) -> str:
    if isinstance(error, TafaError):
        return one_line(error)
    return f"{type(error).__name__}: {one_line(error)}"[:500]


__all__ = ["OpenOptions", "Panel", "PanelEntry", "PanelPayload", "QueryPlan", "Suspect",
           "failed_outcome", "payload_key"]
