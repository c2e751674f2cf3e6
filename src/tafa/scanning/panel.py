"""The fingerprints one scan checks every suspect against, and one suspect checked against
all of them with one batch of queries.

A :class:`Panel` holds the registered fingerprints of a scan. For a suspect it keeps those
whose input and output shapes fit, builds (once per set of fitting fingerprints) a
:class:`QueryPlan` -- the union of every fitting fingerprint's first-stage query inputs,
identical inputs sent once -- queries the suspect with it in one batched call, and hands each
fingerprint its own answers back through its signature's ``assemble``. The suspect is opened
once and its first stages queried once, however many fingerprints there are.

How each fingerprint's later stages are measured (the boundary geometry and the extraction or
outputs stage, :meth:`~tafa.fingerprint.Fingerprint.later_stages`; their queries are chosen from
the suspect's answers, so they are asked per fingerprint) is the panel's ``mode``
(:data:`MODES`). A scan deciding over a null panel measures every one of them on every suspect
and panel model, whatever the first stage scored (``columns``: each stage a column of the max-T
or FDR table, :mod:`.control`), so that which stages a suspect has never depends on its scores.
A scan deciding with the stored rules runs the stages each rule calibrated as ``tafa verify``
does (``rule``). A suspect whose first-stage answers lie on a grid, are clipped or keep little
more than labels gets no later stage (the first stage's finding says why it decides nothing
below its threshold), and neither does a panel model answering that way.

>>> from tafa.bench.architectures import build
>>> from tafa import Fingerprint, TorchModel
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> fp = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=4, directions=2)
>>> panel = Panel.from_fingerprints({"a": fp, "b": fp})
>>> plan = panel.plan(panel.entries)
>>> len(plan.inputs), fp.step_queries()  # the first stage's inputs, the same twice sent once
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..decide.rule import Rule
from ..decide.similarity import Similarity
from ..decide.verdict import Verdict
from ..errors import InvalidParameter, TafaError, check_param, one_line
from ..fingerprint import WEIGHT_STAGE, Fingerprint, joint_rule, run_later_stages, weight_score
from ..models.base import Model, file_hash
from ..models.options import OpenOptions
from ..registry import Finding, RegisteredFingerprint, Registry, SuspectOutcome, load_registered
from ..signature.base import Measurement
from ..label_stage import keeps_labels_only
from ..signature.interface import assemble_suspect
from .control import stage_column


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


#: How the note of a suspect that fits no fingerprint begins (checked, nothing to compare it with).
SKIPPED = "skipped"

#: How a panel measures each fingerprint's later stages: ``first``, not at all; ``columns``, every
#: one on every suspect (a scan over a null panel, each stage a column of its table); ``rule``, as
#: ``tafa verify`` runs the stages of the rule stored with the fingerprint (each only when the
#: earlier ones do not fire, stopped once out of reach; none beyond the stages it calibrated).
MODES = ("first", "columns", "rule")


@dataclass
class PanelEntry:
    """One fingerprint of the panel, with its stages built once."""

    registered: RegisteredFingerprint
    signature: Measurement
    similarity: Similarity
    inputs: np.ndarray
    #: How the later stages are measured (:data:`MODES`).
    mode: str = "first"
    #: The later stages measured on each suspect (empty: the first stage alone).
    later: list[Fingerprint] = field(default_factory=list)

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

    def judge(self, outputs: np.ndarray, model: Model | None = None) -> Finding:
        """The finding for a suspect whose answers to :attr:`inputs` are ``outputs``; with
        ``model`` (the suspect) its :attr:`later` stages measured on it too (see :data:`MODES`)."""
        started = time.perf_counter()
        fp = self.fingerprint
        rule = self.registered.calibration
        threshold = None if rule is None else rule.threshold
        first = rule if rule is None or len(rule.stages) == 1 else \
            Rule(rule.stages[:1], rule.names[:1], rule.alpha_requested, list(rule.notes))  # its share of alpha
        try:
            signature, recognised = assemble_suspect(self.signature, fp.probes, outputs, fp.owner_signature)
            score = self.similarity.compare(fp.relative(fp.owner_signature), fp.relative(signature))
            unresolved = recognised.note if recognised.quantised is not None else None
            plain = model is not None and unresolved is None and not recognised.clipped and \
                not keeps_labels_only(model, recognised)
            if recognised.clipped:  # thresholds made on every probe
                unresolved = (f"{recognised.note}: a scan compares at every probe; tafa verify with the references "
                              "compares a clipped suspect where it answers inside the clip")
            stages: list[dict[str, Any]] = []
            weight_p = self.weight_p(model) if self.mode in ("rule", "columns") and plain else None
            if self.mode == "rule" and rule is not None and (len(rule.stages) > 1 or rule.decides_jointly()
                                                             or weight_p is not None):
                decided = first if rule.decides_jointly() else rule
                if plain:
                    assert model is not None
                    stages, decided = self.measure_by_rule(model, rule, score.value, weight_p)
                    threshold = decided.threshold
                verdict = Verdict.decide(score, decided, queries=len(self.inputs), seconds=0.0, suspect={},
                                         scheme=fp.scheme.name, fingerprint_sha256=self.registered.sha256,
                                         unresolved=unresolved, stages=[{"score": score.value}, *stages])
            else:
                if self.mode == "columns" and plain:
                    assert model is not None
                    stages = self.measure_later(model)
                    if weight_p is not None:  # decided beside the panel's table (ErrorControl.weighed)
                        stages.append({"name": WEIGHT_STAGE, "score": weight_score(weight_p),
                                       "queries": 0, "threshold": None})
                verdict = Verdict.decide(score, first, queries=len(self.inputs), seconds=0.0, suspect={},
                                         scheme=fp.scheme.name, fingerprint_sha256=self.registered.sha256,
                                         unresolved=unresolved)
        except Exception as error:  # noqa: BLE001 - one fingerprint failing must not sink the others
            return Finding(self.name, self.registered.sha256, None, "error", threshold, len(self.inputs),
                           time.perf_counter() - started, _describe(error))
        return Finding(self.name, self.registered.sha256, float(verdict.score), verdict.decision.value, threshold,
                       len(self.inputs) + sum(stage["queries"] for stage in stages), time.perf_counter() - started,
                       stages=stages)

    def measure_later(self, model: Model) -> list[dict[str, Any]]:
        """Each later stage's score on ``model`` (``None``, with no queries counted against the
        rest, where measuring it failed: a stage failing leaves the others standing)."""
        stages = []
        for stage in self.later:
            before = model.queries
            stages.append({"name": stage.scheme.name, "score": _measured(stage, model),
                           "queries": int(model.queries - before), "threshold": None})
        return stages

    def weight_p(self, model: Model | None) -> float | None:
        """The weight test's exact p-value for a suspect whose weights can be read (a file), by a
        fingerprint that keeps the owner's layers (``--white-box keep``); ``None`` otherwise, or
        where reading them failed (the finding stands on the other stages)."""
        if model is None or not self.fingerprint.owner_layers:
            return None
        try:
            evidence = self.fingerprint.weight_evidence(model)
        except Exception:  # noqa: BLE001 - weights unreadable: no weight stage, as for a service
            return None
        return evidence.p_value if evidence.applicable else None

    def measure_by_rule(self, model: Model, rule: Rule, first: float,
                        weight_p: float | None = None) -> tuple[list[dict[str, Any]], Rule]:
        """The later stages of the stored ``rule``, as ``tafa verify`` runs them
        (:func:`~tafa.fingerprint.run_later_stages`: each only when the earlier ones do not already
        fire, stopped once its threshold is out of reach), and the rule that decides: ``rule``, or
        where its stages decide together (:meth:`Rule.decides_jointly
        <tafa.decide.rule.Rule.decides_jointly>`, from its table, as ``tafa verify --references``)
        the rule made for this suspect (:func:`~tafa.fingerprint.joint_rule`: a stopped stage
        unknown). With ``weight_p`` (:meth:`weight_p`) the weight test is a stage of it, at the
        part of alpha the others leave, as in ``tafa verify``
        (:meth:`~tafa.decide.rule.Rule.with_exact`)."""
        together = rule.decides_jointly()
        exact = WEIGHT_STAGE if weight_p is not None else None
        if exact is not None and not together:
            rule = rule.with_exact(exact)
        records, needed = run_later_stages(model, self.later, {"name": self.fingerprint.scheme.name, "score": first},
                                           None if together else rule, table=rule.table if together else None,
                                           alpha=rule.alpha_requested, exact=exact, measure=_measured_until)
        if together:
            assert rule.table is not None and rule.table_names is not None
            rule = joint_rule(records, rule.table, rule.table_names, rule.alpha_requested, needed, exact=exact)
        if weight_p is not None and WEIGHT_STAGE in rule.names:
            records.append({"name": WEIGHT_STAGE, "score": weight_score(weight_p), "queries": 0})
        return [{"name": record["name"], "score": record["score"], "queries": int(record["queries"]),
                 "threshold": rule.stages[index].threshold}
                for index, record in enumerate(records[1:], start=1)], rule


def _measured_until(stage: Fingerprint, model: Model, threshold: float | None,
                    ) -> tuple[float | None, dict[str, Any] | None]:
    """``stage``'s score on ``model`` stopped once ``threshold`` is out of reach, and how far it
    went (:meth:`Fingerprint.score_until`); ``(None, None)`` where measuring it failed or gave no
    finite number."""
    try:
        score, stopped = stage.score_until(model, threshold)
    except Exception:  # noqa: BLE001 - the stage is unmeasured; the finding stands on the others
        return None, None
    value = float(score.value)
    return (value, stopped) if np.isfinite(value) else (None, None)


def _measured(stage: Fingerprint, model: Model) -> float | None:
    """``stage``'s whole score on ``model``, ``None`` where measuring it failed or gave no finite
    number."""
    return _measured_until(stage, model, None)[0]


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


#: What a scan ships to its workers: how the later stages are measured (:data:`MODES`), then
#: (name, file bytes, content SHA-256, calibration dict) per fingerprint.
PanelPayload = tuple[str, tuple[tuple[str, bytes, str, "dict[str, Any] | None"], ...]]


def payload_key(payload: PanelPayload) -> str:
    """A short digest naming a payload (workers cache the panel they built under it)."""
    digest = hashlib.sha256()
    mode, entries = payload
    digest.update(mode.encode())
    for name, _, sha256, calibration in entries:
        digest.update(json.dumps([name, sha256, calibration], sort_keys=True).encode())
    return digest.hexdigest()[:16]


class Panel:
    """The fingerprints of one scan (see module doc); ``mode``: how their later stages are
    measured (:data:`MODES`)."""

    def __init__(self, registered: Sequence[RegisteredFingerprint], *, mode: str = "first") -> None:
        check_param("mode", mode, f"one of {', '.join(MODES)}", mode in MODES, caller="Panel")
        names = [item.name for item in registered]
        check_param("registered", names, "fingerprints with distinct names", len(set(names)) == len(names),
                    caller="Panel")
        self.entries: list[PanelEntry] = []
        for item in registered:
            signature, similarity = item.fingerprint.scheme.make_signature(), item.fingerprint.similarity()
            if signature.adaptive:
                raise InvalidParameter(f"Fingerprint {item.name!r} (scheme {item.fingerprint.scheme.name!r}) chooses "
                                       "its queries from each suspect's answers, so it cannot share a scan's "
                                       "batched queries: verify suspects against it with tafa verify.")
            inputs = np.ascontiguousarray(signature.inputs(item.fingerprint.probes), dtype=np.float32)
            later = item.fingerprint.later_stages()
            if mode == "rule":  # the stages its stored rule calibrated (every one, when they decide together)
                rule = item.calibration
                later = later if rule is not None and rule.decides_jointly() else \
                    later[:0 if rule is None else len(rule.stages) - 1]
            self.entries.append(PanelEntry(item, signature, similarity, inputs, mode, later if mode != "first" else []))
        self.mode = mode
        self._plans: dict[tuple[str, ...], QueryPlan] = {}

    @classmethod
    def from_registry(cls, registry: Registry, names: Sequence[str] | None = None, *, mode: str = "first") -> "Panel":
        return cls(registry.fingerprints(names), mode=mode)

    @classmethod
    def from_fingerprints(cls, fingerprints: Mapping[str, Fingerprint], calibrations: Mapping[str, Any] | None = None,
                          *, mode: str = "first") -> "Panel":
        """A panel of in-memory fingerprints (for the library and tests; nothing registered);
        ``calibrations``: a :class:`~tafa.decide.Rule` or a first stage's calibration by name."""
        items = [RegisteredFingerprint(name, fingerprint, fingerprint.to_bytes(), fingerprint.sha256,
                                       _as_rule((calibrations or {}).get(name), fingerprint))
                 for name, fingerprint in fingerprints.items()]
        return cls(items, mode=mode)

    @classmethod
    def from_payload(cls, payload: PanelPayload) -> "Panel":
        """Rebuild a panel in a worker; every fingerprint is checked against its hash again."""
        mode, entries = payload
        return cls([load_registered(name, data, sha256, calibration) for name, data, sha256, calibration in entries],
                   mode=mode)

    def payload(self) -> PanelPayload:
        return self.mode, tuple((e.name, e.registered.file, e.registered.sha256,
                                  None if e.registered.calibration is None else e.registered.calibration.to_dict())
                                 for e in self.entries)

    def columns(self) -> list[str]:
        """The columns of a panel-based control's table: each fingerprint's first stage, then
        its later stages (:func:`~tafa.scanning.control.stage_column`)."""
        return [column for entry in self.entries
                for column in [entry.name, *(stage_column(entry.name, stage.scheme.name) for stage in entry.later
                                             if entry.mode == "columns")]]

    def input_shapes(self) -> list[tuple[int, ...]]:
        """The distinct input shapes of the panel's fingerprints, in order of first appearance."""
        return list(dict.fromkeys(e.fingerprint.input_shape for e in self.entries))

    def fitting(self, model: Model) -> list[PanelEntry]:
        return [entry for entry in self.entries if entry.fits(model)]

    def unfit_reason(self, model: Model) -> str:
        """Why ``model`` fits none of the panel's fingerprints (a skipped suspect's note)."""
        shapes = sorted({(e.fingerprint.input_shape, tuple(e.fingerprint.output_shape)) for e in self.entries})
        registered = "; ".join(f"{list(i)} -> {list(o)}" for i, o in shapes)
        return (f"{SKIPPED}: it takes {list(model.input_shape)} -> {list(model.output_shape)}, no registered "
                f"fingerprint does ({registered})")

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
        if not entries:
            return SuspectOutcome(suspect.source, model.content_hash() or suspect.source, suspect.kind, "done",
                                  self.unfit_reason(model), 0, time.perf_counter() - started, [])
        plan = self.plan(entries)
        if len(plan):
            model.check_budget(len(plan))
        before = model.queries
        answers = model(plan.inputs) if len(plan) else None
        findings = [entry.judge(answers[plan.index[entry.name]], model) for entry in entries]  # type: ignore[index]
        queries = model.queries - before  # the shared first-stage batch and every later stage
        identity = suspect.source if suspect.kind == "endpoint" else (model.content_hash() or suspect.source)
        return SuspectOutcome(suspect.source, identity, suspect.kind, "done", None, queries,
                              time.perf_counter() - started, findings)

    def check(self, suspect: Suspect, options: OpenOptions) -> SuspectOutcome:
        """Open ``suspect`` and check it; a suspect that fails to open or answer comes back as a
        ``failed`` outcome carrying the error, never as an exception."""
        started = time.perf_counter()
        try:
            model = options.open(suspect.source, input_shapes=self.input_shapes())
            return self.check_model(model, suspect, started)
        except Exception as error:  # noqa: BLE001 - any failure of one suspect is recorded, the scan goes on
            return failed_outcome(suspect, _describe(error), time.perf_counter() - started)


def _as_rule(calibration: Any, fingerprint: Fingerprint) -> Rule | None:
    if calibration is None or isinstance(calibration, Rule):
        return calibration
    return Rule.single(calibration, fingerprint.scheme.name)


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
    return f"{type(error).__name__}: {one_line(error)}"


__all__ = ["OpenOptions", "Panel", "SKIPPED", "PanelEntry", "PanelPayload", "QueryPlan", "Suspect",
           "failed_outcome", "payload_key"]
