"""Many fingerprints in SQLite, and the record of every scan against them.

A :class:`Registry` is one SQLite file (WAL mode, so readers never wait for the writer and
several scans can write it at once). It holds

- the registered fingerprints, each as the bytes of its ``.tafa`` file, with that file's
  SHA-256 and the fingerprint's content SHA-256, optionally its commitment (JSON) and its
  calibration (the reference scores and threshold that let a scan decide);
- every scan: its suspects (pending, done or failed, with the error) and one verdict row per
  suspect and fingerprint (score, decision, queries, time);
- the null panel of family-wise scans: model files known to be independent of every owner
  (by path and file SHA-256), scored against the scan's fingerprints when a scan starts.

A registered fingerprint is checked every time it is loaded: its file against both its
hashes, and its whole row (name, hashes, commitment, calibration) against the row's own
SHA-256 (``row_sha256``, :func:`row_hash`), so that a blob, a threshold or a commitment edited
in the database is refused as :class:`~tafa.errors.TamperedFingerprint`. A calibration is also
checked for sense (a threshold below every reference score would call everything derived). The
row hash is not a signature: whoever can write the file can recompute it; it stops edits made
without tafa, and a damaged or hand-edited registry gives one line, never a traceback.

The schema carries its version (``PRAGMA user_version``) and is migrated step by step
(:data:`MIGRATIONS`) when an older file is opened; a file written by a newer tafa is refused.
Schema 5 added the registry's settings: the error control and alpha its scans use unless told
otherwise (:meth:`Registry.defaults`, family-wise at 0.05 unless set). Schema 6 seals every
verdict row by its own SHA-256 (:func:`verdict_hash`), checked whenever verdicts are read back.
Schema 7 adds each verdict's later stages (:attr:`Finding.stages`: the boundary geometry and the
extraction stage a panel-based scan runs after the first), under the same seal.

A registry is opened only if its ``sqlite_master`` holds exactly what tafa's schema of its
version holds (:func:`check_schema`): a trigger, a view, an extra table or index, or a changed
table is refused before any statement of tafa's runs, and every statement is bounded in CPU
time (:data:`STATEMENT_SECONDS`).

>>> import tempfile, os
>>> with Registry(os.path.join(tempfile.mkdtemp(), "registry.sqlite")) as registry:
...     registry.schema_version, registry.journal_mode, registry.entries(), registry.defaults()
(7, 'wal', [], ('family', 0.05))
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import secrets
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np

from . import fingerprint_file
from .decide.rule import Rule
from .decide.threshold import Calibration
from .errors import (FingerprintError, InvalidParameter, TafaError, TamperedFingerprint, check_param, one_line,
                     printable)
from .fingerprint import Fingerprint

#: Environment variable naming the registry file used when no path is given.
REGISTRY_ENV = "TAFA_REGISTRY"


class RegistryError(TafaError):
    """The registry file cannot be used, or a name is missing or already taken."""


# ---------------------------------------------------------------------------------------- records

@dataclass
class RegistryEntry:
    """What ``tafa registry list`` shows of a registered fingerprint (nothing is parsed)."""

    name: str
    sha256: str
    scheme: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    queries: int
    calibrated: bool
    committed: bool
    added: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"], data["output_shape"] = list(self.input_shape), list(self.output_shape)
        return data


@dataclass
class RegisteredFingerprint:
    """A fingerprint loaded from the registry, checked against its hashes."""

    name: str
    fingerprint: Fingerprint
    file: bytes
    sha256: str
    #: The rule a scan decides with when it does not use a null panel: every stage the stored
    #: references calibrated (:meth:`~tafa.fingerprint.Fingerprint.calibrate`), or the first alone.
    calibration: Rule | None = None
    commitment: dict[str, Any] | None = None


@dataclass
class Finding:
    """The outcome of one suspect against one fingerprint: ``decision`` is the verdict's
    (``derived``, ``independent``, ``undecided``) or ``error`` when scoring failed (``error``
    then says why); ``queries`` is what this fingerprint alone would have sent (every stage).
    ``score`` and ``threshold`` are the first stage's; ``stages`` the later ones a scan ran
    (``{"name", "score", "queries", "threshold"}`` each; ``score`` ``None`` where the stage
    could not be measured, ``threshold`` what the suspect needed there, once decided)."""

    fingerprint: str
    fingerprint_sha256: str
    score: float | None
    decision: str
    threshold: float | None
    queries: int
    seconds: float
    error: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fired(self) -> tuple[str | None, float | None, float | None]:
        """The stage that judged the suspect derived, its score and threshold (``None`` for
        the first stage's name); the first stage's score and threshold when none did."""
        if self.decision == "derived" and not (self.score is not None and self.threshold is not None
                                               and self.score > self.threshold):
            for stage in self.stages:
                score, threshold = stage.get("score"), stage.get("threshold")
                if score is not None and threshold is not None and score > threshold:
                    return str(stage.get("name")), score, threshold
        return None, self.score, self.threshold


def stages_text(stages: Sequence[dict[str, Any]]) -> str | None:
    """A finding's later stages as stored (``None``: none; :func:`verdict_hash` seals it)."""
    if not stages:
        return None
    return json.dumps([{"name": str(stage["name"]), "score": _real(stage.get("score")),
                        "queries": int(stage.get("queries", 0)), "threshold": _real(stage.get("threshold"))}
                       for stage in stages], separators=(",", ":"))


def stages_from_text(text: Any) -> list[dict[str, Any]]:
    """The later stages :func:`stages_text` stored, checked for types (a sealed row can still be
    one a tafa never wrote: :class:`RegistryError`, never a traceback)."""
    if text is None:
        return []

    def number(value: Any) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

    try:
        stages = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        stages = None
    if not isinstance(stages, list) or not all(
            isinstance(stage, dict) and set(stage) == {"name", "score", "queries", "threshold"}
            and isinstance(stage["name"], str) and number(stage["score"]) and number(stage["threshold"])
            and isinstance(stage["queries"], int) and not isinstance(stage["queries"], bool) for stage in stages):
        raise RegistryError("A verdict's later stages are not what tafa writes: the registry was modified outside "
                            "tafa.")
    return stages


@dataclass
class SuspectOutcome:
    """The outcome of one suspect against every fingerprint that fits it.

    ``source`` is what the scan was given (an absolute file path or an endpoint URL);
    ``identity`` is the file's SHA-256 or the URL. ``queries`` counts the inputs the suspect
    answered (shared by all its findings); ``status`` is ``done`` or ``failed`` (then
    ``error`` says why and ``findings`` is empty).
    """

    source: str
    identity: str
    kind: str
    status: str
    error: str | None
    queries: int
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    recorded: str | None = None

    @property
    def skipped(self) -> bool:
        """Opened and checked but compared with nothing: it fits no fingerprint (``error`` says
        why). Stored as ``done``; every count and report lists it as ``skipped``, not ``done``."""
        return self.status == "done" and self.error is not None

    @property
    def state(self) -> str:
        """What reports call it: ``pending``, ``done``, ``skipped`` or ``failed``."""
        return "skipped" if self.skipped else self.status

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings"] = [finding.to_dict() for finding in self.findings]
        return data


@dataclass
class ScanRecord:
    """A scan as the registry holds it."""

    id: str
    started: str
    finished: str | None
    status: str
    engine: str
    seconds: float
    config: dict[str, Any]
    #: Suspects by :attr:`SuspectOutcome.state`: ``pending``, ``done``, ``skipped``, ``failed``
    #: (a skipped suspect is not counted ``done``: the same counts as the scan's report).
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------- schema

def _seal_rows(connection: sqlite3.Connection) -> None:
    """2 -> 3: every fingerprint row gets the SHA-256 of its content (see :func:`row_hash`)."""
    connection.execute("ALTER TABLE fingerprints ADD COLUMN row_sha256 TEXT")
    rows = connection.execute("SELECT name, sha256, file_sha256, commitment, calibration FROM fingerprints").fetchall()
    connection.executemany("UPDATE fingerprints SET row_sha256 = ? WHERE name = ?",
                           [(row_hash(*row), row[0]) for row in rows])


def _seal_verdicts(connection: sqlite3.Connection) -> None:
    """5 -> 6: every verdict row gets the SHA-256 of its content (see :func:`verdict_hash`)."""
    connection.execute("ALTER TABLE verdicts ADD COLUMN row_sha256 TEXT")
    rows = connection.execute(f"SELECT {_VERDICT_COLUMNS.removesuffix(', stages')} FROM verdicts").fetchall()
    connection.executemany("UPDATE verdicts SET row_sha256 = ? WHERE scan_id = ? AND source = ? AND fingerprint = ?",
                           [(verdict_hash(*row), row[0], row[1], row[2]) for row in rows])


#: The columns of a verdict row its seal covers, in :func:`verdict_hash`'s order.
_VERDICT_COLUMNS = ("scan_id, source, fingerprint, fingerprint_sha256, identity, score, decision, threshold, queries, "
                    "seconds, recorded, error, stages")


#: Step ``i`` migrates a registry from schema version ``i`` to ``i + 1`` (SQL, or a function
#: run inside the step's transaction).
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    # 0 -> 1: the fingerprints.
    """
    CREATE TABLE fingerprints (
        name          TEXT PRIMARY KEY,
        sha256        TEXT NOT NULL,
        file_sha256   TEXT NOT NULL,
        file          BLOB NOT NULL,
        scheme        TEXT NOT NULL,
        input_shape   TEXT NOT NULL,
        output_shape  TEXT NOT NULL,
        queries       INTEGER NOT NULL,
        commitment    TEXT,
        calibration   TEXT,
        added         TEXT NOT NULL
    );
    """,
    # 1 -> 2: scans, their suspects and verdicts.
    """
    CREATE TABLE scans (
        id        TEXT PRIMARY KEY,
        started   TEXT NOT NULL,
        finished  TEXT,
        status    TEXT NOT NULL,
        engine    TEXT NOT NULL,
        seconds   REAL NOT NULL DEFAULT 0,
        config    TEXT NOT NULL
    );
    CREATE TABLE suspects (
        scan_id   TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        position  INTEGER NOT NULL,
        source    TEXT NOT NULL,
        kind      TEXT NOT NULL,
        identity  TEXT,
        status    TEXT NOT NULL,
        error     TEXT,
        queries   INTEGER,
        seconds   REAL,
        recorded  TEXT,
        PRIMARY KEY (scan_id, source)
    );
    CREATE TABLE verdicts (
        scan_id            TEXT NOT NULL,
        source             TEXT NOT NULL,
        fingerprint        TEXT NOT NULL,
        fingerprint_sha256 TEXT NOT NULL,
        identity           TEXT NOT NULL,
        score              REAL,
        decision           TEXT NOT NULL,
        threshold          REAL,
        queries            INTEGER NOT NULL,
        seconds            REAL NOT NULL,
        recorded           TEXT NOT NULL,
        error              TEXT,
        PRIMARY KEY (scan_id, source, fingerprint),
        FOREIGN KEY (scan_id, source) REFERENCES suspects(scan_id, source) ON DELETE CASCADE
    );
    CREATE INDEX verdicts_by_identity ON verdicts(identity);
    CREATE INDEX verdicts_by_fingerprint ON verdicts(fingerprint, decision);
    """,
    # 2 -> 3: each fingerprint row sealed by its own hash.
    _seal_rows,
    # 3 -> 4: the null panel of family-wise scans (model files independent of every owner).
    """
    CREATE TABLE panel (
        sha256  TEXT PRIMARY KEY,
        source  TEXT NOT NULL,
        added   TEXT NOT NULL
    );
    """,
    # 4 -> 5: the registry's own settings: the error control and alpha its scans use unless
    # told otherwise (a registry from before keeps what scans defaulted to then).
    """
    CREATE TABLE settings (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    INSERT INTO settings (key, value) VALUES ('control', '"family"'), ('alpha', '0.05');
    """,
    # 5 -> 6: each verdict row sealed by its own hash.
    _seal_verdicts,
    # 6 -> 7: each verdict's later stages (JSON; NULL: none, and the seal of a row without them
    # is what it was).
    "ALTER TABLE verdicts ADD COLUMN stages TEXT;",
)

