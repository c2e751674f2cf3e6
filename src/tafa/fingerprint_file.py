"""The fingerprint file format: bytes in, bytes out, and the hashes others read.

A fingerprint file is one safetensors file (no pickle anywhere): every array is float64,
and the safetensors metadata holds one entry, ``"tafa"``, a JSON header with the format
name and version, the scheme, domain, shapes, owner model hash, creation time, seed, the
probes' description and free metadata, and ``content_sha256``: the SHA-256 of everything
else (:func:`content_hash`). :func:`encode` makes the bytes, :func:`decode` checks them and
gives the header and arrays back; what the arrays *mean* (a :class:`~tafa.fingerprint.Fingerprint`)
is the orchestration's business, not this module's.

The commitment file (:class:`CommitmentRecord`: what an owner publishes about one fingerprint,
see :mod:`tafa.commitment`) is format too: its fields, its digest, reading it and checking a
fingerprint's hashes against it live here, so that :meth:`~tafa.fingerprint.Fingerprint.save`
writes a fingerprint and its commitment with one function, :func:`write_fingerprint`, the
command line's too; re-creating a committed fingerprint is orchestration
(:meth:`tafa.commitment.Commitment.reproduce`).

The reader treats a file as hostile: before anything is allocated it checks the size of the
file and of the safetensors header, every declared dtype, shape and offset, and (with
:func:`check_header`) every number in the JSON header that would size an array later:
input and output shapes, probe and direction counts, seeds. Every problem is a
:class:`~tafa.errors.FingerprintError` (or :class:`~tafa.errors.TamperedFingerprint` when the
content does not match its hash) with a one-line message that names the file.

>>> import numpy as np
>>> data = encode({"format": FORMAT, "version": VERSION, "seed": 0}, {"probes.points": np.zeros((2, 3))})
>>> header, arrays = decode(data, source="example")
>>> header["seed"], arrays["probes.points"].shape, header["content_sha256"] == recorded_sha256(data, source="x")
(0, (2, 3), True)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import FingerprintError, InvalidParameter, TafaError, TamperedFingerprint, one_line
from .storage import (MAX_INTEGER_DIGITS, MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_JSON_VALUES,  # noqa: F401
                      check_json_size, read_regular, strict_json, write_atomically)

FORMAT = "tafa-fingerprint"
VERSION = 1

#: Largest fingerprint file read (the domain's bounds and the probes grow with the input size).
MAX_FILE_BYTES = 1 << 30
#: Largest safetensors JSON header (it carries the tafa header, domain bounds included). The
#: largest real one measured: 6.0 MB, a 3 x 224 x 224 input with per-feature bounds at full
#: precision and a second stage (301,146 JSON values); a 3 x 224 x 224 box:0,1 takes 1.5 MB.
MAX_HEADER_BYTES = MAX_JSON_BYTES
#: Most arrays one fingerprint holds (probes, owner signature, verifier parameters).
MAX_ARRAYS = 64
#: Most dimensions of one array.
MAX_DIMENSIONS = 8
#: Most values of one model input or output (224 x 224 x 3 is 150528).
MAX_FEATURES = 1 << 22
#: Most queries one verification may send.
MAX_QUERIES = 1 << 20
#: Most output values one verification may hold (queries x outputs per query, float64).
MAX_OUTPUT_VALUES = 1 << 24

#: The one dtype a fingerprint file holds (safetensors' name, numpy's).
DTYPE, NUMPY_DTYPE = "F64", np.dtype("<f8")


def tafa_version() -> str:
    """The installed tafa's version (``"0+unknown"`` from a source tree that is not installed)."""
    try:
        from importlib.metadata import version
        return version("tafa")
    except Exception:  # noqa: BLE001 - not installed (source tree)
        return "0+unknown"


