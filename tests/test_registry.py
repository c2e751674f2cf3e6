"""The fingerprint registry: SQLite in WAL mode, versioned schema, hashes checked on every load,
calibrations and commitments kept, and two processes writing it at once losing nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tafa import Fingerprint
from tafa.cli import main
from tafa.commitment import Commitment
from tafa.errors import FingerprintError, InvalidParameter, TamperedFingerprint
from tafa.registry import (SCHEMA_VERSION, Finding, Registry, RegistryError, SuspectOutcome, default_registry_path,
                           migrate, row_hash)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reseal(raw: sqlite3.Connection, name: str) -> None:
    """Recompute a row's seal as an editor who read tafa's source would."""
    row = raw.execute("SELECT name, sha256, file_sha256, commitment, calibration FROM fingerprints WHERE name = ?",
                      (name,)).fetchone()
    raw.execute("UPDATE fingerprints SET row_sha256 = ? WHERE name = ?", (row_hash(*row), name))
    raw.commit()


@pytest.fixture(scope="module")
def fingerprint_file(classifier, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "owner.tafa"
    Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape, points=16).save(path)
    return path


@pytest.fixture(scope="module")
def other_file(classifier, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "independent.tafa"
    Fingerprint.create(classifier.independent, classifier.domain, input_shape=classifier.input_shape,
                       points=16).save(path)
    return path


def test_add_get_list_remove(tmp_path, fingerprint_file, classifier):
    fingerprint = Fingerprint.load(fingerprint_file)
    with Registry(tmp_path / "registry.sqlite") as registry:
        entry = registry.add(fingerprint_file, "owner")
        assert (entry.name, entry.sha256, entry.scheme, entry.input_shape, entry.output_shape, entry.queries) == \
            ("owner", fingerprint.sha256, "tafa", (1, 8, 8), (10,), fingerprint.queries())
        assert not entry.calibrated and not entry.committed
        loaded = registry.get("owner")
        assert loaded.file == fingerprint_file.read_bytes() and loaded.fingerprint.sha256 == fingerprint.sha256
        assert loaded.fingerprint.score(classifier.owner).value == pytest.approx(1.0)
        with pytest.raises(RegistryError, match="already registered"):
            registry.add(fingerprint_file, "owner")
        registry.add(fingerprint_file, "owner", replace=True)
        registry.add(fingerprint_file, "second")
        assert registry.names() == ["owner", "second"] and [e.name for e in registry.entries()] == ["owner", "second"]
        registry.remove("owner")
        assert registry.names() == ["second"]
        with pytest.raises(RegistryError, match="No fingerprint named 'owner'.*registered: second"):
            registry.get("owner")
        with pytest.raises(RegistryError, match="No fingerprint named 'owner'"):
            registry.remove("owner")
        with pytest.raises(InvalidParameter, match="'name' parameter of Registry.add"):
            registry.add(fingerprint_file, "  ")


def test_registry_is_wal_and_carries_its_schema_version(tmp_path):
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        assert registry.journal_mode == "wal" and registry.schema_version == SCHEMA_VERSION
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    raw.close()


def test_an_older_registry_is_migrated_and_keeps_its_fingerprints(tmp_path, fingerprint_file):
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path, isolation_level=None)
    assert migrate(raw, target=1) == 1
    assert {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"fingerprints"}
    data = fingerprint_file.read_bytes()
    fingerprint = Fingerprint.load(fingerprint_file)
    raw.execute("INSERT INTO fingerprints VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                ("old", fingerprint.sha256, _sha256(data), data, "tafa", "[1, 8, 8]", "[10]", fingerprint.queries(),
                 None, None, "2025-01-01T00:00:00"))
    raw.close()
    with Registry(path) as registry:
        assert registry.schema_version == SCHEMA_VERSION
        assert registry.get("old").fingerprint.sha256 == fingerprint.sha256
        scan_id = registry.begin_scan(["/x.onnx"], ["file"], engine="local", config={"fingerprints": []})
        assert registry.scan(scan_id).counts == {"pending": 1, "done": 0, "skipped": 0, "failed": 0}


def test_the_registry_stores_the_default_control_and_alpha_of_its_scans(tmp_path):
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        assert registry.defaults() == ("family", 0.05)
        registry.set_defaults("fdr", 0.1)
    with Registry(path) as registry:  # kept in the file
        assert registry.defaults() == ("fdr", 0.1)
        registry.set_defaults("per-fingerprint", None)
        assert registry.defaults() == ("per-fingerprint", None)
        for control, alpha, wrong in (("family", None, "'alpha'"), ("family", 1.5, "'alpha'"),
                                      ("nope", 0.05, "'control'"), ("fdr", True, "'alpha'")):
            with pytest.raises(InvalidParameter, match=f"{wrong} parameter of Registry.set_defaults"):
                registry.set_defaults(control, alpha)
        assert registry.defaults() == ("per-fingerprint", None)  # a refused setting leaves the stored one
    raw = sqlite3.connect(path)
    raw.execute("UPDATE settings SET value = '0.9' WHERE key = 'alpha'")  # edited outside tafa: 0.9 with no control
    raw.execute("""UPDATE settings SET value = '"family"' WHERE key = 'control'""")
    raw.commit()
    raw.close()
    with Registry(path) as registry:
        assert registry.defaults() == ("family", 0.9)  # a number in (0, 1) is a setting a scan accepts
    raw = sqlite3.connect(path)
    raw.execute("UPDATE settings SET value = '[1' WHERE key = 'alpha'")
    raw.commit()
    raw.close()
    with Registry(path) as registry, pytest.raises(RegistryError, match="malformed"):
        registry.defaults()


def test_a_schema_4_registry_is_read_and_gets_the_defaults_its_scans_had(tmp_path, fingerprint_file):
    path = tmp_path / "v4.sqlite"
    raw = sqlite3.connect(path, isolation_level=None)
    assert migrate(raw, target=4) == 4
    assert "settings" not in {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    raw.close()
    with Registry(path) as registry:
        registry.add(fingerprint_file, "owner")
        assert registry.schema_version == SCHEMA_VERSION == 7
        assert registry.defaults() == ("family", 0.05)  # what a scan of a schema-4 registry defaulted to


def test_a_newer_registry_or_a_file_that_is_no_database_is_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    raw.commit()
    raw.close()
    with pytest.raises(RegistryError, match=f"schema version {SCHEMA_VERSION + 7}.*Upgrade tafa"):
        Registry(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not an SQLite file " * 200)
    with pytest.raises(RegistryError, match="not a usable tafa registry"):
        Registry(junk)
    with pytest.raises(RegistryError, match="is not a file"):
        Registry(tmp_path)


def test_a_fingerprint_edited_in_the_database_is_refused_on_load(tmp_path, fingerprint_file, other_file):
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.add(fingerprint_file, "owner")
        raw = sqlite3.connect(path)
        blob = bytearray(fingerprint_file.read_bytes())
        blob[-9] ^= 0x01  # one bit of the owner's signature
        raw.execute("UPDATE fingerprints SET file = ? WHERE name = 'owner'", (bytes(blob),))
        raw.commit()
        with pytest.raises(TamperedFingerprint, match="'owner' does not match the SHA-256 of its file"):
            registry.get("owner")
        # Another valid fingerprint swapped in with its file hash updated: the row's seal tells ...
        other = other_file.read_bytes()
        raw.execute("UPDATE fingerprints SET file = ?, file_sha256 = ? WHERE name = 'owner'", (other, _sha256(other)))
        raw.commit()
        with pytest.raises(TamperedFingerprint, match="registry row of 'owner' does not match its SHA-256"):
            registry.get("owner")
        # ... and with the seal recomputed too, the content hash still tells.
        _reseal(raw, "owner")
        raw.close()
        with pytest.raises(TamperedFingerprint, match="'owner' has content SHA-256"):
            registry.get("owner")


def test_default_path_is_in_the_user_data_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("TAFA_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_registry_path() == tmp_path / "data" / "tafa" / "registry.sqlite"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_registry_path() == tmp_path / "home" / ".local" / "share" / "tafa" / "registry.sqlite"
    monkeypatch.setenv("TAFA_REGISTRY", str(tmp_path / "chosen.sqlite"))
    with Registry() as registry:
        assert registry.path == tmp_path / "chosen.sqlite" and registry.path.is_file()


def test_calibration_is_stored_with_the_fingerprint(tmp_path, fingerprint_file, classifier):
    calibration = Fingerprint.load(fingerprint_file).calibrate_first(classifier.references[:4], alpha=0.2)
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.add(fingerprint_file, "owner", calibration=calibration)
        stored = registry.get("owner").calibration  # a first stage's calibration: the rule of that stage alone
        assert registry.entry("owner").calibrated and stored.stages == [calibration] and stored.names == ["tafa"]
        registry.set_calibration("owner", None)
        assert registry.get("owner").calibration is None and not registry.entry("owner").calibrated
        again = registry.calibrate("owner", classifier.references[:3], alpha=0.25)
        assert again.n_references == 3 and registry.get("owner").calibration == again
        # enough references for every stage: the rule of all four, stored and read back whole
        every = registry.calibrate("owner", classifier.references, alpha=0.25)
        assert every.names == ["tafa", "tafa-datalike", "tafa-boundary", "tafa-students"]
        assert registry.get("owner").calibration == every
        with pytest.raises(RegistryError, match="No fingerprint named 'ghost'"):
            registry.set_calibration("ghost", None)


def test_commitment_is_checked_and_stored(tmp_path, fingerprint_file, other_file):
    fingerprint = Fingerprint.load(fingerprint_file)
    good = Commitment.of(fingerprint).save(tmp_path / "good.json")
    wrong = Commitment.of(Fingerprint.load(other_file)).save(tmp_path / "wrong.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        registry.add(fingerprint_file, "owner", commitment=good)
        assert registry.entry("owner").committed
        assert registry.get("owner").commitment["fingerprint_sha256"] == fingerprint.sha256
        with pytest.raises(TamperedFingerprint, match="'second'.*does not match its commitment"):
            registry.add(fingerprint_file, "second", commitment=wrong)
        with pytest.raises(FingerprintError, match="not a readable tafa commitment"):
            registry.add(fingerprint_file, "third", commitment=broken)
        assert registry.names() == ["owner"]
        # the stored commitment is checked again on every load
        raw = sqlite3.connect(path)
        stored = json.loads(raw.execute("SELECT commitment FROM fingerprints").fetchone()[0])
        stored["fingerprint_sha256"] = Fingerprint.load(other_file).sha256
        raw.execute("UPDATE fingerprints SET commitment = ?", (json.dumps(stored),))
        raw.commit()
        with pytest.raises(TamperedFingerprint, match="registry row of 'owner' does not match its SHA-256"):
            registry.get("owner")
        _reseal(raw, "owner")  # an editor who knows the seal: the commitment itself is checked again
        raw.close()
        with pytest.raises(TamperedFingerprint, match="'owner'.*does not match its commitment"):
            registry.get("owner")


_WRITER = textwrap.dedent("""
    import sys, time
    from tafa.registry import Finding, Registry, SuspectOutcome
    from pathlib import Path
    path, tag, other, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    registry = Registry(path)
    sources = [f"/{tag}/{i}.onnx" for i in range(count)]
    Path(path + "." + tag + ".ready").touch()   # a barrier: start writing when both are ready
    while not Path(path + "." + other + ".ready").exists():
        time.sleep(0.002)
    scan_id = registry.begin_scan(sources, ["file"] * count, engine="local", config={"fingerprints": []})
    for i, source in enumerate(sources):   # one transaction per suspect: the most contention
        findings = [Finding(f"fp{k}", "0" * 64, i / count, "undecided", None, 10, 0.001) for k in range(3)]
        registry.record(scan_id, [SuspectOutcome(source, f"{tag}{i}", "file", "done", None, 30, 0.01, findings)])
        if i == count // 2:   # a second barrier: neither finishes before the other has written half
            Path(path + "." + tag + ".half").touch()
            while not Path(path + "." + other + ".half").exists():
                time.sleep(0.002)
    registry.end_scan(scan_id, "finished", 1.0)
    print(scan_id)