#: What a scan's suspects can be, as its counts and reports name them (:attr:`SuspectOutcome.state`).
SUSPECT_STATES = ("pending", "done", "skipped", "failed")

#: The error controls a scan can decide under (see :mod:`tafa.scanning.control`).
SCAN_CONTROLS = ("family", "fdr", "per-fingerprint", "bonferroni")

#: The control and alpha a new registry's scans use unless told otherwise.
DEFAULT_CONTROL, DEFAULT_ALPHA = "family", 0.05


def check_scan_defaults(control: Any, alpha: Any, *, caller: str = "scan") -> None:
    """``control`` must be one of :data:`SCAN_CONTROLS` and ``alpha`` a number in (0, 1)
    (``None`` only with ``per-fingerprint``: each stored calibration as it is)."""
    check_param("control", control, f"one of {', '.join(SCAN_CONTROLS)}", control in SCAN_CONTROLS, caller=caller)
    if control != "per-fingerprint" or alpha is not None:
        check_param("alpha", alpha, "a number in (0, 1)",
                    isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < alpha < 1, caller=caller)

#: The schema version this tafa writes.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring ``connection``'s database to schema version ``target``, one step per transaction.

    Safe when several processes open a new registry at once: each step runs under the write
    lock and re-reads the version first. Returns the version reached.
    """
    check_param("target", target, f"an integer in [0, {SCHEMA_VERSION}]",
                isinstance(target, int) and 0 <= target <= SCHEMA_VERSION, caller="migrate")
    while True:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RegistryError(f"The registry has schema version {version}; this tafa reads versions up to "
                                f"{SCHEMA_VERSION}. Upgrade tafa to use it.")
        if version >= target:
            return version
        with _write(connection):
            current = connection.execute("PRAGMA user_version").fetchone()[0]
            if current == version:
                step = MIGRATIONS[version]
                if callable(step):
                    step(connection)
                else:
                    for statement in _statements(step):
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version + 1}")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (none of ours holds a ';' inside a literal)."""
    return [part.strip() for part in script.split(";") if part.strip()]