def canonical(header: dict[str, Any]) -> bytes:
    """The header as canonical JSON (sorted keys, no spaces): what hashes cover."""
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def content_hash(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the header (without its own hash) and every array (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(canonical({k: v for k, v in header.items() if k != "content_sha256"}))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(name.encode())
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ writing

def encode(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a fingerprint file: ``header`` (given ``content_sha256``) and ``arrays``
    (written as C-ordered float64)."""
    from safetensors.numpy import save

    arrays = {name: np.ascontiguousarray(value, dtype=np.float64) for name, value in arrays.items()}
    header = {**header, "content_sha256": content_hash(header, arrays)}
    return save(arrays, metadata={"tafa": json.dumps(header, allow_nan=False)})


# ------------------------------------------------------------------------------------ reading

def read(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the fingerprint file ``path`` (a regular file of at most :data:`MAX_FILE_BYTES`,
    read by :func:`tafa.storage.read_regular`)."""
    return read_regular(path, limit=MAX_FILE_BYTES, what="Fingerprint file", error=FingerprintError)


def decode(data: bytes, *, source: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked tafa header and arrays of a fingerprint file's bytes.

    ``source`` names the bytes in messages (``"'owner.tafa'"``, ``"registered fingerprint 'a'"``).
    Raises :class:`FingerprintError` for anything that is not a well-formed fingerprint of this
    format version, :class:`TamperedFingerprint` when the content does not match its hash.
    """
    entries, metadata, start = _safetensors_layout(data, source)
    header = _tafa_header(metadata, source)
    check_header(header, source=source)
    arrays = {name: _array(data, shape, start + begin) for name, (shape, begin) in entries.items()}
    if content_hash(header, arrays) != header.get("content_sha256"):
        raise TamperedFingerprint(f"{source} does not match its own SHA-256: the file was modified after it "
                                  "was written.")
    return header, arrays


def _array(data: bytes, shape: tuple[int, ...], offset: int) -> np.ndarray:
    count = math.prod(shape)
    if count == 0:
        return np.zeros(shape, dtype=np.float64)
    # astype: a writable, native-order copy (the bytes stay the caller's)
    return np.frombuffer(data, dtype=NUMPY_DTYPE, count=count, offset=offset).reshape(shape).astype(np.float64)


def recorded_sha256(data: bytes, *, source: str) -> str:
    """The content SHA-256 recorded in the header of a fingerprint file's bytes (not checked
    against the content: :func:`decode` does that). This, not a hash recomputed by the running
    tafa, identifies a registered fingerprint: the file's bytes fix it."""
    _, metadata, _ = _safetensors_layout(data, source)
    value = _tafa_header(metadata, source).get("content_sha256")
    if not _is_sha256(value):
        raise FingerprintError(f"{source} records no content SHA-256 in its header.")
    return str(value)


def _safetensors_layout(data: bytes, source: str) -> tuple[dict[str, tuple[tuple[int, ...], int]], dict[str, str], int]:
    """Check the safetensors framing of ``data`` without reading any array: the header's
    length, every array's dtype, shape and byte range. Returns ``{name: (shape, begin)}``,
    the metadata and where the array bytes start."""
    def bad(why: str) -> FingerprintError:
        return FingerprintError(f"{source} is not a readable tafa fingerprint ({why}).")

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, shorter than any safetensors file")
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise bad(f"its header claims {length} bytes; the file has {len(data)} and a header at most "
                  f"{MAX_HEADER_BYTES}")
    try:
        layout = strict_json(data[8:8 + length].decode("utf-8"), what="the safetensors header")
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise bad(one_line(error)[:200]) from None
    if not isinstance(layout, dict):
        raise bad("its header is not a JSON object")
    metadata = layout.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("its metadata is not a map of strings")
    if len(layout) > MAX_ARRAYS:
        raise bad(f"it declares {len(layout)} arrays; a fingerprint has at most {MAX_ARRAYS}")
    start, size = 8 + length, len(data) - 8 - length
    entries: dict[str, tuple[tuple[int, ...], int]] = {}
    ranges = []
    for name, entry in layout.items():
        if not isinstance(entry, dict) or entry.get("dtype") != DTYPE:
            raise bad(f"array {name[:60]!r} is not declared {DTYPE}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(_count(s) for s in shape)):
            raise bad(f"array {name[:60]!r} declares shape {str(shape)[:80]}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
                and offsets[0] <= offsets[1] <= size):
            raise bad(f"array {name[:60]!r} declares bytes {str(offsets)[:80]} of {size}")
        if offsets[1] - offsets[0] != math.prod(shape) * NUMPY_DTYPE.itemsize:
            raise bad(f"array {name[:60]!r} of shape {shape} does not fill its {offsets[1] - offsets[0]} bytes")
        entries[name] = (tuple(shape), offsets[0])
        ranges.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(ranges):
        if begin != end:
            raise bad("its arrays overlap or leave gaps")
        end = stop
    if end != size:
        raise bad(f"its arrays cover {end} of the {size} data bytes")
    return entries, metadata, start


def _tafa_header(metadata: dict[str, str], source: str) -> dict[str, Any]:
    if "tafa" not in metadata:
        raise FingerprintError(f"{source} is not a tafa fingerprint file (no tafa header).")
    try:
        header = strict_json(metadata["tafa"], what="the tafa header")
    except (ValueError, RecursionError) as error:
        raise FingerprintError(f"{source} has an unreadable tafa header ({one_line(error)[:200]}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise FingerprintError(f"{source} is not a tafa fingerprint file.")
    if header.get("version") != VERSION:
        raise FingerprintError(f"{source} has format version {str(header.get('version'))[:40]}; this tafa reads "
                               f"version {VERSION}.")
    return header


def check_header(header: dict[str, Any], *, source: str) -> None:
    """Refuse a header whose numbers would size an array beyond the module's limits (shapes,
    probe and direction counts, seed), before anything is built from it. Only fields present
    are checked; whether the header is complete is the orchestration's to check."""
    def refuse(field: str, value: Any, must_be: str) -> FingerprintError:
        return FingerprintError(f"{source} has a malformed header: {field} must be {must_be}; it is "
                                f"{str(value)[:80]}.")

    for field in ("input_shape", "output_shape"):
        if field not in header:
            continue
        shape = header[field]
        if not (isinstance(shape, list) and 1 <= len(shape) <= MAX_DIMENSIONS and all(_count(s, 1) for s in shape)
                and math.prod(shape) <= MAX_FEATURES):
            raise refuse(field, shape, f"a list of 1 to {MAX_DIMENSIONS} positive integers whose product is at most "
                                       f"{MAX_FEATURES}")
    if "seed" in header and not (_count(header["seed"]) and header["seed"] < 2 ** 63):
        raise refuse("seed", header["seed"], "an integer in [0, 2^63)")
    scheme = header.get("scheme")
    if isinstance(scheme, dict):
        for field in ("points", "directions"):
            if field in scheme and not (_count(scheme[field]) and scheme[field] <= MAX_QUERIES):
                raise refuse(f"scheme.{field}", scheme[field], f"an integer in [0, {MAX_QUERIES}]")
    domain = header.get("domain")
    if isinstance(domain, dict) and "shape" in domain:
        shape = domain["shape"]
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(_count(s, 1) for s in shape)
                and math.prod(shape) <= MAX_FEATURES):
            raise refuse("domain.shape", shape, f"at most {MAX_FEATURES} positive integers' product")


def _count(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value < 2 ** 62


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# ------------------------------------------------------------------------------------ commitments

COMMITMENT_FORMAT = "tafa-commitment"
COMMITMENT_VERSION = 1

#: Suffix of the commitment file written next to a fingerprint file.
COMMITMENT_SUFFIX = ".commitment.json"

#: Largest commitment file read (the domain's bounds are stored per input feature, as in a
#: fingerprint's header).
MAX_COMMITMENT_BYTES = MAX_JSON_BYTES


_Record = TypeVar("_Record", bound="CommitmentRecord")


def commitment_path(fingerprint_path: str | os.PathLike[str]) -> Path:
    """Where the commitment of the fingerprint file ``fingerprint_path`` is written."""
    return Path(str(fingerprint_path) + COMMITMENT_SUFFIX)


@dataclass(frozen=True)
class CommitmentRecord:
    """What a commitment file holds (see :mod:`tafa.commitment`): a fingerprint's hashes, what
    made it, and when the commitment was made. ``fingerprint`` arguments are
    :class:`~tafa.fingerprint.Fingerprint` objects (read by their attributes)."""

    fingerprint_sha256: str
    probe_sha256: str
    owner_sha256: str
    scheme: dict[str, Any]
    domain: dict[str, Any]
    seed: int
    points: int
    directions: int
    input_shape: list[int]
    fingerprint_created: str
    created: str
    tafa_version: str
    environment: dict[str, str]

    @classmethod
    def of(cls: type[_Record], fingerprint: Any) -> _Record:
        """The commitment to ``fingerprint``, made now."""
        stored = fingerprint.probes.directions
        points = fingerprint.meta.get("requested_points", len(fingerprint.probes))
        directions = fingerprint.meta.get("requested_directions", 0 if stored is None else int(stored.shape[1]))
        return cls(fingerprint.sha256, fingerprint.probe_sha256, fingerprint.owner_sha256,
                   fingerprint.scheme.to_dict(), fingerprint.domain.to_dict(), int(fingerprint.seed),
                   int(points), int(directions),
                   [int(s) for s in fingerprint.input_shape], fingerprint.created,
                   _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), tafa_version(), environment())

    def to_dict(self) -> dict[str, Any]:
        return {"format": COMMITMENT_FORMAT, "version": COMMITMENT_VERSION, **asdict(self)}

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()

    @property
    def digest(self) -> str:
        """SHA-256 of the commitment (canonical JSON): the value to publish or timestamp."""
        return hashlib.sha256(canonical(self.to_dict())).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the commitment as JSON, atomically; returns its path."""
        return write_atomically(path, self.to_bytes())

    @classmethod
    def load(cls: type[_Record], path: str | os.PathLike[str], *, digest: str | None = None) -> _Record:
        """Read a commitment file (:class:`FingerprintError` if unreadable); with ``digest``
        (the published value) refuse one whose :attr:`digest` differs (:class:`TamperedFingerprint`)."""
        raw = read_regular(path, limit=MAX_COMMITMENT_BYTES, what="Commitment file", error=FingerprintError)
        try:
            data = strict_json(raw, what="the commitment")
            if not isinstance(data, dict) or data.get("format") != COMMITMENT_FORMAT:
                raise FingerprintError(f"{str(path)!r} is not a tafa commitment file.")
            if data.get("version") != COMMITMENT_VERSION:
                raise FingerprintError(f"{str(path)!r} has commitment format version {data.get('version')!r}; "
                                       f"this tafa reads version {COMMITMENT_VERSION}.")
            commitment = cls(**{f.name: data[f.name] for f in fields(cls)})
            commitment._check_types()
        except TafaError:
            raise
        except Exception as error:
            raise FingerprintError(f"{str(path)!r} is not a readable tafa commitment "
                                   f"({type(error).__name__}: {one_line(error)}).") from None
        if digest is not None and commitment.digest != digest.strip().lower():
            raise TamperedFingerprint(f"Commitment {str(path)!r} has digest {commitment.digest}, not the published "
                                      f"{digest.strip()}: the commitment file was changed.")
        return commitment

    def _check_types(self) -> None:
        hexes = (self.fingerprint_sha256, self.probe_sha256, self.owner_sha256)
        if not all(isinstance(h, str) and len(h) == 64 for h in hexes[:2]) or not isinstance(hexes[2], str):
            raise ValueError("hash fields must be SHA-256 hex strings")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.seed, self.points, self.directions)):
            raise ValueError("seed, points and directions must be integers")
        if not all(isinstance(v, dict) for v in (self.scheme, self.domain, self.environment)):
            raise ValueError("scheme, domain and environment must be objects")

    def check(self, fingerprint: Any) -> None:
        """Raise :class:`TamperedFingerprint` unless ``fingerprint`` is the committed one. A
        commitment whose owner model or fingerprint creation time differ from the fingerprint's
        is named as what it most likely is: the commitment of another fingerprint (both content
        hashes in the message); one that agrees on those but not on the content was changed."""
        found = [(name, want, got) for name, want, got in (
            ("content SHA-256", self.fingerprint_sha256, fingerprint.sha256),
            ("reproducible content hash", self.probe_sha256, fingerprint.probe_sha256),
            ("owner model SHA-256", self.owner_sha256, fingerprint.owner_sha256),
            ("seed", self.seed, fingerprint.seed),
        ) if want != got]
        if not found:
            return
        if self.owner_sha256 != fingerprint.owner_sha256 or self.fingerprint_created != fingerprint.created:
            raise TamperedFingerprint(
                f"The fingerprint does not match its commitment: the commitment given is the commitment of another "
                f"fingerprint, {self.fingerprint_sha256} (owner model {self.owner_sha256}, made "
                f"{self.fingerprint_created}), not of this one, {fingerprint.sha256} (owner model "
                f"{fingerprint.owner_sha256}, made {fingerprint.created}). Pass the "
                f"commitment written beside this fingerprint (its file name + {COMMITMENT_SUFFIX}); if the two were "
                "meant to be the same fingerprint, it was changed after it was committed.")
        name, want, got = found[0]
        raise TamperedFingerprint(f"The fingerprint does not match its commitment (made {self.created}): its "
                                  f"{name} is {got}, the commitment says {want}. The fingerprint was changed "
                                  "after it was committed.")


def environment() -> dict[str, str]:
    """Versions of what computes probes and signatures (Python, numpy, scipy, torch, onnxruntime, CPU)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "machine": platform.machine()}
    for package in ("numpy", "scipy", "torch", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found


def write_fingerprint(path: str | os.PathLike[str], fingerprint: Any, *, overwrite: bool = False
                      ) -> tuple[Path, CommitmentRecord]:
    """Write ``fingerprint`` to ``path`` and its commitment (made now) to :func:`commitment_path`
    beside it, each atomically: what :meth:`~tafa.fingerprint.Fingerprint.save` and ``tafa
    fingerprint --out`` do. Unless ``overwrite``, an existing fingerprint or commitment file is
    refused (:class:`~tafa.errors.InvalidParameter`) before anything is written; the commitment
    is put in place only once the fingerprint is written (a failure leaves neither new file)."""
    target, beside = Path(path), commitment_path(path)
    refuse_overwrite(target, beside, overwrite=overwrite)
    data = fingerprint.to_bytes()
    commitment = CommitmentRecord.of(fingerprint)
    pending = commitment.save(beside.with_name(f".{beside.name}.pending"))  # in place once the fingerprint is
    try:
        write_atomically(target, data)
        os.replace(pending, beside)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    return target, commitment


def refuse_overwrite(*paths: str | os.PathLike[str], overwrite: bool, flag: str = "overwrite=True") -> None:
    """One line naming ``flag`` when a fingerprint or its commitment would be overwritten."""
    existing = [str(path) for path in paths if Path(path).exists()]
    if existing and not overwrite:
        raise InvalidParameter(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                               f"refusing to overwrite a fingerprint or its commitment (pass {flag} to replace "
                               "them).")