""")


def test_two_processes_writing_one_registry_at_once_lose_nothing(tmp_path):
    path = tmp_path / "registry.sqlite"
    Registry(path).close()
    count = 2000
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag, other, str(count)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for tag, other in (("a", "b"), ("b", "a"))]
    results = [writer.communicate(timeout=120) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err for _, err in results]
    with Registry(path) as registry:
        scans = {record.id: record for record in registry.scans()}
        assert set(scans) == {out.strip() for out, _ in results}
        for scan_id, record in scans.items():
            assert record.status == "finished"
            assert record.counts == {"pending": 0, "done": count, "skipped": 0, "failed": 0}
            outcomes = registry.outcomes(scan_id)
            assert sum(len(outcome.findings) for outcome in outcomes) == 3 * count
    # the two scans really overlapped in time (the half-way barrier makes sure of it; without the
    # overlap this test would prove little)
    raw = sqlite3.connect(path)
    spans = raw.execute("SELECT MIN(recorded), MAX(recorded) FROM suspects GROUP BY scan_id").fetchall()
    raw.close()
    assert max(start for start, _ in spans) <= min(end for _, end in spans)


def test_record_rejects_a_suspect_the_scan_does_not_have(tmp_path):
    with Registry(tmp_path / "registry.sqlite") as registry:
        scan_id = registry.begin_scan(["/a.onnx"], ["file"], engine="local", config={"fingerprints": []})
        stray = SuspectOutcome("/b.onnx", "b", "file", "done", None, 0, 0.0,
                               [Finding("fp", "0" * 64, 0.5, "undecided", None, 1, 0.0)])
        with pytest.raises(RegistryError, match="has no suspect '/b.onnx'"):
            registry.record(scan_id, [stray])
        assert registry.outcomes(scan_id)[0].status == "pending"  # the failed transaction left nothing


# -- the command line ----------------------------------------------------------------------------

def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_registry_commands(tmp_path, capsys, fingerprint_file, classifier):
    references = tmp_path / "references"
    references.mkdir()
    for i, model in enumerate(classifier.references[:5]):
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(references / f"ref{i}.onnx"), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    db = str(tmp_path / "registry.sqlite")
    code, out, _ = _run(capsys, "registry", "add", str(fingerprint_file), "--name", "owner", "--registry", db,
                        "--references", str(references), "--alpha", "0.2")
    assert code == 0 and "registered 'owner'" in out and "calibrated on 5 distinct references" in out
    code, out, _ = _run(capsys, "registry", "add", str(fingerprint_file), "--name", "plain", "--registry", db, "--json")
    assert code == 0 and json.loads(out)["threshold"] is None
    code, out, _ = _run(capsys, "registry", "list", "--registry", db, "--json")
    listed = {entry["name"]: entry for entry in json.loads(out)}
    assert code == 0 and listed["owner"]["calibrated"] and not listed["plain"]["calibrated"]
    code, out, _ = _run(capsys, "registry", "list", "--registry", db)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["name", "scheme", "input"] and "1x8x8" in out
    code, _, err = _run(capsys, "registry", "add", str(fingerprint_file), "--name", "owner", "--registry", db)
    assert code == 2 and "already registered" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "registry", "add", str(tmp_path / "missing.tafa"), "--name", "x", "--registry", db)
    assert code == 2 and "does not exist" in err
    code, out, _ = _run(capsys, "registry", "remove", "plain", "--registry", db)
    assert code == 0 and "removed 'plain'" in out
    code, _, err = _run(capsys, "registry", "remove", "plain", "--registry", db)
    assert code == 2 and "No fingerprint named 'plain'" in err
    code, out, _ = _run(capsys, "registry", "scans", "--registry", db, "--json")
    assert code == 0 and json.loads(out) == []


# ---------------------------------------------------------------------- stored state as an adversary edits it

def _calibrated_registry(tmp_path, fingerprint_file, classifier) -> tuple[str, Fingerprint]:
    fingerprint = Fingerprint.load(fingerprint_file)
    calibration = fingerprint.calibrate_first(classifier.references[:4], alpha=0.2)
    db = str(tmp_path / "registry.sqlite")
    with Registry(db) as registry:
        registry.add(fingerprint_file, "owner", calibration=calibration)
    return db, fingerprint


def _edit_threshold(db: str, threshold: float, *, reseal: bool) -> None:
    raw = sqlite3.connect(db)
    stored = json.loads(raw.execute("SELECT calibration FROM fingerprints WHERE name = 'owner'").fetchone()[0])
    stored["threshold"] = threshold
    raw.execute("UPDATE fingerprints SET calibration = ? WHERE name = 'owner'", (json.dumps(stored),))
    raw.commit()
    if reseal:
        _reseal(raw, "owner")
    raw.close()


@pytest.mark.parametrize("reseal", [False, True], ids=["edited", "edited and resealed"])
def test_a_threshold_edited_to_minus_one_is_refused_and_not_scanned(tmp_path, capsys, fingerprint_file, classifier,
                                                                     reseal):
    db, fingerprint = _calibrated_registry(tmp_path, fingerprint_file, classifier)
    suspect = tmp_path / "independent.onnx"
    torch.onnx.export(classifier.independent, (torch.zeros(1, 1, 8, 8),), str(suspect), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    code, out, _ = _run(capsys, "scan", str(suspect), "--registry", db, "--json")
    assert code == 0 and '"owner"' in out  # the control: the honestly calibrated row is used
    _edit_threshold(db, -1.0, reseal=reseal)
    why = "threshold -1.0 is below every one" if reseal else "registry row of 'owner' does not match its SHA-256"
    with Registry(db) as registry, pytest.raises(TamperedFingerprint, match=why):
        registry.get("owner")
    code, out, err = _run(capsys, "scan", str(suspect), "--registry", db, "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'owner'" in err and '"derived"' not in out


def test_a_name_renamed_in_the_database_is_refused(tmp_path, fingerprint_file):
    db = str(tmp_path / "registry.sqlite")
    with Registry(db) as registry:
        registry.add(fingerprint_file, "owner")
    raw = sqlite3.connect(db)
    raw.execute("UPDATE fingerprints SET name = 'trusted-vendor' WHERE name = 'owner'")
    raw.commit()
    raw.close()
    with Registry(db) as registry, pytest.raises(TamperedFingerprint, match="row of 'trusted-vendor'"):
        registry.get("trusted-vendor")


@pytest.mark.parametrize("column, value", [("calibration", "{not json"), ("calibration", '{"threshold": NaN}'),
                                           ("commitment", "[1e999]"), ("input_shape", "[1, 8"),
                                           ("file", "text, not a blob")])
def test_malformed_rows_give_one_line(tmp_path, capsys, fingerprint_file, column, value):
    db = str(tmp_path / "registry.sqlite")
    with Registry(db) as registry:
        registry.add(fingerprint_file, "owner")
    raw = sqlite3.connect(db)
    raw.execute(f"UPDATE fingerprints SET {column} = ? WHERE name = 'owner'", (value,))
    raw.commit()
    _reseal(raw, "owner")  # only the parsing can refuse it
    raw.close()
    command = ("registry", "list") if column == "input_shape" else ("scan", str(fingerprint_file))
    code, _, err = _run(capsys, *command, "--registry", db)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'owner'" in err, err


def test_a_registry_with_damaged_pages_gives_one_line(tmp_path, capsys, fingerprint_file):
    db = tmp_path / "registry.sqlite"
    with Registry(db) as registry:
        for i in range(8):
            registry.add(fingerprint_file, f"fp{i}")
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    for offset in range(2 * page, len(data), page):  # every page after the schema's: garbage
        data[offset:offset + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    for command in (("registry", "list"), ("scan", str(fingerprint_file))):
        code, _, err = _run(capsys, *command, "--registry", str(db))
        assert code == 2 and len(err.strip().splitlines()) == 1 and "registry.sqlite" in err, err


# ---------------------------------------------------------------------- a hostile database: triggers, seals, hangs

def _owner_copy(tmp_path, classifier) -> Path:
    """A pirated copy of the owner: its own weights, exported to ONNX."""
    suspect = tmp_path / "copy.onnx"
    torch.onnx.export(classifier.owner, (torch.zeros(1, 1, 8, 8),), str(suspect), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    return suspect


#: Objects an adversary adds to a registry's database (each refused when the registry is opened).
HOSTILE_OBJECTS = {
    "trigger rewriting every verdict": "CREATE TRIGGER launder AFTER INSERT ON verdicts BEGIN "
                                       "UPDATE verdicts SET decision = 'independent' WHERE rowid = NEW.rowid; END",
    "trigger that never ends": "CREATE TRIGGER spin BEFORE INSERT ON scans BEGIN SELECT count(*) FROM "
                               "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c); END",
    "view": "CREATE VIEW shadow AS SELECT name FROM fingerprints",
    "extra table": "CREATE TABLE notes (x TEXT)",
    "extra index": "CREATE INDEX by_added ON fingerprints(added)",
    "changed table": "ALTER TABLE settings ADD COLUMN evil TEXT DEFAULT 'x'",
}


@pytest.mark.parametrize("statement", HOSTILE_OBJECTS.values(), ids=HOSTILE_OBJECTS.keys())
def test_a_registry_holding_objects_tafa_did_not_create_is_refused(tmp_path, capsys, fingerprint_file, classifier,
                                                                   statement):
    db, _ = _calibrated_registry(tmp_path, fingerprint_file, classifier)
    suspect = _owner_copy(tmp_path, classifier)
    if "launder" in statement:  # the control: the honest registry finds the copy
        code, out, _ = _run(capsys, "scan", str(suspect), "--registry", db, "--control", "per-fingerprint")
        assert code == 0 and "1 matches:" in out, out
    raw = sqlite3.connect(db)
    raw.execute(statement)
    raw.commit()
    raw.close()
    before = Path(db).read_bytes()
    with pytest.raises(RegistryError, match="did not create|which tafa's schema"):
        Registry(db)
    for command in (("scan", str(suspect), "--control", "per-fingerprint"), ("registry", "list")):
        code, out, err = _run(capsys, *command, "--registry", db)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "refused" in err and not out, (out, err)
    assert Path(db).read_bytes() == before  # refused before anything was written


def test_no_statement_runs_unbounded(tmp_path):
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry._db.statement_seconds = 0.5
        started = time.perf_counter()
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            registry._db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                                 "SELECT count(*) FROM c").fetchone()
        assert time.perf_counter() - started < 5
        assert registry.names() == []  # the next statement has its own budget


def _verdict_row(scan_id: str, decision: str = "derived") -> SuspectOutcome:
    return SuspectOutcome("/x.onnx", "abc", "file", "done", None, 10, 0.1,
                          [Finding("owner", "f" * 64, 0.97, decision, 0.5, 10, 0.01)])


@pytest.mark.parametrize("reseal", [False, True], ids=["edited", "edited and resealed"])
def test_verdict_rows_are_sealed_and_a_scan_reports_what_it_computed(tmp_path, fingerprint_file, classifier, reseal):
    from tafa.registry import verdict_hash
    from tafa.scanning import scan

    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        scan_id = registry.begin_scan(["/x.onnx"], ["file"], engine="local", config={"fingerprints": []})
        registry.record(scan_id, [_verdict_row(scan_id)])
        assert [f.decision for f in registry.outcomes(scan_id)[0].findings] == ["derived"]
        assert [f.decision for _, f in registry.history("abc")] == ["derived"]
        registry._db.execute("UPDATE verdicts SET decision = 'independent'")
        with pytest.raises(RegistryError, match="does not match its SHA-256"):
            registry.outcomes(scan_id)
        with pytest.raises(RegistryError, match="does not match its SHA-256"):
            registry.history("abc")
    # a scan that just ran reports what it computed, or refuses: never what the database was changed to
    db, _ = _calibrated_registry(tmp_path, fingerprint_file, classifier)
    suspect = _owner_copy(tmp_path, classifier)

    def launder(outcome: SuspectOutcome) -> None:  # another writer changes the verdict as soon as it is written
        raw = sqlite3.connect(db)
        raw.execute("UPDATE verdicts SET decision = 'independent'")
        if reseal:
            columns = "scan_id, source, fingerprint, fingerprint_sha256, identity, score, decision, threshold"
            for row in raw.execute(f"SELECT {columns}, queries, seconds, recorded, error FROM verdicts").fetchall():
                raw.execute("UPDATE verdicts SET row_sha256 = ? WHERE scan_id = ? AND source = ? AND fingerprint = ?",
                            (verdict_hash(*row), *row[:3]))
        raw.commit()
        raw.close()

    with pytest.raises(RegistryError, match="does not match its SHA-256" if not reseal else "other verdicts than"):
        scan([str(suspect)], registry=db, workers=0, control="per-fingerprint", flush_seconds=0, on_outcome=launder)


def test_a_verdicts_later_stages_are_sealed_and_a_schema_6_registry_keeps_its_seals(tmp_path):
    """Schema 7 stores a verdict's later stages under the row's seal: a stage's score or threshold
    edited outside tafa is refused, as a decision is. A verdict written by schema 6 (no stages) keeps
    its seal through the migration and reads back with none."""
    from tafa.registry import stages_text, verdict_hash

    stages = [{"name": "tafa-boundary", "score": 0.81, "queries": 5162, "threshold": 0.55},
              {"name": "tafa-students", "score": None, "queries": 64, "threshold": None}]
    outcome = SuspectOutcome("/x.onnx", "abc", "file", "done", None, 5514, 0.1,
                             [Finding("owner", "f" * 64, 0.12, "derived", 0.4, 5514, 0.01, stages=stages)])
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        scan_id = registry.begin_scan(["/x.onnx"], ["file"], engine="local", config={"fingerprints": []})
        registry.record(scan_id, [outcome])
        (finding,) = registry.outcomes(scan_id)[0].findings
        assert finding.stages == stages and finding.fired() == ("tafa-boundary", 0.81, 0.55)
        registry._db.execute("UPDATE verdicts SET stages = ?", (stages_text([{**stages[0], "score": 0.2}]),))
        with pytest.raises(RegistryError, match="does not match its SHA-256"):
            registry.outcomes(scan_id)
    old = tmp_path / "v6.sqlite"
    raw = sqlite3.connect(old, isolation_level=None)
    assert migrate(raw, target=6) == 6
    raw.execute("INSERT INTO scans (id, started, status, engine, config) VALUES ('s', 'then', 'finished', 'local', "
                "'{\"fingerprints\": []}')")
    raw.execute("INSERT INTO suspects (scan_id, position, source, kind, identity, status) "
                "VALUES ('s', 0, '/x.onnx', 'file', 'abc', 'done')")
    row = ("s", "/x.onnx", "owner", "f" * 64, "abc", 0.97, "derived", 0.5, 10, 0.1, "then", None)
    raw.execute("INSERT INTO verdicts (scan_id, source, fingerprint, fingerprint_sha256, identity, score, decision, "
                "threshold, queries, seconds, recorded, error, row_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*row, verdict_hash(*row)))  # the seal schema 6 wrote
    raw.close()
    with Registry(old) as registry:
        assert registry.schema_version == 7
        (finding,) = registry.outcomes("s")[0].findings
        assert (finding.score, finding.decision, finding.stages) == (0.97, "derived", [])


@pytest.mark.parametrize("edit", ["a stage's threshold under every reference", "levels above alpha", "names",
                                  "table's first stage", "table's rows", "table's names"])
def test_a_stored_rule_edited_and_resealed_is_refused(tmp_path, fingerprint_file, classifier, edit):
    """A rule of several stages is checked as a single calibration is: each stage for sense, its
    levels within its alpha, one name per stage, and the references' scores at every stage kept
    with it against the rule itself; an editor who reseals the row is still refused."""
    db = str(tmp_path / "registry.sqlite")
    with Registry(db) as registry:
        registry.add(fingerprint_file, "owner")
        rule = registry.calibrate("owner", classifier.references, alpha=0.2)
    assert len(rule.stages) == 3
    raw = sqlite3.connect(db)
    stored = json.loads(raw.execute("SELECT calibration FROM fingerprints WHERE name = 'owner'").fetchone()[0])
    if edit == "names":
        stored["names"] = stored["names"][:2]
        why = "one name"
    elif edit == "levels above alpha":
        stored["alpha_requested"] = 0.01
        why = "add up to more than its alpha"
    elif edit == "table's first stage":  # the kept scores of every stage must be the rule's references'
        stored["table"]["scores"][0][0] += 0.5
        why = "first stage must be the rule's reference scores"
    elif edit == "table's rows":
        stored["table"]["scores"] = stored["table"]["scores"][:-1]
        why = "must hold 18 rows"
    elif edit == "table's names":
        stored["table"]["names"] = ["tafa-boundary", *stored["table"]["names"][1:]]
        why = "the rule's own first"
    else:
        stored["stages"][1]["threshold"] = -1.0
        why = "is below every one"
    raw.execute("UPDATE fingerprints SET calibration = ? WHERE name = 'owner'", (json.dumps(stored),))
    raw.commit()
    _reseal(raw, "owner")
    raw.close()
    with Registry(db) as registry, pytest.raises(TamperedFingerprint, match=why):
        registry.get("owner")