#: The most CPU seconds one SQL statement may run (fetching its rows included) before it is
#: interrupted: a registry whose queries never end (a hostile schema, a damaged file) gives
#: one :class:`RegistryError` line instead of a hang. Waiting for another writer's lock is
#: not counted (``timeout`` bounds that).
STATEMENT_SECONDS = 5.0


class _Connection(sqlite3.Connection):
    """A connection whose every statement is bounded by :data:`STATEMENT_SECONDS` of CPU time
    (SQLite's progress handler, every few thousand virtual-machine steps)."""

    statement_seconds = STATEMENT_SECONDS
    overran = False

    def start_clock(self) -> None:
        self._started = time.thread_time()
        self.set_progress_handler(self._overrun, 10_000)

    def _overrun(self) -> int:
        if time.thread_time() - self._started > self.statement_seconds:
            self.overran = True
            return 1
        return 0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self._started, self.overran = time.thread_time(), False
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        self._started, self.overran = time.thread_time(), False
        return super().executemany(sql, parameters)


@functools.lru_cache(maxsize=None)
def expected_schema(version: int) -> frozenset[tuple[str, str, str, str | None]]:
    """What ``sqlite_master`` of a registry of schema ``version`` holds when tafa made it:
    ``(type, name, table, SQL with whitespace folded)`` of every table and index (no
    triggers or views: tafa creates none)."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(memory, target=version)
        return frozenset(_schema_of(memory))
    finally:
        memory.close()


def _schema_of(connection: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return [(str(kind), str(name), str(table), None if sql is None else " ".join(str(sql).split()))
            for kind, name, table, sql in rows]


def check_schema(connection: sqlite3.Connection, path: str) -> None:
    """Refuse a database holding anything tafa's schema of its version does not: a trigger
    (which could rewrite every verdict as it is written), a view, an extra table or index, or
    a table whose definition was changed. Read in one transaction, before anything runs."""
    connection.execute("BEGIN")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        found = _schema_of(connection)
    finally:
        connection.execute("COMMIT")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        return  # a newer registry: migrate() refuses it in its own words
    if not isinstance(version, int) or version < 0:
        raise RegistryError(f"The registry {printable(path)!r} has schema version {version!r}, which no tafa writes; "
                            "refused.")
    expected = expected_schema(version)
    foreign = [row for row in found if row not in expected]
    missing = {(kind, name) for kind, name, _, _ in expected} - {(kind, name) for kind, name, _, _ in found}
    if foreign or missing:
        what = (f"{foreign[0][0]} {printable(foreign[0][1])[:80]!r} that tafa did not create" if foreign
                else f"no {sorted(missing)[0][0]} {sorted(missing)[0][1]!r}, which tafa's schema {version} has")
        raise RegistryError(f"The registry {printable(path)!r} holds {what} ({len(foreign)} foreign, {len(missing)} "
                            "missing objects): refused, a registry must hold only tafa's own tables and indexes. "
                            "Restore it from a copy or start a new one.")


class _write:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one write transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        _retry_locked(lambda: self.connection.execute("BEGIN IMMEDIATE"))
        return self.connection

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            _retry_locked(lambda: self.connection.execute("COMMIT"))
        else:
            self.connection.execute("ROLLBACK")


def _retry_locked(action: Any, attempts: int = 20) -> Any:
    """Run ``action``; retry while SQLite reports the database locked beyond its busy timeout."""
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(min(0.05 * 2 ** attempt, 2.0))
    return None  # unreachable


def default_registry_path() -> Path:
    """``$TAFA_REGISTRY`` if set, else ``registry.sqlite`` in tafa's folder of the user's data
    directory: ``$XDG_DATA_HOME/tafa`` (default ``~/.local/share/tafa``) on Linux,
    ``~/Library/Application Support/tafa`` on macOS, ``%LOCALAPPDATA%\\tafa`` on Windows."""
    explicit = os.environ.get(REGISTRY_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "tafa" / "registry.sqlite"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_hash(name: str, sha256: str, file_sha256: str, commitment: str | None, calibration: str | None) -> str:
    """SHA-256 sealing a fingerprint's registry row: its name, the fingerprint's content and
    file hashes, and the stored commitment and calibration exactly as stored (JSON text)."""
    row = {"name": name, "sha256": sha256, "file_sha256": file_sha256, "commitment": commitment,
           "calibration": calibration}
    return _sha256(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())


def _real(value: Any) -> float | None:
    """A REAL column's value as SQLite stores it (NaN is stored as NULL)."""
    return None if value is None or value != value else float(value)


