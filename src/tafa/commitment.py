"""Commitments: what an owner publishes before any dispute, so that a fingerprint is evidence.

A fingerprint file proves nothing by itself: whoever holds it can rewrite it and save it
again with a fresh internal hash. A :class:`Commitment` is a small JSON file written next to
the fingerprint when it is made (``owner.tafa.commitment.json``) that binds

- the fingerprint's full content hash (:attr:`~tafa.fingerprint.Fingerprint.sha256`),
- its reproducible content hash (:attr:`~tafa.fingerprint.Fingerprint.probe_sha256`: scheme,
  domain, seed, probes, owner signature; no times),
- the owner model's SHA-256, the scheme, domain, seed, probe and direction counts,
- the creation time (UTC), the tafa version and the versions of the libraries that computed
  the probes (re-deriving them bit for bit needs the same ones).

Its own SHA-256 (:attr:`Commitment.digest`) is the one value to publish or timestamp. In a
dispute, :meth:`Commitment.check` shows that a fingerprint is the committed one
(:class:`~tafa.errors.TamperedFingerprint` otherwise) and :meth:`Commitment.reproduce`
re-creates it from the committed owner model and seed: its probes are then not something
chosen after the suspect appeared. ``docs/security.md`` says what this does and does not prove.

>>> from tafa import Fingerprint
>>> from tafa.bench.architectures import build
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> fp = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2, seed=7)
>>> commitment = Commitment.of(fp)
>>> commitment.check(fp) is None and commitment.seed == 7
True
>>> commitment.reproduce(owner).probe_sha256 == fp.probe_sha256
True
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FingerprintError, TafaError, TamperedFingerprint, one_line
from .fingerprint import Fingerprint, ModelLike
from .fingerprint_file import tafa_version
from .storage import MAX_JSON_BYTES, strict_json
from .storage import read_regular, write_atomically

FORMAT = "tafa-commitment"
VERSION = 1

#: Suffix of the commitment file written next to a fingerprint file.
SUFFIX = ".commitment.json"

#: Largest commitment file read (the domain's bounds are stored per input feature, as in a
#: fingerprint's header).
MAX_BYTES = MAX_JSON_BYTES


def commitment_path(fingerprint_path: str | os.PathLike[str]) -> Path:
    """Where ``tafa fingerprint`` writes the commitment of ``fingerprint_path``."""
    return Path(str(fingerprint_path) + SUFFIX)


@dataclass(frozen=True)
class Commitment:
    """A published promise about one fingerprint (see module doc)."""

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
    def of(cls, fingerprint: Fingerprint) -> "Commitment":
        """The commitment to ``fingerprint``, made now."""
        stored = fingerprint.probes.directions
        points = fingerprint.meta.get("requested_points", len(fingerprint.probes))
        directions = fingerprint.meta.get("requested_directions", 0 if stored is None else int(stored.shape[1]))
        return cls(fingerprint.sha256, fingerprint.probe_sha256, fingerprint.owner_sha256,
                   fingerprint.scheme.to_dict(), fingerprint.domain.to_dict(), int(fingerprint.seed),
                   int(points), int(directions),
                   [int(s) for s in fingerprint.input_shape], fingerprint.created,
                   _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), tafa_version(), environment())

    # ------------------------------------------------------------------ file
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @property
    def digest(self) -> str:
        """SHA-256 of the commitment (canonical JSON): the value to publish or timestamp."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the commitment as JSON, atomically; returns its path."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        return write_atomically(path, text.encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, digest: str | None = None) -> "Commitment":
        """Read a commitment file (:class:`FingerprintError` if unreadable); with ``digest``
        (the published value) refuse one whose :attr:`digest` differs (:class:`TamperedFingerprint`)."""
        raw = read_regular(path, limit=MAX_BYTES, what="Commitment file", error=FingerprintError)
        try:
            data = strict_json(raw, what="the commitment")
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise FingerprintError(f"{str(path)!r} is not a tafa commitment file.")
            if data.get("version") != VERSION:
                raise FingerprintError(f"{str(path)!r} has commitment format version {data.get('version')!r}; "
                                       f"this tafa reads version {VERSION}.")
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

    # ------------------------------------------------------------------ dispute
    def check(self, fingerprint: Fingerprint) -> None:
        """Raise :class:`TamperedFingerprint` unless ``fingerprint`` is the committed one."""
        found = [(name, want, got) for name, want, got in (
            ("content SHA-256", self.fingerprint_sha256, fingerprint.sha256),
            ("reproducible content hash", self.probe_sha256, fingerprint.probe_sha256),
            ("owner model SHA-256", self.owner_sha256, fingerprint.owner_sha256),
            ("seed", self.seed, fingerprint.seed),
        ) if want != got]
        if found:
            name, want, got = found[0]
            raise TamperedFingerprint(f"The fingerprint does not match its commitment (made {self.created}): its "
                                      f"{name} is {got}, the commitment says {want}. The fingerprint was changed "
                                      "after it was committed.")

    def reproduce(self, owner: ModelLike, domain: Any = None, *, input_shape: tuple[int, ...] | None = None,
                  data: np.ndarray | None = None, progress: bool = False, parent: ModelLike | None = None
                  ) -> Fingerprint:
        """Re-create the fingerprint from the committed ``owner`` model with the committed scheme,
        domain (or ``domain``), seed and sizes; return it if its reproducible content hash equals
        the committed one, else raise :class:`TamperedFingerprint`. A fingerprint made with a
        shared public ``parent`` is reproduced with the same parent (its measurement is hashed; the
        data-free parent references, which the hash does not cover, are not made again).

        The owner model must be the committed one (its SHA-256 is compared first). The hash is
        exact on the same software stack; see ``docs/security.md`` for other stacks.
        """
        from .domain import domain_from_dict
        from .fingerprint import as_model
        from .scheme import Scheme

        model = as_model(owner, tuple(input_shape or self.input_shape))
        if model.content_hash() != self.owner_sha256:
            raise TamperedFingerprint(f"The model given has SHA-256 {model.content_hash()}; the commitment names "
                                      f"owner {self.owner_sha256}. Reproduce from the committed owner model file.")
        scheme = Scheme.from_dict(self.scheme)
        fingerprint = Fingerprint.create(model, domain if domain is not None else domain_from_dict(self.domain),
                                         scheme=scheme, points=self.points,
                                         directions=self.directions if scheme.directions > 0 else None,
                                         seed=self.seed, progress=progress, data=data, parent=parent,
                                         parent_references=0, time_budget=None)
        if fingerprint.probe_sha256 != self.probe_sha256:
            here = environment()
            differs = sorted(key for key in set(here) | set(self.environment)
                             if here.get(key) != self.environment.get(key))
            hint = (f" This machine's {', '.join(differs)} differ from the committed environment, which can change "
                    "the last bits." if differs else "")
            raise TamperedFingerprint(f"Re-creating the fingerprint from the committed owner model and seed "
                                      f"{self.seed} gives reproducible content hash {fingerprint.probe_sha256}, not "
                                      f"the committed {self.probe_sha256}.{hint}")
        return fingerprint


