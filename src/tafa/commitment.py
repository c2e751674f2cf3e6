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

import os
from typing import Any

import numpy as np

from .errors import TamperedFingerprint
from .fingerprint import Fingerprint, ModelLike
from .fingerprint_file import (COMMITMENT_FORMAT as FORMAT, COMMITMENT_SUFFIX as SUFFIX,  # noqa: F401
                               COMMITMENT_VERSION as VERSION, MAX_COMMITMENT_BYTES as MAX_BYTES, CommitmentRecord,
                               commitment_path, environment)


class Commitment(CommitmentRecord):
    """A published promise about one fingerprint (see module doc): the file's fields, digest,
    reading and checking are :class:`~tafa.fingerprint_file.CommitmentRecord`'s (the format);
    this adds re-creating the committed fingerprint."""

    # ------------------------------------------------------------------ dispute
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


__all__ = ["Commitment", "UNVERIFIED", "VERIFIED", "check_commitment", "commitment_path",
           "describe_check", "environment"]