def verdict_hash(scan_id: str, source: str, fingerprint: str, fingerprint_sha256: str, identity: str,
                 score: float | None, decision: str, threshold: float | None, queries: int, seconds: float,
                 recorded: str, error: str | None, stages: str | None = None) -> str:
    """SHA-256 sealing a verdict row: every one of its columns, exactly as stored (``stages``
    only when there are some: a row of schema 6 keeps its seal)."""
    row = [scan_id, source, fingerprint, fingerprint_sha256, identity, score, decision, threshold, queries, seconds,
           recorded, error] + ([] if stages is None else [stages])
    return _sha256(json.dumps(row, separators=(",", ":")).encode())


def _check_verdict(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A verdict row (its sealed columns, then ``row_sha256``) whose content matches its seal;
    else :class:`RegistryError` (a decision, score or threshold edited outside tafa)."""
    *columns, seal = row
    try:
        sound = isinstance(seal, str) and seal == verdict_hash(*columns)
    except (TypeError, ValueError):
        sound = False
    if not sound:
        raise RegistryError(f"The verdict of scan {printable(str(columns[0]))[:40]!r} on "
                            f"{printable(str(columns[1]))[-80:]!r} by fingerprint {printable(str(columns[2]))[:80]!r} "
                            "does not match its SHA-256: the registry's verdicts were modified outside tafa.")
    return tuple(columns)


def _stored_json(text: Any, *, what: str, name: str) -> Any:
    """A JSON column of fingerprint ``name``'s row, parsed strictly (one-line error otherwise)."""
    try:
        if not isinstance(text, str):
            raise ValueError(f"a {type(text).__name__}, not JSON text")
        return fingerprint_file.strict_json(text, what=what)
    except (ValueError, RecursionError) as error:
        raise RegistryError(f"The {what} stored for {name!r} is malformed ({one_line(error)[:200]}).") from None


def calibration_from_stored(data: Any, *, name: str) -> Calibration:
    """The calibration stored for fingerprint ``name`` (a dict), checked for types and sense:
    finite numbers, ``alpha`` in (0, 1), as many reference scores as it counts, and a threshold
    no lower than every reference score (which would call every independent model derived)."""
    from dataclasses import fields

    def refuse(why: str) -> TamperedFingerprint:
        return TamperedFingerprint(f"The calibration stored for {name!r} cannot be right: {why}. The registry was "
                                   "modified; calibrate it again (tafa registry add --replace ... --references DIR).")

    if not isinstance(data, dict):
        raise refuse("it is not an object")
    known = {f.name for f in fields(Calibration)} | {"alpha"}  # "alpha": rows stored before alpha_requested
    try:
        calibration = Calibration.from_dict({key: value for key, value in data.items() if key in known})
    except (TypeError, ValueError) as error:
        raise refuse(one_line(error)) from None
    numbers = (calibration.threshold, calibration.alpha_requested, calibration.bound, calibration.rank_threshold)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in numbers):
        raise refuse("its threshold, alpha and bound must be finite numbers")
    scores = calibration.reference_scores
    if not (isinstance(scores, list) and scores and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and np.isfinite(v) for v in scores)):
        raise refuse("its reference scores must be a non-empty list of finite numbers")
    if calibration.n_references != len(scores):
        raise refuse(f"it counts {calibration.n_references} references but holds {len(scores)} scores")
    if not 0 < calibration.alpha_requested < 1 or not 0 < calibration.bound <= 1:
        raise refuse(f"alpha {calibration.alpha_requested} and bound {calibration.bound} must lie in (0, 1)")
    if calibration.threshold < min(scores):
        raise refuse(f"its threshold {calibration.threshold} is below every one of its {len(scores)} reference "
                     f"scores (lowest {min(scores)})")
    return calibration


#: The most stages a stored rule's table may name (a fingerprint has three, four with the weights).
MAX_TABLE_STAGES = 8


def rule_from_stored(data: Any, *, name: str, stage: str) -> Rule:
    """The rule stored for fingerprint ``name``: its stages' calibrations (:meth:`Rule.to_dict`),
    each checked as :func:`calibration_from_stored` checks one, named, with an ``alpha`` their
    levels do not exceed; or, as registries stored it before they kept every stage, the first
    stage's calibration alone (``stage``: that stage's name)."""
    if not (isinstance(data, dict) and "stages" in data):
        return Rule.single(calibration_from_stored(data, name=name), stage)

    def refuse(why: str) -> TamperedFingerprint:
        return TamperedFingerprint(f"The calibration stored for {name!r} cannot be right: {why}. The registry was "
                                   "modified; calibrate it again (tafa registry add --replace ... --references DIR).")

    stages, names, alpha = data.get("stages"), data.get("names"), data.get("alpha_requested")
    notes, shares = data.get("notes", []), data.get("shares")
    if not (isinstance(stages, list) and stages and isinstance(names, list) and len(names) == len(stages)
            and all(isinstance(n, str) for n in names) and isinstance(notes, list)
            and all(isinstance(n, str) for n in notes)):
        raise refuse("its stages must be a non-empty list, one name (text) each, with notes as texts")
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < alpha < 1):
        raise refuse("its alpha must be a number in (0, 1)")
    calibrations = [calibration_from_stored(stage, name=name) for stage in stages]
    if sum(c.alpha_requested for c in calibrations) > alpha * (1 + 1e-9):
        raise refuse(f"its stages' levels add up to more than its alpha {alpha}")
    if shares is not None and not (isinstance(shares, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in shares)):
        raise refuse("its shares must be numbers")
    try:
        rule = Rule(calibrations, list(names), float(alpha), list(notes), shares)
    except InvalidParameter as error:
        raise refuse(one_line(error)) from None
    if "table" in data:
        table, table_names = _stored_table(data["table"], rule, refuse)
        rule.with_table(table, table_names)
    return rule


