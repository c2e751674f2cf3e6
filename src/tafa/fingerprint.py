"""The fingerprint: what the owner keeps and registers, and how a suspect is checked against it.

A :class:`Fingerprint` holds the domain, the probes, the owner's signature at those probes,
the scheme that made them and the owner model's SHA-256. It is saved as one safetensors
file (no pickle anywhere) whose JSON header carries the metadata and the SHA-256 of the
whole content; :meth:`Fingerprint.load` refuses a file whose content does not match it.

>>> from tafa.bench.architectures import build
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> fp = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2)
>>> fp.verify(owner).decision   # no references: the score is reported, no decision is made
'undecided'
>>> round(fp.score(owner).value, 6)
1.0
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .decide.similarity import Score
from .decide.threshold import Calibration, calibrate
from .decide.verdict import Verdict
from .domain import Domain, domain_from_dict, parse_domain
from .errors import FingerprintError, ShapeMismatch, TamperedFingerprint, check_param
from .models.base import Model, TorchModel
from .probes.base import Probes
from .scheme import DEFAULT_SCHEME, Scheme, get_scheme
from .signature.base import Signature

FORMAT = "tafa-fingerprint"
VERSION = 1

ModelLike = Model | torch.nn.Module


def as_model(model: ModelLike, input_shape: tuple[int, ...] | None, name: str | None = None) -> Model:
    """Wrap an ``nn.Module`` as a :class:`~tafa.models.Model`; pass a Model through."""
    if isinstance(model, Model):
        return model
    if isinstance(model, torch.nn.Module):
        if input_shape is None:
            raise ShapeMismatch("A torch module needs its input shape (input_shape=...).")
        return TorchModel(model, tuple(input_shape), name=name)
    raise TypeError(f"Expected a tafa Model or a torch.nn.Module, got {type(model).__name__}.")


def _canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def content_hash(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the header (without its own hash) and every array (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(_canonical({k: v for k, v in header.items() if k != "content_sha256"}))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(name.encode())
        digest.update(str(array.dtype).encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_atomically(path: str | os.PathLike[str], write: Any) -> None:
    """Call ``write(temp_path)`` then move the temp file onto ``path`` (nothing half-written)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class Fingerprint:
    """A fingerprint of one owner model under one scheme (see module doc)."""

    scheme: Scheme
    domain: Domain
    probes: Probes
    owner_signature: Signature
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    owner_sha256: str
    created: str
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ owner side
    @classmethod
    def create(cls, model: ModelLike, domain: Domain | str, *, scheme: str | Scheme = DEFAULT_SCHEME,
               points: int | None = None, directions: int | None = None, seed: int = 0,
               input_shape: tuple[int, ...] | None = None, progress: bool = False,
               data: np.ndarray | None = None) -> "Fingerprint":
        """Fingerprint ``model`` over ``domain`` with no data.

        ``model`` is a :class:`~tafa.models.Model` or an ``nn.Module`` (then ``input_shape``
        is needed unless ``domain`` is a :class:`~tafa.domain.Domain`). ``points`` and
        ``directions`` default to the scheme's. ``data`` is only for baseline schemes whose
        papers start from the owner's data; the project's method needs none.
        """
        scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
        if input_shape is None and isinstance(domain, Domain):
            input_shape = domain.shape
        owner = as_model(model, input_shape)
        if isinstance(domain, str):
            domain = parse_domain(domain, owner.input_shape)
        if domain.shape != owner.input_shape:
            raise ShapeMismatch(f"The domain has shape {domain.shape} but the model takes {owner.input_shape}.")
        n = scheme.points if points is None else points
        k = scheme.directions if directions is None else directions
        check_param("points", n, "an integer >= 2", isinstance(n, int) and n >= 2, caller="Fingerprint.create")
        needs_directions = scheme.directions > 0
        d = int(np.prod(owner.input_shape))
        check_param("directions", k, f"an integer in [1, {d}] for scheme {scheme.name!r}",
                    (not needs_directions) or (isinstance(k, int) and 1 <= k <= d), caller="Fingerprint.create")
        strategy, signature, _ = scheme.build()
        started = time.perf_counter()
        probes = strategy.select(owner, domain, n=n, k=k if needs_directions else 0, seed=seed, progress=progress,
                                 data=data)
        before = owner.queries
        owner_signature = signature.measure(owner, probes)
        seconds = time.perf_counter() - started
        meta = {"fingerprint_seconds": seconds, "owner_queries": owner.queries - before,
                "owner_name": owner.name, "tafa_version": _version()}
        return cls(scheme, domain, probes, owner_signature, owner.input_shape, owner.output_shape,
                   owner.content_hash(), _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   seed, meta)

    # ------------------------------------------------------------------ file format
    def _arrays(self) -> dict[str, np.ndarray]:
        # C order matters: safetensors writes an array's buffer as it lies in memory.
        arrays = {f"probes.{key}": np.ascontiguousarray(value, dtype=np.float64)
                  for key, value in self.probes.arrays().items()}
        arrays.update({f"owner.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.owner_signature.items()})
        return arrays

    def _header(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "scheme": self.scheme.to_dict(),
                "domain": self.domain.to_dict(), "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "owner_sha256": self.owner_sha256,
                "created": self.created, "seed": self.seed, "probes_info": self.probes.info, "meta": self.meta}

    @property
    def sha256(self) -> str:
        """SHA-256 of this fingerprint's content (what a commitment publishes)."""
        return content_hash(self._header(), self._arrays())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fingerprint file atomically; returns its path."""
        from safetensors.numpy import save_file

        header = self._header()
        arrays = self._arrays()
        header["content_sha256"] = content_hash(header, arrays)
        write_atomically(path, lambda temp: save_file(arrays, temp, metadata={"tafa": json.dumps(header)}))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Fingerprint":
        """Read and check a fingerprint file (:class:`FingerprintError` if unreadable,
        :class:`TamperedFingerprint` if its content does not match its hash)."""
        from safetensors import safe_open

        if not Path(path).is_file():
            raise FingerprintError(f"Fingerprint file {str(path)!r} does not exist.")
        try:
            with safe_open(str(path), framework="np") as handle:
                metadata = handle.metadata() or {}
                arrays = {key: handle.get_tensor(key) for key in handle.keys()}
            header = json.loads(metadata["tafa"])
        except Exception as error:  # safetensors raises several types on corrupt input
            raise FingerprintError(f"{str(path)!r} is not a readable tafa fingerprint "
                                   f"({type(error).__name__}: {' '.join(str(error).split())[:200]}).") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise FingerprintError(f"{str(path)!r} is not a tafa fingerprint file.")
        if header.get("version") != VERSION:
            raise FingerprintError(f"{str(path)!r} has format version {header.get('version')!r}; "
                                   f"this tafa reads version {VERSION}.")
        if content_hash(header, arrays) != header.get("content_sha256"):
            raise TamperedFingerprint(f"{str(path)!r} does not match its own SHA-256: the file was "
                                      "modified after it was written.")
        try:
            probes = Probes.from_arrays({key[7:]: value for key, value in arrays.items() if key.startswith("probes.")},
                                        header["probes_info"])
            signature = {key[6:]: value for key, value in arrays.items() if key.startswith("owner.")}
            return cls(Scheme.from_dict(header["scheme"]), domain_from_dict(header["domain"]), probes, signature,
                       tuple(header["input_shape"]), tuple(header["output_shape"]), header["owner_sha256"],
                       header["created"], int(header["seed"]), dict(header.get("meta", {})))
        except (KeyError, TypeError, ValueError) as error:
            raise FingerprintError(f"{str(path)!r} has a malformed header ({error}).") from None

    # ------------------------------------------------------------------ verifier side
    def queries(self) -> int:
        """Queries one verification sends to a suspect."""
        _, signature, _ = self.scheme.build()
        return signature.queries(self.probes)

    def check_shapes(self, suspect: Model) -> None:
        """Raise :class:`ShapeMismatch` unless ``suspect`` takes and returns what the owner did."""
        if suspect.input_shape != self.input_shape:
            raise ShapeMismatch(f"Suspect {suspect.name} takes inputs of shape {suspect.input_shape}; "
                                f"the fingerprint's owner took {self.input_shape}.")
        if int(np.prod(suspect.output_shape)) != int(np.prod(self.output_shape)):
            raise ShapeMismatch(f"Suspect {suspect.name} returns outputs of shape {suspect.output_shape}; "
                                f"the fingerprint's owner returned {self.output_shape}.")

    def measure(self, suspect: ModelLike) -> Signature:
        """The suspect's signature at this fingerprint's probes (black box: outputs only)."""
        model = as_model(suspect, self.input_shape)
        self.check_shapes(model)
        _, signature, _ = self.scheme.build()
        return signature.measure(model, self.probes)

    def compare(self, signature: Signature) -> Score:
        """Similarity of a measured signature to the owner's."""
        _, _, similarity = self.scheme.build()
        return similarity.compare(self.owner_signature, signature)

    def score(self, suspect: ModelLike) -> Score:
        """Similarity of ``suspect`` to the owner at this fingerprint's probes."""
        return self.compare(self.measure(suspect))

    def calibrate(self, references: Iterable[ModelLike], alpha: float = 0.01,
                  progress: bool = False) -> Calibration:
        """Threshold from negative references (independently trained models of the same task)."""
        scores = self.scores(references, progress=progress, desc="references")
        return calibrate(scores, alpha)

    def scores(self, models: Iterable[ModelLike], progress: bool = False, desc: str = "models") -> list[float]:
        """Scores of several models (with a progress bar)."""
        models = list(models)
        return [self.score(model).value for model in tqdm(models, desc=desc, disable=not progress, leave=False)]

    def verify(self, suspect: ModelLike, references: Iterable[ModelLike] | None = None, *,
               positives: Iterable[ModelLike] | None = None, alpha: float = 0.01,
               calibration: Calibration | None = None, progress: bool = False) -> Verdict:
        """Verify ``suspect`` (black box): score it, calibrate on ``references``, decide.

        Without references (and without a ready ``calibration``) the decision is
        ``"undecided"``; ``positives`` (derived copies) report the margin on the other side.
        """
        model = as_model(suspect, self.input_shape)
        self.check_shapes(model)
        started = time.perf_counter()
        before = model.queries
        score = self.score(model)
        queries = model.queries - before
        seconds = time.perf_counter() - started
        references = list(references or [])
        if calibration is None and references:
            calibration = self.calibrate(references, alpha, progress=progress)
        positive_scores = self.scores(positives, progress=progress, desc="positives") if positives else None
        notes = [] if calibration is not None else ["no references: score reported, no decision made"]
        if "black-box" in str(self.probes.info.get("analysis", "")):
            notes.append(f"fingerprint made black-box: {self.probes.info['analysis']}")
        return Verdict.decide(score, calibration, queries=queries, seconds=seconds, suspect=model.describe(),
                              scheme=self.scheme.name, fingerprint_sha256=self.sha256,
                              positive_scores=positive_scores, notes=notes)

    def describe(self) -> dict[str, Any]:
        """A summary for reports and the command line."""
        return {"scheme": self.scheme.name, "domain": self.domain.describe(), "points": len(self.probes),
                "directions": 0 if self.probes.directions is None else int(self.probes.directions.shape[1]),
                "queries_per_verification": self.queries(), "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "owner_sha256": self.owner_sha256,
                "created": self.created, "analysis": self.probes.info.get("analysis"),
                "sha256": self.sha256, **{k: v for k, v in self.meta.items() if k != "tafa_version"}}


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("tafa")
    except Exception:  # not installed (source tree)
        return "0+unknown"
