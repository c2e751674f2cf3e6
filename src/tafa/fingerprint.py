"""The fingerprint: what the owner keeps and registers, and how a suspect is checked against it.

A :class:`Fingerprint` holds the domain, the probes, the owner's signature at those probes,
the scheme that made them and the owner model's SHA-256. It is saved as one safetensors
file (no pickle anywhere) whose JSON header carries the metadata and the SHA-256 of the
whole content; :meth:`Fingerprint.load` refuses a file whose content does not match it, or
whose header and arrays do not fit together.

Two hashes identify a fingerprint: :attr:`Fingerprint.sha256` over everything (creation
time and timings included) and :attr:`Fingerprint.probe_sha256`, the *reproducible content
hash*, over the scheme, domain, seed, probes and owner signature only, which
``Fingerprint.create`` re-derives exactly from the same owner model and seed
(see :mod:`tafa.commitment`).

>>> from tafa.bench.architectures import build
>>> owner = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
>>> fp = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2)
>>> fp.verify(owner).decision   # no references: the score is reported, no decision is made
'undecided'
>>> round(fp.score(owner).value, 6)
1.0
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .attacks.references import References
from .decide.learned import LearnedSimilarity
from .decide.similarity import Score, Similarity
from .decide.threshold import Calibration, calibrate
from .decide.verdict import Verdict
from .domain import Domain, domain_from_dict, parse_domain
from .errors import FingerprintError, InvalidParameter, ShapeMismatch, TafaError, TamperedFingerprint, check_param
from .models.base import Model, TorchModel
from .probes.base import Probes
from .scheme import DEFAULT_SCHEME, Scheme, get_scheme
from .signature.base import Signature

FORMAT = "tafa-fingerprint"
VERSION = 1

#: Header fields covered by :attr:`Fingerprint.probe_sha256` (with every array): what
#: ``Fingerprint.create`` derives from the owner model and the seed, nothing run-dependent.
REPRODUCIBLE_FIELDS = ("scheme", "domain", "seed")

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
    #: Fitted parameters of a learned similarity (empty for the others), saved with the file.
    verifier: dict[str, np.ndarray] = field(default_factory=dict)

    # ------------------------------------------------------------------ owner side
    @classmethod
    def create(cls, model: ModelLike, domain: Domain | str, *, scheme: str | Scheme = DEFAULT_SCHEME,
               points: int | None = None, directions: int | None = None, seed: int = 0,
               input_shape: tuple[int, ...] | None = None, progress: bool = False,
               data: np.ndarray | None = None, references: References | None = None) -> "Fingerprint":
        """Fingerprint ``model`` over ``domain`` with no data.

        ``model`` is a :class:`~tafa.models.Model` or an ``nn.Module`` (then ``input_shape``
        is needed unless ``domain`` is a :class:`~tafa.domain.Domain`). ``points`` and
        ``directions`` default to the scheme's. ``data`` is only for baseline schemes whose
        papers start from the owner's data; the project's method needs none.

        A scheme with a learned similarity fits it on ``references`` (positive and negative
        reference models, measured black-box at the probes); a ``"data-free"`` scheme makes
        them itself from the owner and the domain when none are given
        (:func:`tafa.attacks.references.data_free_references`).
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
        strategy, signature, similarity = scheme.build()
        started = time.perf_counter()
        if references is None and (isinstance(similarity, LearnedSimilarity) or scheme.references == "data-free"):
            references = _default_references(scheme, owner, domain, seed)
        probes = strategy.select(owner, domain, n=n, k=k if needs_directions else 0, seed=seed, progress=progress,
                                 data=data, references=references)
        before = owner.queries
        owner_signature = signature.measure(owner, probes)
        verifier: dict[str, np.ndarray] = {}
        if isinstance(similarity, LearnedSimilarity):
            assert references is not None
            measured = [[signature.measure(as_model(m, owner.input_shape), probes) for m in models]
                        for models in (references.positives, references.negatives)]
            similarity.fit(owner_signature, measured[0], measured[1], seed=seed)
            verifier = similarity.state()
        seconds = time.perf_counter() - started
        meta = {"fingerprint_seconds": seconds, "owner_queries": owner.queries - before,
                "owner_name": owner.name, "tafa_version": _version(), "requested_points": n,
                "requested_directions": k if needs_directions else 0}
        if references is not None and (isinstance(similarity, LearnedSimilarity) or "selected" in probes.info):
            meta.update(reference_positives=len(references.positives), reference_negatives=len(references.negatives))
            if references.provenance:  # data-free references: how far each moved, how well it works
                meta["references"] = references.provenance
        return cls(scheme, domain, probes, owner_signature, owner.input_shape, owner.output_shape,
                   owner.content_hash(), _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   seed, meta, verifier)

    # ------------------------------------------------------------------ file format
    def _arrays(self) -> dict[str, np.ndarray]:
        # C order matters: safetensors writes an array's buffer as it lies in memory.
        arrays = {f"probes.{key}": np.ascontiguousarray(value, dtype=np.float64)
                  for key, value in self.probes.arrays().items()}
        arrays.update({f"owner.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.owner_signature.items()})
        arrays.update({f"verifier.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.verifier.items()})
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

    @property
    def probe_sha256(self) -> str:
        """Reproducible content hash: SHA-256 over the scheme, domain, seed, probes and owner
        signature only (no creation time, timings, names or versions), so that re-creating the
        fingerprint from the same owner model and seed gives the same value."""
        header = self._header()
        return content_hash({key: header[key] for key in REPRODUCIBLE_FIELDS}, self._arrays())

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
            verifier = {key[9:]: value for key, value in arrays.items() if key.startswith("verifier.")}
            fingerprint = cls(Scheme.from_dict(header["scheme"]), domain_from_dict(header["domain"]), probes,
                              signature, tuple(header["input_shape"]), tuple(header["output_shape"]),
                              header["owner_sha256"], header["created"], header["seed"], header.get("meta", {}),
                              verifier)
            fingerprint._check_consistent()
        except TafaError:
            raise
        except Exception as error:  # a header that hashes right but does not fit together
            raise FingerprintError(f"{str(path)!r} has a malformed header "
                                   f"({type(error).__name__}: {' '.join(str(error).split())[:200]}).") from None
        return fingerprint

    def _check_consistent(self) -> None:
        """Raise (``ValueError``) unless fields have their types and arrays fit the scheme."""
        def ints(shape: Any) -> bool:
            return all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)

        checks = [
            (ints(self.input_shape) and len(self.input_shape) >= 1, "input_shape"),
            (ints(self.output_shape), "output_shape"),
            (isinstance(self.seed, int) and not isinstance(self.seed, bool), "seed"),
            (isinstance(self.owner_sha256, str) and isinstance(self.created, str), "owner_sha256/created"),
            (isinstance(self.meta, dict) and isinstance(self.probes.info, dict), "meta/probes_info"),
            (self.domain.shape == self.input_shape, "domain shape"),
        ]
        for ok, name in checks:
            if not ok:
                raise ValueError(f"field {name} is malformed")
        signature = self.scheme.make_signature()
        probes = self.probes
        for name, array in {**probes.arrays(), **self.owner_signature, **self.verifier}.items():
            if array.dtype != np.float64 or not np.all(np.isfinite(array)):
                raise ValueError(f"array {name!r} is not finite float64")
        learned = isinstance(self.scheme.make_similarity(), LearnedSimilarity)
        if learned != bool(self.verifier):
            raise ValueError("the verifier's parameters do not fit the scheme (learned similarity without them, "
                             "or parameters for a similarity that learns nothing)")
        if learned:
            self.similarity()
        if probes.points.ndim < 1 or probes.points.shape[1:] != self.input_shape or len(probes.points) < 1:
            raise ValueError(f"probe points of shape {probes.points.shape} do not fit input shape {self.input_shape}")
        outputs = np.random.default_rng(0).normal(size=(signature.queries(probes), *self.output_shape))
        expected = signature.assemble(probes, outputs)
        got = {key: value.shape for key, value in self.owner_signature.items()}
        if {key: np.shape(value) for key, value in expected.items()} != got:
            raise ValueError(f"owner signature {got} does not fit the probes and scheme {self.scheme.name!r}")

    # ------------------------------------------------------------------ verifier side
    def queries(self) -> int:
        """Queries one verification sends to a suspect."""
        return self.scheme.make_signature().queries(self.probes)

    def check_shapes(self, suspect: Model) -> None:
        """Raise :class:`ShapeMismatch` unless ``suspect`` takes and returns what the owner did
        (and :class:`InvalidParameter` for a labels-only suspect this scheme cannot use)."""
        if suspect.input_shape != self.input_shape:
            raise ShapeMismatch(f"Suspect {suspect.name} takes inputs of shape {suspect.input_shape}; "
                                f"the fingerprint's owner took {self.input_shape}.")
        if getattr(suspect, "labels_only", False):
            if not self.scheme.make_signature().accepts_labels:
                from .scheme import SCHEMES

                usable = sorted(name for name, s in SCHEMES.items() if s.make_signature().accepts_labels)
                raise InvalidParameter(f"Suspect {suspect.name} answers labels only; scheme {self.scheme.name!r} needs "
                                       f"its outputs. Schemes that verify labels-only suspects: {', '.join(usable)} "
                                       "(fingerprint the owner with --scheme NAME).")
            return
        if int(np.prod(suspect.output_shape)) != int(np.prod(self.output_shape)):
            raise ShapeMismatch(f"Suspect {suspect.name} returns outputs of shape {suspect.output_shape}; "
                                f"the fingerprint's owner returned {self.output_shape}.")

    def measure(self, suspect: ModelLike) -> Signature:
        """The suspect's signature at this fingerprint's probes (black box: outputs only)."""
        model = as_model(suspect, self.input_shape)
        self.check_shapes(model)
        signature = self.scheme.make_signature()
        if getattr(model, "labels_only", False):
            return signature.from_labels(self.probes, model(signature.inputs(self.probes)))
        return signature.measure(model, self.probes)

    def similarity(self) -> Similarity:
        """The scheme's similarity, with the fitted parameters of a learned one loaded."""
        similarity = self.scheme.make_similarity()
        if isinstance(similarity, LearnedSimilarity):
            similarity.load_state(self.verifier)
        return similarity

    def compare(self, signature: Signature) -> Score:
        """Similarity of a measured signature to the owner's."""
        return self.similarity().compare(self.owner_signature, signature)

    def refit(self, positives: list[Signature], negatives: list[Signature]) -> "Fingerprint":
        """A copy whose learned similarity is refitted on other reference signatures (same
        probes): how the benchmark scores a verifier that never saw an attack family."""
        similarity = self.similarity()
        if not isinstance(similarity, LearnedSimilarity):
            raise ValueError(f"Scheme {self.scheme.name!r} has no learned similarity to refit.")
        similarity.fit(self.owner_signature, positives, negatives, seed=self.seed)
        return replace(self, verifier=similarity.state())

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
        consistency = getattr(model, "consistency", None)  # services re-ask a few inputs
        if consistency is not None and consistency.note():
            notes.append(consistency.note())
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
                **({"probes_selected": self.probes.info["selected"]} if "selected" in self.probes.info else {}),
                "sha256": self.sha256, **{k: v for k, v in self.meta.items() if k != "tafa_version"}}


def _default_references(scheme: Scheme, owner: Model, domain: Domain, seed: int) -> References:
    """Data-free references for a ``"data-free"`` scheme; other learned schemes need them given."""
    module = owner.torch_module()
    if scheme.references != "data-free":
        raise InvalidParameter(f"Scheme {scheme.name!r} learns its decision from reference models: pass "
                               "references=References(positives=[...], negatives=[...]) (or use a data-free scheme).")
    if module is None:
        raise InvalidParameter(f"Scheme {scheme.name!r} makes its references from the owner's weights, but "
                               f"{owner.name} is not available as a torch module.")
    from .attacks.references import data_free_references

    return data_free_references(copy.deepcopy(module).float(), domain, seed=seed)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("tafa")
    except Exception:  # not installed (source tree)
        return "0+unknown"