def _stored_table(data: Any, rule: Rule, refuse: Callable[[str], TamperedFingerprint],
                  ) -> tuple[np.ndarray, list[str]]:
    """A stored rule's table of every stage (:attr:`Rule.table <tafa.decide.rule.Rule.table>`),
    checked against the rule: the stages named as the rule's first, one row per reference it
    counts, finite scores, and its first column the first stage's reference scores."""
    names, scores = (data.get("names"), data.get("scores")) if isinstance(data, dict) else (None, None)
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) >= len(rule.names)
            and names[:len(rule.names)] == rule.names and len(names) <= MAX_TABLE_STAGES):
        raise refuse("its table's stages must be named, the rule's own first")
    if not (isinstance(scores, list) and len(scores) == rule.stages[0].n_references
            and all(isinstance(row, list) and len(row) == len(names) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row) for row in scores)):
        raise refuse(f"its table must hold {rule.stages[0].n_references} rows of {len(names)} numbers")
    table = np.array(scores, dtype=np.float64).reshape(len(scores), len(names))
    if not np.all(np.isfinite(table)) or sorted(table[:, 0].tolist()) != sorted(rule.stages[0].reference_scores):
        raise refuse("its table's first stage must be the rule's reference scores")
    return table, list(names)


def _calibration_text(calibration: Calibration | Rule | None) -> str | None:
    """What the ``calibration`` column stores: a rule of every stage it calibrated, or (a
    calibration of the first stage) that calibration alone."""
    return None if calibration is None else json.dumps(calibration.to_dict())


def recorded_sha256(data: bytes, *, name: str) -> str:
    """The content SHA-256 the fingerprint file ``data`` records in its header (see
    :func:`tafa.fingerprint_file.recorded_sha256`)."""
    return fingerprint_file.recorded_sha256(data, source=f"registered fingerprint {name!r}")


def fingerprint_from_bytes(data: bytes, *, name: str) -> Fingerprint:
    """Parse the bytes of a ``.tafa`` file (checked against its own content hash)."""
    return Fingerprint.from_bytes(data, source=f"registered fingerprint {name!r}")


def _commitment(value: Any, fingerprint: Fingerprint, *, name: str) -> dict[str, Any]:
    """The commitment ``value`` (a :class:`~tafa.commitment.Commitment`, its file, or its dict as
    stored) checked against ``fingerprint``; returns it as a dict to store."""
    from dataclasses import fields

    from .commitment import Commitment

    if isinstance(value, Commitment):
        commitment = value
    elif isinstance(value, dict):
        try:
            commitment = Commitment(**{f.name: value[f.name] for f in fields(Commitment)})
            commitment._check_types()
        except (KeyError, TypeError, ValueError) as error:
            raise FingerprintError(f"The commitment stored for {name!r} is malformed ({one_line(error)}).") from None
    else:
        commitment = Commitment.load(value)
    try:
        commitment.check(fingerprint)
    except TamperedFingerprint as error:
        raise TamperedFingerprint(f"Fingerprint {name!r}: {error}") from None
    return commitment.to_dict()