#: What a commitment checked without a published digest is: anyone can write one, dated as they like.
UNVERIFIED = "unverified: self-made commitment"
#: What a commitment whose digest equals the published one is.
VERIFIED = "verified"


def check_commitment(fingerprint: Fingerprint, path: str | os.PathLike[str], *,
                     digest: str | None = None) -> dict[str, Any]:
    """Check ``fingerprint`` against the commitment file ``path`` and report how far that goes.

    The fingerprint must match what the commitment states (:class:`TamperedFingerprint`
    otherwise). Only with ``digest``, the value the owner published or timestamped before the
    dispute, is the commitment itself evidence: then ``status`` is :data:`VERIFIED` and the
    report carries the commitment's creation time. Without it the commitment could have been
    written yesterday and dated 2019: ``status`` is :data:`UNVERIFIED` and no date is reported.
    """
    commitment = Commitment.load(path, digest=digest)
    commitment.check(fingerprint)
    report: dict[str, Any] = {"path": str(path), "sha256": commitment.digest, "digest_checked": digest is not None,
                              "matches": True, "status": VERIFIED if digest is not None else UNVERIFIED}
    if digest is not None:
        report["created"] = commitment.created
    return report


def describe_check(report: dict[str, Any]) -> str:
    """One line for the terminal from a :func:`check_commitment` report."""
    if report["status"] == VERIFIED:
        return (f"commitment: verified: the fingerprint matches commitment {report['sha256']}, the published digest, "
                f"made {report['created']}")
    return (f"commitment: {UNVERIFIED}: the fingerprint matches commitment {report['sha256']}, which was not checked "
            "against a published digest (--commitment-digest); its stated date proves nothing")


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