# ---------------------------------------------------------------------------------------- registry

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _database_errors(method: _Method) -> _Method:
    """Report SQLite failing under ``method`` (a damaged page, a file that is not a database,
    a lock never released) as one :class:`RegistryError` naming the registry file."""
    import functools

    @functools.wraps(method)
    def guarded(self: "Registry", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise RegistryError(f"The registry {str(self.path)!r} cannot be read or written "
                                f"({_sqlite_error(self._db, error)}); restore it from a copy "
                                "or start a new one.") from None

    return guarded  # type: ignore[return-value]


def _sqlite_error(connection: sqlite3.Connection, error: sqlite3.Error) -> str:
    """``error`` in a few words; a statement stopped by :data:`STATEMENT_SECONDS` says so."""
    if getattr(connection, "overran", False):
        return (f"a statement ran over {STATEMENT_SECONDS:g} s of CPU and was interrupted; a registry's queries "
                "take milliseconds")
    return f"{type(error).__name__}: {one_line(error)[:200]}"


class Registry:
    """The fingerprint registry and scan record in one SQLite file (see module doc).

    ``path`` defaults to :func:`default_registry_path`. ``timeout`` is how long a writer
    waits for another writer's transaction before failing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_registry_path()
        check_param("timeout", timeout, "a number of seconds > 0",
                    isinstance(timeout, (int, float)) and timeout > 0, caller="Registry")
        if self.path.exists() and not self.path.is_file():
            raise RegistryError(f"Registry path {str(self.path)!r} is not a file.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                       check_same_thread=False, factory=_Connection)
        except (OSError, sqlite3.Error) as error:
            raise RegistryError(f"Cannot open the registry {str(self.path)!r} ({error}).") from None
        try:
            self._db.start_clock()
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA trusted_schema = OFF")
            check_schema(self._db, str(self.path))
            mode = _retry_locked(lambda: self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            self.journal_mode = str(mode).lower()
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self.schema_version = migrate(self._db)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise RegistryError(f"{str(self.path)!r} is not a usable tafa registry ({_sqlite_error(self._db, error)})."
                                ) from None
        except BaseException:
            self._db.close()
            raise

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    # -- fingerprints ------------------------------------------------------------------------
    @_database_errors
    def add(self, fingerprint: str | os.PathLike[str], name: str, *,
            commitment: Any = None,
            calibration: Calibration | Rule | None = None, replace: bool = False) -> RegistryEntry:
        """Register the fingerprint file ``fingerprint`` under ``name``.

        The file is read, checked (its own hash; the commitment, if given: a
        :class:`~tafa.commitment.Commitment` or its file) and stored as it is. ``replace``
        overwrites a fingerprint of the same name (and drops its calibration unless a new one
        is given).
        """
        check_param("name", name, "a non-empty name without control characters",
                    isinstance(name, str) and bool(name.strip()) and name.isprintable(), caller="Registry.add")
        data = fingerprint_file.read(fingerprint)
        loaded = Fingerprint.from_bytes(data, source=repr(str(fingerprint)))
        committed = None if commitment is None else _commitment(commitment, loaded, name=name)
        sha256, file_sha256 = recorded_sha256(data, name=name), _sha256(data)
        committed_text = None if committed is None else json.dumps(committed, sort_keys=True)
        calibration_text = _calibration_text(calibration)
        row = (name, sha256, file_sha256, data, loaded.scheme.name, json.dumps(list(loaded.input_shape)),
               json.dumps(list(loaded.output_shape)), loaded.queries(), committed_text, calibration_text, _now(),
               row_hash(name, sha256, file_sha256, committed_text, calibration_text))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with _write(self._db) as db:
                db.execute(f"{verb} INTO fingerprints (name, sha256, file_sha256, file, scheme, input_shape, "
                           "output_shape, queries, commitment, calibration, added, row_sha256) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
        except sqlite3.IntegrityError:
            raise RegistryError(f"A fingerprint named {name!r} is already registered; remove it first "
                                "or replace it.") from None
        return self.entry(name)

    @_database_errors
    def remove(self, name: str) -> None:
        """Unregister ``name`` (the verdicts of past scans that used it are kept)."""
        with _write(self._db) as db:
            gone = db.execute("DELETE FROM fingerprints WHERE name = ?", (name,)).rowcount
        if not gone:
            raise RegistryError(self._missing(name))

    @_database_errors
    def set_calibration(self, name: str, calibration: Calibration | Rule | None) -> None:
        """Store (or with ``None`` drop) the calibration scans decide ``name``'s verdicts with: a
        rule of its stages, or a calibration of its first stage alone."""
        text = _calibration_text(calibration)
        with _write(self._db) as db:
            row = db.execute("SELECT name, sha256, file_sha256, commitment, calibration, row_sha256 FROM fingerprints "
                             "WHERE name = ?", (name,)).fetchone()
            if row is not None:
                _check_seal(row)
                db.execute("UPDATE fingerprints SET calibration = ?, row_sha256 = ? WHERE name = ?",
                           (text, row_hash(name, row[1], row[2], row[3], text), name))
        if row is None:
            raise RegistryError(self._missing(name))

    @_database_errors
    def calibrate(self, name: str, references: Iterable[Any], alpha: float = 0.01,
                  progress: bool = False, parametric: bool = False) -> Rule:
        """Score ``references`` (independent models of the owner's task) with ``name`` and store
        the resulting :class:`~tafa.decide.Rule`: every stage they support, as ``tafa verify``
        calibrates it (:meth:`~tafa.fingerprint.Fingerprint.calibrate`)."""
        rule = self.get(name).fingerprint.calibrate(references, alpha=alpha, progress=progress, parametric=parametric,
                                                    keep_table=True)
        self.set_calibration(name, rule)
        return rule

    @_database_errors
    def entries(self) -> list[RegistryEntry]:
        """Every registered fingerprint, by name."""
        rows = self._db.execute("SELECT name, sha256, scheme, input_shape, output_shape, queries, "
                                "calibration IS NOT NULL, commitment IS NOT NULL, added FROM fingerprints "
                                "ORDER BY name").fetchall()
        return [_entry(row) for row in rows]

    @_database_errors
    def entry(self, name: str) -> RegistryEntry:
        row = self._db.execute("SELECT name, sha256, scheme, input_shape, output_shape, queries, "
                               "calibration IS NOT NULL, commitment IS NOT NULL, added FROM fingerprints "
                               "WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(self._missing(name))
        return _entry(row)

    @_database_errors
    def names(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT name FROM fingerprints ORDER BY name")]

    @_database_errors
    def get(self, name: str) -> RegisteredFingerprint:
        """The fingerprint ``name``, loaded and checked against both its hashes (and commitment)."""
        row = self._db.execute("SELECT name, sha256, file_sha256, file, commitment, calibration, row_sha256 "
                               "FROM fingerprints WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RegistryError(self._missing(name))
        name, sha256, file_sha256, data, commitment, calibration, seal = row
        _check_seal((name, sha256, file_sha256, commitment, calibration, seal))
        return _load_row(name, sha256, file_sha256, data, commitment, calibration)

    @_database_errors
    def fingerprints(self, names: Sequence[str] | None = None) -> list[RegisteredFingerprint]:
        """The registered fingerprints (all, or those ``names``), each checked as by :meth:`get`."""
        return [self.get(name) for name in (self.names() if names is None else names)]

    def _missing(self, name: str) -> str:
        known = self.names()
        return (f"No fingerprint named {name!r} in the registry {str(self.path)!r}"
                + (f"; registered: {', '.join(known)}." if known else " (it is empty)."))

    # -- settings ----------------------------------------------------------------------------
    @_database_errors
    def defaults(self) -> tuple[str, float | None]:
        """The error control and alpha this registry's scans use unless told otherwise
        (``family`` at 0.05 unless :meth:`set_defaults` changed them). A stored value that is not
        one a scan accepts (an edited database) is refused."""
        rows = dict(self._db.execute("SELECT key, value FROM settings WHERE key IN ('control', 'alpha')"))
        control = _stored_json(rows.get("control", '"family"'), what="default control", name="settings")
        alpha = _stored_json(rows.get("alpha", "null"), what="default alpha", name="settings")
        try:
            check_scan_defaults(control, alpha, caller="the registry's settings")
        except InvalidParameter as error:
            raise RegistryError(f"The registry {str(self.path)!r} holds a default scan setting no scan accepts "
                                f"({one_line(error)}); set it again with tafa registry defaults.") from None
        return str(control), None if alpha is None else float(alpha)

    @_database_errors
    def set_defaults(self, control: str, alpha: float | None) -> None:
        """Store the error control and alpha this registry's scans use unless told otherwise."""
        check_scan_defaults(control, alpha, caller="Registry.set_defaults")
        with _write(self._db) as db:
            db.executemany("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                           [("control", json.dumps(control)), ("alpha", json.dumps(alpha))])

    # -- the null panel ----------------------------------------------------------------------
    @_database_errors
    def add_panel(self, sources: Iterable[str | os.PathLike[str]]) -> int:
        """Record model files as members of the null panel (absolute path and file SHA-256; a
        file whose bytes are already there is kept once). Returns how many were new."""
        from .models.base import file_hash

        rows = []
        for source in sources:
            path = str(Path(source).expanduser().absolute())
            try:
                rows.append((file_hash(path), path, _now()))
            except OSError as error:
                raise RegistryError(f"The panel model {path!r} must be a readable file ({error}).") from None
        with _write(self._db) as db:
            before = db.execute("SELECT COUNT(*) FROM panel").fetchone()[0]
            db.executemany("INSERT OR IGNORE INTO panel (sha256, source, added) VALUES (?,?,?)", rows)
            return int(db.execute("SELECT COUNT(*) FROM panel").fetchone()[0] - before)

    @_database_errors
    def panel(self) -> list[tuple[str, str]]:
        """The null panel's ``(source, sha256)``, in the order they were added."""
        rows = self._db.execute("SELECT source, sha256 FROM panel ORDER BY added, source").fetchall()
        return [(source, sha256) for source, sha256 in rows]

    # -- scans -------------------------------------------------------------------------------
    @_database_errors
    def begin_scan(self, sources: Sequence[str], kinds: Sequence[str], *, engine: str,
                   config: dict[str, Any]) -> str:
        """Record a new scan of ``sources`` (all pending); returns its id."""
        scan_id = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        with _write(self._db) as db:
            db.execute("INSERT INTO scans (id, started, status, engine, config) VALUES (?,?,?,?,?)",
                       (scan_id, _now(), "running", engine, json.dumps(config, sort_keys=True)))
            db.executemany("INSERT INTO suspects (scan_id, position, source, kind, status) VALUES (?,?,?,?,?)",
                           [(scan_id, i, source, kind, "pending") for i, (source, kind) in
                            enumerate(zip(sources, kinds))])
        return scan_id

    @_database_errors
    def resume_scan(self, scan_id: str, *, engine: str) -> list[tuple[str, str]]:
        """Mark ``scan_id`` running again; returns its ``(source, kind)`` not yet done
        (pending or failed: a failed suspect is tried again)."""
        with _write(self._db) as db:
            changed = db.execute("UPDATE scans SET status = 'running', finished = NULL, engine = ? WHERE id = ?",
                                 (engine, scan_id)).rowcount
        if not changed:
            raise RegistryError(self._missing_scan(scan_id))
        rows = self._db.execute("SELECT source, kind FROM suspects WHERE scan_id = ? AND status != 'done' "
                                "ORDER BY position", (scan_id,)).fetchall()
        return [(source, kind) for source, kind in rows]

    @_database_errors
    def record(self, scan_id: str, outcomes: Sequence[SuspectOutcome]) -> None:
        """Write ``outcomes`` (each suspect with all its findings) in one transaction."""
        if not outcomes:
            return
        with _write(self._db) as db:
            for outcome in outcomes:
                stamp = outcome.recorded or _now()
                db.execute("DELETE FROM verdicts WHERE scan_id = ? AND source = ?", (scan_id, outcome.source))
                changed = db.execute(
                    "UPDATE suspects SET identity = ?, status = ?, error = ?, queries = ?, seconds = ?, recorded = ? "
                    "WHERE scan_id = ? AND source = ?",
                    (outcome.identity, outcome.status, outcome.error, outcome.queries, outcome.seconds, stamp,
                     scan_id, outcome.source)).rowcount
                if not changed:
                    raise RegistryError(f"Scan {scan_id!r} has no suspect {outcome.source!r}.")
                rows = [(scan_id, outcome.source, f.fingerprint, f.fingerprint_sha256, outcome.identity,
                         _real(f.score), f.decision, _real(f.threshold), int(f.queries), float(f.seconds), stamp,
                         f.error, stages_text(f.stages)) for f in outcome.findings]
                db.executemany(f"INSERT INTO verdicts ({_VERDICT_COLUMNS}, row_sha256) "
                               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [(*row, verdict_hash(*row)) for row in rows])

    @_database_errors
    def end_scan(self, scan_id: str, status: str, seconds: float) -> None:
        """Close a run of ``scan_id`` with ``status`` (``finished`` or ``interrupted``),
        adding ``seconds`` to its running time."""
        check_param("status", status, "'finished' or 'interrupted'", status in ("finished", "interrupted"),
                    caller="Registry.end_scan")
        with _write(self._db) as db:
            db.execute("UPDATE scans SET status = ?, finished = ?, seconds = seconds + ? WHERE id = ?",
                       (status, _now() if status == "finished" else None, float(seconds), scan_id))

    @_database_errors
    def scan(self, scan_id: str) -> ScanRecord:
        """The scan ``scan_id`` with its suspect counts by status."""
        row = self._db.execute("SELECT id, started, finished, status, engine, seconds, config FROM scans "
                               "WHERE id = ?", (scan_id,)).fetchone()
        if row is None:
            raise RegistryError(self._missing_scan(scan_id))
        return self._scan_record(row)

    @_database_errors
    def scans(self) -> list[ScanRecord]:
        """Every scan, oldest first."""
        rows = self._db.execute("SELECT id, started, finished, status, engine, seconds, config FROM scans "
                                "ORDER BY started, id").fetchall()
        return [self._scan_record(row) for row in rows]

    @_database_errors
    def outcomes(self, scan_id: str) -> list[SuspectOutcome]:
        """Every suspect of ``scan_id`` in the order given, with its findings (by fingerprint)."""
        self.scan(scan_id)
        findings: dict[str, list[Finding]] = {}
        for row in self._db.execute(f"SELECT {_VERDICT_COLUMNS}, row_sha256 FROM verdicts WHERE scan_id = ? "
                                    "ORDER BY source, fingerprint", (scan_id,)).fetchall():
            _, source, *finding = _check_verdict(row)
            findings.setdefault(source, []).append(_finding(*finding))
        rows = self._db.execute("SELECT source, identity, kind, status, error, queries, seconds, recorded "
                                "FROM suspects WHERE scan_id = ? ORDER BY position", (scan_id,)).fetchall()
        return [SuspectOutcome(source, identity or "", kind, status, error, queries or 0, seconds or 0.0,
                               findings.get(source, []), recorded)
                for source, identity, kind, status, error, queries, seconds, recorded in rows]

    @_database_errors
    def history(self, identity: str) -> list[tuple[str, Finding]]:
        """Every finding ever recorded for the suspect ``identity`` (file SHA-256 or URL), as
        ``(scan id, finding)``."""
        rows = self._db.execute(f"SELECT {_VERDICT_COLUMNS}, row_sha256 FROM verdicts WHERE identity = ? "
                                "ORDER BY recorded, scan_id, fingerprint", (identity,)).fetchall()
        found = []
        for row in rows:
            scan_id, _, *finding = _check_verdict(row)
            found.append((scan_id, _finding(*finding)))
        return found

    def _scan_record(self, row: tuple[Any, ...]) -> ScanRecord:
        # the rule of SuspectOutcome.state: a done suspect with a note was skipped
        counts = dict(self._db.execute("SELECT CASE WHEN status = 'done' AND error IS NOT NULL THEN 'skipped' "
                                       "ELSE status END AS state, COUNT(*) FROM suspects WHERE scan_id = ? "
                                       "GROUP BY state", (row[0],)).fetchall())
        config = _stored_json(row[6], what="scan configuration", name=str(row[0]))
        return ScanRecord(row[0], row[1], row[2], row[3], row[4], float(row[5]), config,
                          {state: int(counts.get(state, 0)) for state in SUSPECT_STATES})

    def _missing_scan(self, scan_id: str) -> str:
        return f"No scan {scan_id!r} in the registry {str(self.path)!r} (see tafa registry scans)."


def _finding(fingerprint: str, fingerprint_sha256: str, identity: str, score: float | None, decision: str,
             threshold: float | None, queries: int, seconds: float, recorded: str, error: str | None,
             stages: str | None) -> Finding:
    """A finding from the sealed columns of its verdict row (from ``fingerprint`` on)."""
    return Finding(fingerprint, fingerprint_sha256, score, decision, threshold, queries, seconds, error,
                   stages_from_text(stages))


def _entry(row: tuple[Any, ...]) -> RegistryEntry:
    name, sha256, scheme, input_shape, output_shape, queries, calibrated, committed, added = row
    try:
        return RegistryEntry(str(name), str(sha256), str(scheme), tuple(int(s) for s in json.loads(input_shape)),
                             tuple(int(s) for s in json.loads(output_shape)), int(queries), bool(calibrated),
                             bool(committed), str(added))
    except (TypeError, ValueError, RecursionError) as error:
        raise RegistryError(f"The registry row of {str(name)[:80]!r} is malformed ({one_line(error)[:200]}).") from None


def _check_seal(row: tuple[Any, ...]) -> None:
    """Refuse a fingerprint row ``(name, sha256, file_sha256, commitment, calibration, row_sha256)``
    whose content does not match its seal (:func:`row_hash`)."""
    name, sha256, file_sha256, commitment, calibration, seal = row
    texts = (name, sha256, file_sha256)
    optional = (commitment, calibration)
    if not (all(isinstance(v, str) for v in texts) and all(v is None or isinstance(v, str) for v in optional)
            and seal == row_hash(*texts, *optional)):
        raise TamperedFingerprint(f"The registry row of {str(name)[:80]!r} does not match its SHA-256: its name, "
                                  "hashes, commitment or calibration were modified outside tafa. Remove it and "
                                  "register the fingerprint again.")


def _load_row(name: str, sha256: str, file_sha256: str, data: Any, commitment: str | None,
              calibration: str | None) -> RegisteredFingerprint:
    if not isinstance(data, bytes):
        raise RegistryError(f"The registry row of {name!r} holds no fingerprint file.")
    if _sha256(data) != file_sha256:
        raise TamperedFingerprint(f"Registered fingerprint {name!r} does not match the SHA-256 of its file "
                                  "recorded at registration: the registry was modified.")
    fingerprint = fingerprint_from_bytes(data, name=name)  # checks the content against its recorded hash
    if recorded_sha256(data, name=name) != sha256:
        raise TamperedFingerprint(f"Registered fingerprint {name!r} has content SHA-256 "
                                  f"{recorded_sha256(data, name=name)}, not the {sha256} recorded at registration.")
    committed = None if commitment is None else _commitment(_stored_json(commitment, what="commitment", name=name),
                                                            fingerprint, name=name)
    rule = None if calibration is None else rule_from_stored(
        _stored_json(calibration, what="calibration", name=name), name=name, stage=fingerprint.scheme.name)
    return RegisteredFingerprint(name, fingerprint, data, sha256, rule, committed)


def load_registered(name: str, data: bytes, sha256: str, calibration: dict[str, Any] | None) -> RegisteredFingerprint:
    """Rebuild a registered fingerprint from what a scan ships to its workers (read from a
    checked registry row by the driver), checking the fingerprint and calibration again."""
    registered = _load_row(name, sha256, _sha256(data), data, None, None)
    if calibration is not None:
        registered.calibration = rule_from_stored(calibration, name=name, stage=registered.fingerprint.scheme.name)
    return registered
