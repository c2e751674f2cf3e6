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
>>> fp.verify(owner).decision.value   # no references: the score is reported, no decision is made
'undecided'
>>> round(fp.score(owner).value, 6)
1.0
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from .references import References
from .decide.learned import LearnedSimilarity
from .decide.resolution import Resolution, agreement_resolution, correlation_resolution, grid_resolution
from .decide.similarity import Score, Similarity
from .decide.rule import Rule
from .decide.sequential import LOOK, out_of_reach, reach, stopped_score, stops
from .decide.threshold import Calibration, calibrate, references_needed
from .decide.verdict import Verdict
from .domain import Domain, domain_from_dict, parse_domain
from .errors import (FingerprintError, InvalidParameter, RefusedReference, ShapeMismatch, TafaError,
                     check_param, is_finite_number, one_line)
from .fingerprint_file import (FORMAT, MAX_OUTPUT_VALUES, MAX_QUERIES, VERSION, check_header, content_hash, decode,
                               encode, read, tafa_version, write_fingerprint)
from .models.base import Model, TorchModel
from .probes.base import Analysis, Probes
from .scheme import DEFAULT_SCHEME, ReferenceSource, Scheme, get_scheme
from .signature.base import Signature, relative_to
from .signature.censoring import MIN_INSIDE, at_points, clip_bounds, inside_points
from .signature.consistency import EvasionCheck, check_evasion as check_evasion_of
from .signature.interface import Recognised, assemble_suspect, grid_spacing, measure_suspect
from .signature.derivatives import Derivatives
from .shown_stage import SHOWN_STAGE, ShownStage
from .signature.scales import (COARSE_SCALE, JITTER, SCREEN_LIMIT, SCREEN_PROBES, SCREEN_QUANTILE, SMOOTHED,
                               JitteredDerivatives, bend_of, coarse_decides, coarse_probes, coarse_reason, curvature,
                               curvature_limit, domain_scale, roughness, screen_applies, size_ratios)
from .label_stage import (LABEL_STAGE, decides as label_stage_decides, decides_alone, describe as describe_labels,
                          FREE_MAX_INPUT, FREE_MAX_OUTPUTS, free_label_scheme, free_stage_applies, is_free,
                          label_scheme, owner_inputs, asked_scores)
from .storage import write_atomically
from .weights import UnitLayer, WeightEvidence, compare, layers_from_arrays, stored_layers, suspect_layers

if TYPE_CHECKING:
    import torch

__all__ = ["FORMAT", "VERSION", "Fingerprint", "ModelLike", "as_model", "content_hash", "write_atomically"]

#: Header fields covered by :attr:`Fingerprint.probe_sha256` (with every array): what
#: ``Fingerprint.create`` derives from the owner model and the seed, nothing run-dependent.
REPRODUCIBLE_FIELDS = ("scheme", "domain", "seed")

#: Meta field: the score of the owner's own int8 copy; a reference scoring as close to the owner's
#: own score (within ``1 + COPY_SLACK`` times the copy's distance) is a probable copy of the owner.
OWNER_INT8_SCORE = "owner_int8_score"
COPY_SLACK = 1.0
#: A scheme that scores the owner's own int8 copy further than this below the owner itself
#: cannot single out copies by closeness (ipguard's label matches near the boundary, for one):
#: no reference is then left out as a probable copy (:meth:`Fingerprint.copy_line` is ``None``).
COPY_CLOSE = 0.1

#: Seconds ``Fingerprint.create`` aims to stay within unless told otherwise: over it, the
#: probe strategy's cost plan takes shortcuts (:meth:`~tafa.probes.base.ProbeStrategy.plan`),
#: recorded in the scheme and the metadata. The benchmark's owners are far below it.
DEFAULT_TIME_BUDGET = 60.0

#: Meta field: scores of the data-free references made from a declared parent (the parent and
#: fine-tunes of it on synthetic owner-labelled inputs); ``verify`` calibrates on them when given
#: no references. At most :data:`MAX_PARENT_REFERENCES` of them (checked by the reader).
PARENT_REFERENCE_SCORES = "parent_reference_scores"
MAX_PARENT_REFERENCES = 1000
#: Data-free parent references made by default (with the parent itself: 20, the fewest whose rank
#: bound supports alpha = 0.05).
DEFAULT_PARENT_REFERENCES = 19

#: The weight test's name as a stage of a verdict (its score is ``-log10`` of its exact p-value).
WEIGHT_STAGE = "weights"


def weight_score(p_value: float) -> float:
    """The weight stage's score: ``-log10`` of the order test's exact p-value (at most 300)."""
    return -math.log10(max(p_value, 1e-300))


def weight_p_value(score: float) -> float:
    """The p-value a weight stage's score (:func:`weight_score`) stands for."""
    return float(10.0 ** -max(0.0, score))

#: Prefix of the coarse scale's arrays (:mod:`tafa.signature.scales`) in a fingerprint file.
COARSE = "coarse"
#: The owner's int8 copy's score at the coarse scale (meta; its copy line).
COARSE_INT8_SCORE = "coarse_int8_score"
#: Meta field: how much the owner's own answers bend within its probes' steps
#: (:func:`~tafa.signature.scales.curvature`): a suspect is judged bent only well above it
#: (:func:`~tafa.signature.scales.curvature_limit`).
OWNER_CURVATURE = "owner_curvature"

#: Prefix of a second stage's arrays, and its header's key, in a fingerprint file.
SECOND = "second"
#: The extraction stage of an owner answering a single value or an image (a regressor, a decoder):
#: its outputs at domain draws (:func:`_extraction_stage`).
OUTPUTS_STAGE = "tafa-outputs"
#: Prefix of the label stage's arrays (:mod:`tafa.label_stage`), and its header's key.
LABELS = "labels"
#: Prefix of the extraction stage's arrays (:attr:`Scheme.extraction`), and its header's key.
EXTRACTION = "extraction"
#: Prefix of the data-like stage's arrays (:attr:`Scheme.data_style`), and its header's key.
DATALIKE = "datalike"

#: What the library accepts as a model (torch is imported only when a module is given: verifying
#: a suspect opened as a :class:`Model` needs numpy alone).
ModelLike = Union[Model, "torch.nn.Module"]


def as_model(model: ModelLike, input_shape: tuple[int, ...] | None, name: str | None = None) -> Model:
    """Wrap an ``nn.Module`` as a :class:`~tafa.models.Model`; pass a Model through."""
    if isinstance(model, Model):
        return model
    import torch

    if isinstance(model, torch.nn.Module):
        if input_shape is None:
            raise ShapeMismatch("A torch module needs its input shape (input_shape=...).")
        return TorchModel(model, tuple(input_shape), name=name)
    raise TypeError(f"Expected a tafa Model or a torch.nn.Module, got {type(model).__name__}.")


class _Planned(NamedTuple):
    """A stage of a label-level verification (:meth:`Fingerprint._verify_coarse`), as planned: its
    name, what scores references there, how the suspect is measured, whether references are asked
    through the suspect's interface, and what the verdict says of it when it runs."""

    name: str
    stage: "Fingerprint | ShownStage"
    measure: Callable[[], Score]
    asked_through: bool
    note: str | None = None


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
    #: A shared public parent's signature at the probes (empty: no parent declared). With it,
    #: every signature is compared relative to the parent's (:meth:`relative`): what the owner's
    #: fine-tuning changed, against what the suspect's history changed.
    parent_signature: Signature = field(default_factory=dict)
    #: The owner's first weighted layers as units (:mod:`tafa.weights`), for weight evidence
    #: against suspects that arrive as files; empty when the owner was a black box.
    owner_layers: list[UnitLayer] = field(default_factory=list)
    #: The second stage (:attr:`Scheme.second`): a fingerprint of the same owner under another
    #: scheme, stored in the same file; ``None`` when the scheme has none or it did not apply.
    second: "Fingerprint | None" = None
    #: The owner's signature at the coarse step (:mod:`tafa.signature.scales`) with the steps
    #: (``steps``): empty when the scheme has no derivative signature, or for older files.
    coarse: Signature = field(default_factory=dict)
    #: The label stage (:mod:`tafa.label_stage`): points just across the owner's boundaries, found
    #: from the owner's own inputs, and its labels there; ``None`` when made without them.
    labels: "Fingerprint | None" = None
    #: The extraction stage (:attr:`Scheme.extraction`): the owner's outputs at inputs it is
    #: confident on, for students distilled on its answers; ``None`` when the scheme has none or
    #: it did not apply.
    extraction: "Fingerprint | None" = None
    #: The data-like stage (:attr:`Scheme.data_style`): the owner's signature at inputs in the style of
    #: real data (:mod:`~tafa.probes.datalike`); ``None`` when the scheme has none or it did not apply.
    datalike: "Fingerprint | None" = None

    # ------------------------------------------------------------------ owner side
    @classmethod
    def create(cls, model: ModelLike | str | os.PathLike[str], domain: Domain | str, *,
               scheme: str | Scheme = DEFAULT_SCHEME, points: int | None = None, directions: int | None = None,
               seed: int = 0,
               input_shape: tuple[int, ...] | None = None, progress: bool = False,
               data: np.ndarray | None = None, references: References | None = None,
               parent: ModelLike | None = None, parent_references: int = DEFAULT_PARENT_REFERENCES,
               weights: bool = False, time_budget: float | None = DEFAULT_TIME_BUDGET,
               second_stage: bool | None = None, owner_data: np.ndarray | None = None,
               free_labels: bool = True, white_box_only: bool = False) -> "Fingerprint":
        """Fingerprint ``model`` over ``domain`` with no data.

        ``model`` is a :class:`~tafa.models.Model`, an ``nn.Module`` (then ``input_shape``
        is needed unless ``domain`` is a :class:`~tafa.domain.Domain`) or the path of a model
        file, opened with :func:`tafa.models.open_model` (in the sandbox, never unpickled; an ONNX
        file declares its input shape, other files take ``input_shape``). ``points`` and
        ``directions`` default to the scheme's. ``data`` is only for baseline schemes whose
        papers start from the owner's data; the project's method needs none.

        A scheme with a learned similarity fits it on ``references`` (positive and negative
        reference models, measured black-box at the probes); a ``"data-free"`` scheme makes
        them itself from the owner and the domain when none are given
        (:func:`tafa.attacks.references.data_free_references`).

        ``parent``: a shared public network the owner fine-tuned (same input and output shapes).
        Its signature at the probes is kept in the fingerprint, and every comparison is then of
        what the owner changed relative to the parent against what the suspect changed relative
        to it (:meth:`relative`): what every fine-tune of the parent inherits from it is no
        evidence (the parent itself scores exactly 0); see "Shared public parents" in
        docs/method.md. When the owner and the parent are torch modules, the owner also makes
        ``parent_references`` data-free fine-tunes of the parent
        (:func:`tafa.attacks.references.parent_references`); their scores, and the parent's,
        are kept: :meth:`verify` reports the suspect's rank among them, and
        :meth:`parent_calibration` turns them into a threshold on request (not by default: they
        do not bound siblings trained on real data, see docs/method.md).

        ``weights``: keep the owner's first weighted layers (at most
        :data:`~tafa.weights.STORED_LAYERS`, bounded in size) in the fingerprint, for weight
        evidence when a suspect arrives as a file (:meth:`weight_evidence`). They reveal those
        layers to whoever holds the fingerprint, so they are kept only when asked (default ``False``).

        Before it starts, the cost is estimated (:meth:`~tafa.probes.base.ProbeStrategy.plan`,
        shown with the progress bars); over ``time_budget`` seconds (``None``: no budget) the
        analysis takes shortcuts (float32, smaller slices, fewer LPs, the linearity ladder)
        that are written into the fingerprint's scheme (so it is re-created the same way) and
        listed in its metadata (``shortcuts``). A later stage whose inputs are searched for on the
        owner's gradients (the data-free label stage, the extraction stage) is left out, with why in
        the metadata, when its search alone is estimated over the budget (the same count on every
        machine, so a commitment re-creates the same stages). Reference training is not budgeted.

        ``second_stage``: a scheme with a second stage (:attr:`Scheme.second`; the default
        ``tafa`` has boundary geometry) also fingerprints the owner with it when it applies
        (``None``: when the owner is a torch module whose first layer's lines can be aimed,
        :class:`~tafa.probes.boundary.BoundaryProbes`, and no parent is declared; ``False``: never; ``True``: always, or
        :class:`~tafa.errors.InvalidParameter`). Why a second stage was or was not made is in
        the metadata (``second_stage``). A scheme with an extraction stage (:attr:`Scheme.extraction`;
        the default ``tafa`` has one) makes it too where it applies, unless ``second_stage`` is
        ``False`` (no later stage at all); why, in ``extraction_stage``.

        ``owner_data``: the owner's own inputs (``(n, *input_shape)``): a classifier's fingerprint
        then also holds a label stage (:mod:`tafa.label_stage`), which decides suspects whose
        answers keep little more than labels (one-hot, top-k, rounded probabilities). Nothing
        else uses them. Without them (and with ``free_labels``, the default), a scheme with a coarse
        scale fingerprinting a torch-module owner with a vector of outputs and no declared parent
        gets the data-free label stage instead (:func:`~tafa.label_stage.free_label_scheme`,
        :func:`~tafa.label_stage.free_stage_applies`), for the same suspects.

        ``white_box_only``: probes the strategy could not choose white-box raise
        :class:`~tafa.relu.linearise.NotWhiteBox` (with the strategy's reason) before the owner is
        asked anything (a second stage is kept only white-box: its black-box lines were measured on the
        owner, thousands of queries, and then thrown away).
        """
        scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
        if input_shape is None and isinstance(domain, Domain):
            input_shape = domain.shape
        if isinstance(model, (str, os.PathLike)):
            model = _open_owner_file(model, input_shape)
        owner = as_model(model, input_shape)
        if isinstance(domain, str):
            domain = parse_domain(domain, owner.input_shape)
        if domain.shape != owner.input_shape:
            raise ShapeMismatch(f"The domain has shape {domain.shape} but the model takes {owner.input_shape}.")
        n = scheme.points if points is None else points
        needs_directions = scheme.directions > 0
        d = int(np.prod(owner.input_shape))
        # the scheme's default number of directions, at most the input's dimension
        k = min(scheme.directions, d) if directions is None else directions
        check_param("points", n, "an integer >= 2", isinstance(n, int) and n >= 2, caller="Fingerprint.create")
        check_param("directions", k, f"an integer in [1, {d}] for scheme {scheme.name!r}",
                    (not needs_directions) or (isinstance(k, int) and 1 <= k <= d), caller="Fingerprint.create")
        check_param("time_budget", time_budget, "None or a number of seconds > 0",
                    time_budget is None or (is_finite_number(time_budget) and time_budget > 0),
                    caller="Fingerprint.create")
        strategy, signature, similarity = scheme.build()
        parent_model = None if parent is None else _parent_model(parent, owner, signature)
        check_param("parent_references", parent_references, f"an integer in [0, {MAX_PARENT_REFERENCES - 1}]",
                    isinstance(parent_references, int) and not isinstance(parent_references, bool)
                    and 0 <= parent_references < MAX_PARENT_REFERENCES, caller="Fingerprint.create")
        started = time.perf_counter()
        plan = strategy.plan(owner, domain, n=n, k=k if needs_directions else 0,
                             signature_queries=n * (2 * k + 1) if needs_directions else n, budget=time_budget)
        if plan is not None and plan.params:
            scheme = replace(scheme, probe_params={**scheme.probe_params, **plan.params})
            strategy, signature, similarity = scheme.build()
        if plan is not None and progress:
            over = f"; over the {time_budget:g} s budget, taking: {', '.join(plan.shortcuts)}" if plan.shortcuts else ""
            tqdm.write(f"estimated {_seconds(plan.seconds)} s on an idle core for {scheme.name} ({plan.summary}){over}")
        if references is None and (isinstance(similarity, LearnedSimilarity)
                                   or scheme.references is ReferenceSource.DATA_FREE):
            references = _default_references(scheme, owner, domain, seed)
        probes = strategy.select(owner, domain, n=n, k=k if needs_directions else 0, seed=seed, progress=progress,
                                 data=data, references=references)
        if white_box_only and probes.analysis is not Analysis.WHITE_BOX:
            from .relu.linearise import NotWhiteBox

            raise NotWhiteBox(Analysis.why(probes.info.get("analysis")))
        before = owner.queries
        if type(signature) is Derivatives:  # the owner's own bend within its steps, from the same answers
            answers = owner(signature.inputs(probes))
            owner_signature, owner_bend = signature.assemble(probes, answers), curvature(probes, answers)
        else:
            owner_signature, owner_bend = signature.measure(owner, probes), None
        parent_signature = {} if parent_model is None else {
            key: value for key, value in signature.measure(parent_model, probes).items()
            if key in signature.relative_keys}

        def relative(measured: Signature) -> Signature:
            return relative_to(measured, parent_signature, signature.relative_keys) if parent_signature else measured

        verifier: dict[str, np.ndarray] = {}
        if isinstance(similarity, LearnedSimilarity):
            assert references is not None
            measured = [[relative(signature.measure(as_model(m, owner.input_shape), probes)) for m in models]
                        for models in (references.positives, references.negatives)]
            similarity.fit(relative(owner_signature), measured[0], measured[1], seed=seed)
            verifier = similarity.state()
        owner_queries = owner.queries - before
        copy_score = (_owner_int8_score(owner, probes, signature, similarity, owner_signature, relative)
                      if plan is None or plan.owner_check else None)
        seconds = time.perf_counter() - started
        meta = {"fingerprint_seconds": seconds, "owner_queries": owner_queries,
                "owner_name": owner.name, "tafa_version": tafa_version(), "requested_points": n,
                "requested_directions": k if needs_directions else 0,
                **({} if copy_score is None else {OWNER_INT8_SCORE: copy_score}),
                **({} if owner_bend is None else {OWNER_CURVATURE: owner_bend})}
        if plan is not None:
            meta.update(cost_estimate_seconds=plan.seconds, cost_plan=plan.summary, shortcuts=plan.shortcuts,
                        time_budget_seconds=time_budget)
        if parent_model is not None:
            meta.update(parent_sha256=parent_model.content_hash(), parent_name=parent_model.name)
            made = _parent_reference_models(owner, parent_model, domain, parent_references, seed)
            if made is not None:
                scores = [similarity.compare(relative(owner_signature), relative(signature.measure(
                    as_model(model, owner.input_shape), probes))).value for model in made.negatives]
                meta.update({PARENT_REFERENCE_SCORES: [float(value) for value in scores],
                             "parent_references": made.provenance})
        if references is not None and (isinstance(similarity, LearnedSimilarity) or "selected" in probes.info):
            meta.update(reference_positives=len(references.positives), reference_negatives=len(references.negatives))
            if references.provenance:  # data-free references: how far each moved, how well it works
                meta["references"] = references.provenance
        module = owner.torch_module() if weights else None
        layers = stored_layers(module) if module is not None else []
        if layers:
            meta["weight_layers"] = [layer.describe() for layer in layers]
        coarse: Signature = {}
        if _has_coarse_scale(scheme) and parent_model is None and probes.steps is not None:
            steps = np.full(len(probes), COARSE_SCALE * domain_scale(domain, seed))
            at = coarse_probes(probes, steps)
            coarse = {"steps": steps, **signature.measure(owner, at)}
            compared, jittered = similarity, signature
            if scheme.signature == "derivatives" and not _answers_vector(owner):  # a regressor's, a decoder's
                jittered = JitteredDerivatives(JITTER)
                coarse[SMOOTHED] = jittered.measure(owner, at)[SMOOTHED]
                compared = _with_smoothed(scheme).make_similarity()
            coarse_copy = (_owner_int8_score(owner, at, jittered, compared, _without_steps(coarse))
                           if plan is None or plan.owner_check else None)  # the plan's "no int8 self-check"
            if coarse_copy is not None:
                meta[COARSE_INT8_SCORE] = coarse_copy
        second, why = _second_stage(scheme, owner, domain, seed, second_stage, parent_model is not None, progress)
        labels = None if owner_data is None else _label_stage(owner, domain, owner_data, seed)
        if labels is None and free_labels and coarse and free_stage_applies(owner):
            labels, failed = _on_gradients(owner, domain, free_label_scheme(), seed, "its boundary points",
                                           time_budget, progress)
            if failed:
                meta["free_label_stage"] = {"made": False, "why": failed}
        if scheme.second:
            meta["second_stage"] = why
            if second is None:  # the stored scheme says exactly whether there is one (commitments re-create it)
                scheme = replace(scheme, second=None)
        extraction, why = _extraction_stage(scheme, owner, domain, seed, second_stage, parent_model is not None,
                                            time_budget, progress)
        if scheme.extraction:
            meta["extraction_stage"] = why
            # the stored scheme names the stage made (commitments re-create it), or none
            scheme = replace(scheme, extraction=None if extraction is None else extraction.scheme.name)
        datalike, why = _data_style_stage(scheme, owner, domain, seed, second_stage, parent_model is not None)
        if scheme.data_style:
            meta["data_style_stage"] = why
            scheme = replace(scheme, data_style=None if datalike is None else datalike.scheme.name)
        return cls(scheme, domain, probes, owner_signature, owner.input_shape, owner.output_shape,
                   owner.content_hash(), _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   seed, meta, verifier, parent_signature, layers, second, coarse, labels, extraction, datalike)

    # ------------------------------------------------------------------ file format
    def _arrays(self) -> dict[str, np.ndarray]:
        # C order matters: safetensors writes an array's buffer as it lies in memory.
        arrays = {f"probes.{key}": np.ascontiguousarray(value, dtype=np.float64)
                  for key, value in self.probes.arrays().items()}
        arrays.update({f"owner.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.owner_signature.items()})
        arrays.update({f"verifier.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.verifier.items()})
        arrays.update({f"parent.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.parent_signature.items()})
        arrays.update({f"weights.{i}": np.ascontiguousarray(layer.vectors, dtype=np.float64)
                       for i, layer in enumerate(self.owner_layers)})
        for prefix, nested in self._nested():
            arrays.update({f"{prefix}.{key}": value for key, value in nested._arrays().items()})
        arrays.update({f"{COARSE}.{key}": np.ascontiguousarray(value, dtype=np.float64)
                       for key, value in self.coarse.items()})
        return arrays

    def _header(self) -> dict[str, Any]:
        header = {"format": FORMAT, "version": VERSION, "scheme": self.scheme.to_dict(),
                  "domain": self.domain.to_dict(), "input_shape": list(self.input_shape),
                  "output_shape": list(self.output_shape), "owner_sha256": self.owner_sha256,
                  "created": self.created, "seed": self.seed, "probes_info": self.probes.info, "meta": self.meta}
        for prefix, nested in self._nested():  # same owner, domain, shapes and seed: only what differs
            header[prefix] = {"scheme": nested.scheme.to_dict(), "probes_info": nested.probes.info,
                              "meta": nested.meta}
        return header

    def _nested(self) -> list[tuple[str, "Fingerprint"]]:
        """The stages stored with this one, by their file prefix."""
        return [(prefix, nested) for prefix, nested in ((SECOND, self.second), (LABELS, self.labels),
                                                        (EXTRACTION, self.extraction), (DATALIKE, self.datalike))
                if nested is not None]

    def later_stages(self) -> list["Fingerprint"]:
        """The stages the rule decides after the first, in their order (the data-like stage, the
        boundary geometry, then the extraction stage; those that were made)."""
        return [stage for stage in (self.datalike, self.second, self.extraction) if stage is not None]

    @property
    def sha256(self) -> str:
        """SHA-256 of this fingerprint's content (what a commitment publishes)."""
        return content_hash(self._header(), self._arrays())

    @property
    def probe_sha256(self) -> str:
        """Reproducible content hash: SHA-256 over the scheme, domain, seed, probes and owner
        signature only (no creation time, timings, names or versions), so that re-creating the
        fingerprint from the same owner model and seed gives the same value. The label stage is
        left out: it needs the owner's inputs to re-create (the file's :attr:`sha256` covers it)."""
        header = self._header()
        arrays = {key: value for key, value in self._arrays().items()
                  if not key.startswith(("weights.", f"{LABELS}."))}
        return content_hash({key: header[key] for key in REPRODUCIBLE_FIELDS}, arrays)

    def to_bytes(self) -> bytes:
        """The bytes of this fingerprint's file (see :mod:`tafa.fingerprint_file`)."""
        return encode(self._header(), self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "the fingerprint") -> "Fingerprint":
        """Parse and check the bytes of a fingerprint file (:class:`FingerprintError` if they are
        not one, :class:`TamperedFingerprint` if the content does not match its hash); ``source``
        names them in messages."""
        header, arrays = decode(data, source=source)
        try:
            probes = Probes.from_arrays({key[7:]: value for key, value in arrays.items() if key.startswith("probes.")},
                                        header["probes_info"])
            signature = {key[6:]: value for key, value in arrays.items() if key.startswith("owner.")}
            verifier = {key[9:]: value for key, value in arrays.items() if key.startswith("verifier.")}
            parent = {key[7:]: value for key, value in arrays.items() if key.startswith("parent.")}
            meta = header.get("meta", {})
            layers = layers_from_arrays({key[8:]: value for key, value in arrays.items() if key.startswith("weights.")},
                                        meta.get("weight_layers") if isinstance(meta, dict) else None)
            coarse = {key[len(COARSE) + 1:]: value for key, value in arrays.items() if key.startswith(f"{COARSE}.")}
            fingerprint = cls(Scheme.from_dict(header["scheme"]), domain_from_dict(header["domain"]), probes,
                              signature, tuple(header["input_shape"]), tuple(header["output_shape"]),
                              header["owner_sha256"], header["created"], header["seed"], meta, verifier, parent,
                              layers, coarse=coarse)
            fingerprint._check_consistent()
            if SECOND in header:
                fingerprint.second = fingerprint._read_nested(SECOND, header[SECOND], arrays, source)
            if LABELS in header:
                fingerprint.labels = fingerprint._read_nested(LABELS, header[LABELS], arrays, source)
                if (fingerprint.labels.scheme.signature, fingerprint.labels.scheme.similarity) not in (
                        ("labels", "match-rate"), ("pair-differences", "pair-correlation")):
                    raise ValueError("the label stage does not measure labels")
            if EXTRACTION in header:
                fingerprint.extraction = fingerprint._read_nested(EXTRACTION, header[EXTRACTION], arrays, source)
            if DATALIKE in header:
                fingerprint.datalike = fingerprint._read_nested(DATALIKE, header[DATALIKE], arrays, source)
                if fingerprint.datalike.scheme.probes != "data-like":
                    raise ValueError("the data-like stage's probes are not data-like")
        except TafaError as error:
            raise FingerprintError(f"{source} has a malformed header ({one_line(error)}).") from None
        except Exception as error:  # noqa: BLE001 - a header that hashes right but does not fit together
            raise FingerprintError(f"{source} has a malformed header "
                                   f"({type(error).__name__}: {one_line(error)}).") from None
        return fingerprint

    def _read_nested(self, prefix: str, header: Any, arrays: dict[str, np.ndarray], source: str) -> "Fingerprint":
        """A stage stored with this fingerprint under ``prefix`` (the second stage, the label
        stage): its own scheme, probes and owner signature (``PREFIX.*`` arrays); owner, domain,
        shapes and seed are this one's. Such a stage has no stage of its own, no learned
        verifier, parent or weights."""
        what = {SECOND: "the second stage", LABELS: "the label stage", EXTRACTION: "the extraction stage",
                DATALIKE: "the data-like stage"}[prefix]
        if not isinstance(header, dict) or not {"scheme", "probes_info"} <= set(header) <= {"scheme", "probes_info",
                                                                                             "meta"}:
            raise ValueError(f"{what}'s header is not an object with a scheme, probes_info and meta alone")
        check_header(header, source=f"{source} ({what})")
        inner = {key[len(prefix) + 1:]: value for key, value in arrays.items() if key.startswith(f"{prefix}.")}
        allowed = ("probes.", "owner.")
        if not all(key.startswith(allowed) for key in inner):
            raise ValueError(f"{what} holds arrays other than probes and the owner's signature")
        scheme = Scheme.from_dict(header["scheme"])
        if scheme.second or scheme.extraction or scheme.data_style:
            raise ValueError(f"{what} cannot have a stage of its own")
        second = replace(self, scheme=scheme, meta=header.get("meta", {}),
                         probes=Probes.from_arrays({key[7:]: value for key, value in inner.items()
                                                    if key.startswith("probes.")}, header["probes_info"]),
                         owner_signature={key[6:]: value for key, value in inner.items() if key.startswith("owner.")},
                         verifier={}, parent_signature={}, owner_layers=[], second=None, coarse={}, labels=None,
                         extraction=None, datalike=None)
        second._check_consistent()
        queries = self.queries() + second.queries() + sum(stage.queries() for _, stage in self._nested())
        if queries > MAX_QUERIES or queries * math.prod(self.output_shape) > MAX_OUTPUT_VALUES:
            raise ValueError(f"{queries} queries of the stages exceed the reader's limits ({MAX_QUERIES} queries, "
                             f"{MAX_OUTPUT_VALUES} output values)")
        return second

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the fingerprint file atomically, and its commitment beside it
        (``PATH.commitment.json``, :class:`~tafa.commitment.Commitment`: publish or timestamp its
        digest), as ``tafa fingerprint --out`` does; returns the fingerprint's path. An existing
        fingerprint or commitment file is refused (:class:`~tafa.errors.InvalidParameter`) unless
        ``overwrite``."""
        check_param("overwrite", overwrite, "True or False", isinstance(overwrite, bool), caller="Fingerprint.save")
        return write_fingerprint(path, self, overwrite=overwrite)[0]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Fingerprint":
        """Read and check a fingerprint file (:class:`FingerprintError` if unreadable,
        :class:`TamperedFingerprint` if its content does not match its hash)."""
        return cls.from_bytes(read(path), source=repr(str(path)))

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
            (self.scheme.second is None or isinstance(self.scheme.second, str), "scheme.second"),
            (self.scheme.data_style is None or isinstance(self.scheme.data_style, str), "scheme.data_style"),
        ]
        for ok, name in checks:
            if not ok:
                raise ValueError(f"field {name} is malformed")
        signature = self.scheme.make_signature()
        probes = self.probes
        for name, array in {**probes.arrays(), **self.owner_signature, **self.verifier,
                            **{f"parent.{key}": value for key, value in self.parent_signature.items()}}.items():
            if array.dtype != np.float64 or not np.all(np.isfinite(array)):
                raise ValueError(f"array {name!r} is not finite float64")
        stored = self.meta.get(PARENT_REFERENCE_SCORES)
        if stored is not None and not (isinstance(stored, list) and 0 < len(stored) <= MAX_PARENT_REFERENCES and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in stored)):
            raise ValueError(f"meta {PARENT_REFERENCE_SCORES} must be a list of 1 to {MAX_PARENT_REFERENCES} finite "
                             "numbers")
        learned = isinstance(self.scheme.make_similarity(), LearnedSimilarity)
        if learned != bool(self.verifier):
            raise ValueError("the verifier's parameters do not fit the scheme (learned similarity without them, "
                             "or parameters for a similarity that learns nothing)")
        if learned:
            self.similarity()
        if probes.points.ndim < 1 or probes.points.shape[1:] != self.input_shape or len(probes.points) < 1:
            raise ValueError(f"probe points of shape {probes.points.shape} do not fit input shape {self.input_shape}")
        queries = signature.queries(probes)
        if not 1 <= queries <= MAX_QUERIES or queries * math.prod(self.output_shape) > MAX_OUTPUT_VALUES:
            raise ValueError(f"{queries} queries of {math.prod(self.output_shape)} output values each exceed the "
                             f"reader's limits ({MAX_QUERIES} queries, {MAX_OUTPUT_VALUES} output values)")
        got = {key: value.shape for key, value in self.owner_signature.items()}
        expected = {key: shape for key, shape in signature.signature_shapes(probes, self.output_shape).items()
                    if key in got or key not in signature.optional_keys}
        if expected != got:
            raise ValueError(f"owner signature {got} does not fit the probes and scheme {self.scheme.name!r}")
        if self.coarse:  # the steps, then exactly the owner's arrays, shape for shape: bounded like them
            steps = self.coarse.get("steps")
            if (not _has_coarse_scale(self.scheme) or steps is None or steps.shape != (len(probes),)
                    or not np.all(steps > 0) or not np.all(np.isfinite(steps))):
                raise ValueError("the coarse scale's steps do not fit the probes and scheme")
            others = {key: value.shape for key, value in self.coarse.items() if key not in ("steps", SMOOTHED)}
            smoothed = self.coarse.get(SMOOTHED)
            if smoothed is not None and (self.scheme.signature != "derivatives" or "outputs" not in got
                                         or smoothed.shape != got["outputs"]):
                raise ValueError(f"the coarse scale's smoothed outputs {smoothed.shape} do not fit the owner's outputs")
            if others != got or not all(np.all(np.isfinite(v)) and v.dtype == np.float64
                                        for v in self.coarse.values()):
                raise ValueError(f"the coarse scale's signature {others} does not fit the owner signature {got}")
        if self.parent_signature:  # exactly the owner's relative arrays, shape for shape: bounded like them
            parent = {key: value.shape for key, value in self.parent_signature.items()}
            if parent != {key: got[key] for key in signature.relative_keys if key in got} or not parent:
                raise ValueError(f"parent signature {parent} does not fit the owner signature {got} of scheme "
                                 f"{self.scheme.name!r}")

    # ------------------------------------------------------------------ verifier side
    def queries(self) -> int:
        """Queries one verification sends to a suspect at most: the first stage (with its coarse
        scale), then either the second stage or, for a suspect the coarse scale decides, that scale
        again at its jittered steps (:meth:`coarse_stage` ``averaged``) and the label stage,
        whichever costs more."""
        first, *later = self.stage_queries()
        coarse = self.coarse_stage(averaged=True)
        averaged = 0 if coarse is None else coarse.step_queries()
        labels = 0 if self.labels is None else self.labels.queries()
        return first + max(sum(later), averaged + labels)

    def step_queries(self) -> int:
        """The first stage's queries at the fingerprint's own step alone (what a scan sends; verify
        adds as many at the coarse scale, :meth:`stage_queries`)."""
        return self.scheme.make_signature().queries(self.probes)

    def stage_queries(self) -> list[int]:
        """Queries per stage (one entry without later stages, :meth:`later_stages`); the first
        stage's include its coarse scale's (:meth:`coarse_stage`)."""
        own = self.step_queries() * (2 if self.coarse else 1)
        return [own] + [stage.queries() for stage in self.later_stages()]

    def stage_names(self) -> list[str]:
        """The stages' scheme names (one entry without later stages)."""
        return [self.scheme.name] + [stage.scheme.name for stage in self.later_stages()]

    def check_shapes(self, suspect: Model) -> None:
        """Raise :class:`ShapeMismatch` unless ``suspect`` takes and returns what the owner did
        (and :class:`InvalidParameter` for a labels-only suspect this scheme cannot use)."""
        if suspect.input_shape != self.input_shape:
            raise ShapeMismatch(f"Suspect {suspect.name} takes inputs of shape {suspect.input_shape}; "
                                f"the fingerprint's owner took {self.input_shape}.")
        if suspect.labels_only:
            if not self.scheme.make_signature().accepts_labels and self.labels is None:
                from .scheme import SCHEMES

                usable = sorted(name for name, s in SCHEMES.items() if s.make_signature().accepts_labels)
                raise InvalidParameter(f"Suspect {suspect.name} answers labels only; scheme {self.scheme.name!r} needs "
                                       "its outputs, or a label stage (fingerprint the owner with --owner-data FILE). "
                                       f"Schemes that verify labels-only suspects: {', '.join(usable)} "
                                       "(fingerprint the owner with --scheme NAME).")
            return
        if int(np.prod(suspect.output_shape)) != int(np.prod(self.output_shape)):
            raise ShapeMismatch(f"Suspect {suspect.name} returns outputs of shape {suspect.output_shape}; "
                                f"the fingerprint's owner returned {self.output_shape}.")

    def measure(self, suspect: ModelLike) -> Signature:
        """The suspect's signature at this fingerprint's probes (black box: outputs only), from its
        answers with their interface undone where it can be (:func:`~tafa.signature.interface.recognise`)."""
        return self.measure_checked(suspect, check=False)[0]

    def similarity(self) -> Similarity:
        """The scheme's similarity, with the fitted parameters of a learned one loaded."""
        similarity = self.scheme.make_similarity()
        if isinstance(similarity, LearnedSimilarity):
            similarity.load_state(self.verifier)
        return similarity

    def relative(self, signature: Signature) -> Signature:
        """``signature`` as this fingerprint compares it: relative to the parent's when a parent
        was declared (:func:`~tafa.signature.base.relative_to`), else unchanged."""
        if not self.parent_signature:
            return signature
        return relative_to(signature, self.parent_signature, self.scheme.make_signature().relative_keys)

    def compare(self, signature: Signature) -> Score:
        """Similarity of a measured signature to the owner's (both relative to the parent's, if any)."""
        return self.similarity().compare(self.relative(self.owner_signature), self.relative(signature))

    def refit(self, positives: list[Signature], negatives: list[Signature]) -> "Fingerprint":
        """A copy whose learned similarity is refitted on other reference signatures (same
        probes): how the benchmark scores a verifier that never saw an attack family."""
        similarity = self.similarity()
        if not isinstance(similarity, LearnedSimilarity):
            raise ValueError(f"Scheme {self.scheme.name!r} has no learned similarity to refit.")
        similarity.fit(self.relative(self.owner_signature), [self.relative(s) for s in positives],
                       [self.relative(s) for s in negatives], seed=self.seed)
        return replace(self, verifier=similarity.state())

    def score(self, suspect: ModelLike) -> Score:
        """Similarity of ``suspect`` to the owner at this fingerprint's probes."""
        return self.compare(self.measure(suspect))

    def score_until(self, suspect: ModelLike, threshold: float | None) -> tuple[Score, dict[str, Any] | None]:
        """:meth:`score`, for a similarity that is a mean over the probes measured a few probes at a
        time (:func:`~tafa.decide.sequential.stops`) and stopped once ``threshold`` is out of reach,
        or, for a bounded mean (:attr:`~tafa.decide.similarity.Similarity.settles`), surely passed
        (:mod:`tafa.decide.sequential`). Then the score is over the probes measured (out of reach:
        below the threshold; passed: above it, what the whole measurement would score at least), and
        the second value says how far it went: ``{"probes", "of", "reach"}`` or ``{"probes", "of",
        "passed": True}`` (``None``: every probe measured, the score :meth:`score`'s up to float
        rounding). ``threshold`` ``None``: never stopped, the probes asked in the same batches (what
        :meth:`scores` measures references with, so that they are asked as a suspect is: a model's
        last bits can depend on the size of its batch)."""
        n = len(self.probes)
        similarity = self.similarity()
        if not similarity.mean_over_points or n <= LOOK:
            return self.score(suspect), None
        model = as_model(suspect, self.input_shape)
        parts: list[Signature] = []

        def so_far() -> Score:  # the score over the probes measured so far
            measured = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
            return self.at_probes(np.arange(done)).compare(measured)

        done = 0
        for upto in stops(n):
            parts.append(self.at_probes(np.arange(done, upto)).measure(model))
            done = upto
            if done == n or threshold is None:  # no look at the last probe, nor without a threshold
                continue
            score = so_far()
            values = score.per_point
            value = stopped_score(values, n, similarity.settles)
            if similarity.settles and value > threshold:
                return replace(score, value=value), {"probes": done, "of": n, "passed": True}
            if out_of_reach(values, n, threshold):
                return replace(score, value=value), {"probes": done, "of": n, "reach": reach(values, n)}
        return so_far(), None

    def calibrate(self, references: Iterable[ModelLike], alpha: float = 0.01, progress: bool = False, *,
                  parametric: bool = False, suspect: ModelLike | None = None, first_only: bool = False,
                  keep_table: bool = False) -> Rule:
        """The decision rule (:class:`~tafa.decide.rule.Rule`) from negative references
        (independently trained models of the same task): one threshold per stage, each at its
        share of ``alpha``, on the same references; the first stage alone, at the whole
        ``alpha``, when ``first_only`` or when the references are too few for every stage
        (:meth:`~tafa.decide.rule.Rule.stages_supported`; the later stages are then not measured
        on them).

        The references are cleaned first: the owner itself (or ``suspect``) among them is refused
        (:class:`~tafa.errors.RefusedReference`): with the owner there no copy is ever judged
        derived, with the suspect a copy is judged independent. Identical references (by content
        hash) count once: the bound rests on *distinct* models. References scoring like the
        owner's own int8 copy (recorded at fingerprint time; see :meth:`copy_line`) are probable
        copies of the owner: left out, with a note (:meth:`rule_from_scores`). ``parametric``
        allows a parametric tail where the references are too few for ``alpha`` by rank (see
        :func:`tafa.decide.threshold.calibrate`). ``keep_table`` (a rule to store: the registry's):
        every stage measured on the kept references and their scores kept with the rule
        (:attr:`Rule.table <tafa.decide.rule.Rule.table>`), so that it can decide at another alpha,
        or with the stages together, as ``tafa verify --references`` does (not with
        ``parametric``, which decides by each stage's tail)."""
        rule, table = self._calibrated(references, alpha, progress, parametric=parametric, suspect=suspect,
                                       first_only=first_only, joint=keep_table, always=keep_table)
        return rule if table is None else rule.with_table(table, self.stage_names())

    def _calibrated(self, references: Iterable[ModelLike], alpha: float, progress: bool, *, parametric: bool,
                    suspect: ModelLike | None, first_only: bool = False, joint: bool = False,
                    always: bool = False) -> tuple[Rule, np.ndarray | None]:
        """:meth:`calibrate`, and with ``joint`` (and no ``parametric``) where its references are
        too few for every stage's share of ``alpha`` by rank but enough for ``alpha`` itself,
        their scores at every stage (one row per kept reference, one column per stage) for
        :meth:`Rule.joint <tafa.decide.rule.Rule.joint>`; ``None`` otherwise (with ``always``,
        wherever there are later stages). Each stage is measured on the references once."""
        kept, notes = self.distinct_references(references, suspect)
        scores = self.scores(kept, progress=progress, desc="references")
        measured: dict[int, list[float]] = {}

        def stage_scores(number: int, stage: "Fingerprint", keep: list[int]) -> list[float]:
            if number not in measured:
                measured[number] = stage.scores([kept[i] for i in keep], progress=progress,
                                                desc=f"references, stage {number}")
            return measured[number]

        def later(keep: list[int]) -> Iterator[list[float]]:  # lazy: a stage the rule leaves out is not measured
            return (stage_scores(number, stage, keep) for number, stage in enumerate(self.later_stages(), start=2))

        rule = self.rule_from_scores([model.name for model in kept], scores, alpha, parametric=parametric,
                                     notes=notes, stages=1 if first_only else None, later=later)
        stages = self.later_stages()
        if not joint or parametric or first_only or not stages or (len(rule.stages) > len(stages) and not always):
            return rule, None
        line = self.copy_line()
        keep = [i for i, value in enumerate(scores) if line is None or value < line]  # as the rule kept them
        if references_needed(alpha) > len(keep) and not always:
            return rule, None
        columns = [[scores[i] for i in keep], *(stage_scores(number, stage, keep)
                                                for number, stage in enumerate(stages, start=2))]
        return rule, np.array(columns, dtype=np.float64).T

    def distinct_references(self, references: Iterable[ModelLike], suspect: ModelLike | None = None,
                            ) -> tuple[list[Model], list[str]]:
        """The references as distinct models (by content hash; unhashed ones kept), with a note
        when some were duplicates; the owner or ``suspect`` among them is refused
        (:class:`~tafa.errors.RefusedReference`)."""
        models = [as_model(m, self.input_shape) for m in references]
        forbidden = {self.owner_sha256: "the owner model this fingerprint was made from"}
        if suspect is not None:
            forbidden.setdefault(as_model(suspect, self.input_shape).content_hash(), "the suspect being verified")
        distinct: dict[str, Model] = {}
        unhashed: list[Model] = []
        for model in models:
            digest = model.content_hash()
            if digest and digest in forbidden:
                raise RefusedReference(f"Reference {model.name} is {forbidden[digest]} (same SHA-256 "
                                       f"{digest[:12]}); remove it from the references.")
            if not digest:
                unhashed.append(model)
            else:
                distinct.setdefault(digest, model)
        kept = [*distinct.values(), *unhashed]
        notes = []
        if len(kept) < len(models):
            notes.append(f"{len(models)} references are {len(kept)} distinct models (by content hash): "
                         f"calibrated on {len(kept)}")
        return kept, notes

    def rule_from_scores(self, names: list[str], scores: list[float], alpha: float, *, parametric: bool = False,
                         notes: Iterable[str] = (), stages: int | None = None,
                         later: Callable[[list[int]], Iterable[list[float]]] | None = None) -> Rule:
        """The rule from distinct references' first-stage ``scores`` (``names`` name them in
        notes): references scoring like the owner's own int8 copy are left out as probable copies
        (every one of them: :class:`~tafa.errors.RefusedReference`), then as many of the
        fingerprint's stages as the rest support (``stages``: at most that many) are calibrated,
        the later stages' scores of the kept references coming from ``later(kept indices)``
        (measured only when needed). ``tafa verify`` (:meth:`calibrate`) and the benchmark both
        decide with the rule this returns."""
        stage_names = self.stage_names()
        return Rule.from_references(names, scores, alpha, stage_names=stage_names[:stages or len(stage_names)],
                                    copy_line=self.copy_line(), parametric=parametric, notes=notes, later=later)

    def calibrate_first(self, references: Iterable[ModelLike], alpha: float = 0.01, progress: bool = False, *,
                        parametric: bool = False) -> Calibration:
        """The first stage's threshold alone, at the whole ``alpha`` (the rule of one stage that
        a scan applies, as the registry stores it; :meth:`calibrate` with ``first_only``)."""
        rule = self.calibrate(references, alpha, progress, parametric=parametric, first_only=True)
        calibration = rule.stages[0]
        calibration.notes = list(rule.notes)
        return calibration

    def parent_calibration(self, alpha: float = 0.01, *, parametric: bool = False) -> Rule:
        """The threshold from the data-free parent references' scores stored at fingerprint time
        (the parent and its synthetic fine-tunes): a bound against models exchangeable with those
        references. It is *not* a bound against siblings fine-tuned from the parent on real data
        of the owner's task: on the digits parent zoo they score above nearly all of them (sibling
        false-positive rate 0.97 at alpha = 0.05; docs/method.md, "Shared public parents"), so
        :meth:`verify` never uses it unless given it as ``calibration=``."""
        scores = [float(v) for v in self.meta.get(PARENT_REFERENCE_SCORES) or []]
        if not scores:
            raise InvalidParameter("This fingerprint has no parent references: it was made without --parent "
                                   "(or with --parent-references 0); give --references.")
        calibration = calibrate(scores, alpha, parametric=parametric)
        calibration.notes = [f"calibrated on {len(scores)} data-free references made from the declared parent "
                             f"(sha256 {str(self.meta.get('parent_sha256'))[:12]}): the parent and fine-tunes of it "
                             "on synthetic inputs; the bound holds against models like them, not against siblings "
                             "fine-tuned on real data of the same task"]
        return Rule.single(calibration, self.scheme.name)

    def copy_line(self) -> float | None:
        """The score from which a reference counts as a probable copy of the owner: as close to the
        owner's own score as twice the distance of its int8 copy (``None`` for fingerprints made
        before that score was recorded, for a scheme whose score is not a similarity that gives the
        owner 1 against itself (a learned verifier's probability), and for one that scores the int8
        copy more than :data:`COPY_CLOSE` below the owner: its line would fall among independent
        models)."""
        copy_score = self.meta.get(OWNER_INT8_SCORE)
        if not isinstance(copy_score, (int, float)) or isinstance(copy_score, bool):
            return None
        own = self.compare(self.owner_signature).value
        if own < 1.0 - 1e-6 or own - float(copy_score) > COPY_CLOSE:  # a learned score, or no closeness scale
            return None
        return float(copy_score) - COPY_SLACK * max(0.0, own - float(copy_score))

    def scores(self, models: Iterable[ModelLike], progress: bool = False, desc: str = "models") -> list[float]:
        """Scores of several models (with a progress bar), each asked as ``tafa verify`` asks a suspect
        (a stage measured a few probes at a time in the same batches, never stopped:
        :meth:`score_until`)."""
        models = list(models)
        return [self.score_until(model, None)[0].value
                for model in tqdm(models, desc=desc, disable=not progress, leave=False)]

    def verify(self, suspect: ModelLike, references: Iterable[ModelLike] | None = None, *,
               positives: Iterable[ModelLike] | None = None, alpha: float = 0.01, parametric: bool = False,
               calibration: Rule | None = None, progress: bool = False, check_evasion: bool = True,
               weights: WeightEvidence | bool = True, owner_data: np.ndarray | None = None) -> Verdict:
        """Verify ``suspect`` (black box): score it, calibrate on ``references``, decide.

        The rule (``calibration``, else :meth:`calibrate` on ``references``; a stored rule that
        keeps its references' scores at every stage, ``keep_table``, decides as those references
        would) decides: each of its
        stages is measured only when the earlier ones do not already judge the suspect derived
        (with no rule every stage is measured and reported), and "derived" means any stage above
        its own threshold (:meth:`~tafa.decide.rule.Rule.decide`).

        The first stage is also measured at its coarse scale (:mod:`tafa.signature.scales`): a
        suspect whose answers lie on a grid, or are rougher at the fingerprint's step than a ReLU
        network's (a ripple), is decided there alone, at the whole ``alpha``, against the
        references' coarse scores (a ready ``calibration`` without references cannot decide it).

        ``check_evasion``: also ask a few inputs again, alone and in other batches, near pairs of
        another style, and segments searched for a jump (:func:`~tafa.signature.consistency.check_evasion`,
        350 queries; ``owner_data``: inputs from the owner's data, ``(n, *input_shape)``, which the
        check then starts from instead of data-like inputs made from the domain): a suspect
        whose answers depend on how it is asked is ``"evasive"`` unless a stage judges it derived.

        A suspect whose weights can be read (a file, or a torch module) by a fingerprint that keeps
        the owner's layers (``--white-box keep``) also gets the weight test (``weights``: that
        evidence already computed, e.g. with references; ``True``: computed here; ``False``: no
        weight test): its exact
        order p-value is a stage of the rule, ``weights`` (score ``-log10 p``), at the part of
        alpha the other stages leave (:meth:`~tafa.decide.rule.Rule.with_exact`).

        Without references (and without a ready ``calibration``) the decision is
        ``"undecided"``, and so it is when the references are too few for ``alpha`` by rank
        (unless ``parametric``; see :meth:`calibrate`, which also refuses the suspect or the
        owner among the references); ``positives`` (derived copies) report the margin on the
        other side.
        """
        model = as_model(suspect, self.input_shape)
        self.check_shapes(model)
        references = list(references or [])
        started = time.perf_counter()
        if model.labels_only and self.labels is not None and not self.scheme.make_signature().accepts_labels:
            return self._verify_coarse(model, references, None, None, None, None, alpha=alpha, parametric=parametric,
                                       ready=calibration is not None, queries=0, seconds=0.0, progress=progress)
        before = model.queries
        measured, recognised, evasion = self.measure_checked(model, check_evasion, owner_data=owner_data)
        clipped = recognised is not None and recognised.clipped
        view, measured, too_few = self.uncensored(measured, recognised)
        score = view.compare(measured)
        labels = label_stage_decides(None if self.labels is None else self.labels.scheme, model, recognised)
        alone = labels and decides_alone(model, recognised)  # one-hot answers: the label stage alone, at alpha
        grid, bent, limit = bend_of(recognised)
        screen = screen_applies(grid, bent, labels, limit)
        coarse = None if model.labels_only or clipped or alone else self.measure_coarse(model, measured, screen)
        checked = 0 if evasion is None else evasion.queries  # the check's queries: counted apart from the stages'
        queries = model.queries - before - checked
        seconds = time.perf_counter() - started
        if labels or (coarse is not None and coarse_decides(coarse[1], grid, bent, limit)):
            return self._verify_coarse(model, references, coarse, score.value, recognised, evasion, alpha=alpha,
                                       parametric=parametric, ready=calibration is not None, queries=queries + checked,
                                       seconds=seconds, progress=progress, labels=labels,
                                       shown=self.shown_stage(recognised) if labels else None)
        notes: list[str] = []
        stored_rule = view is not self and calibration is not None and not references  # made on every probe
        if view is not self:
            notes.append(f"compared at the {len(view.probes)} of the {len(self.probes)} probes whose answers are all "
                         "inside the clip, the references at the same probes")
            calibration = None  # a given one's thresholds were made on every probe
        if stored_rule:
            notes.append("a clipped suspect is compared at the probes it answers inside the clip: the threshold needs "
                         "the references themselves (--references), not a stored calibration: no decision")
        table = None  # the references' scores at every stage, when the stages decide together (Rule.joint)
        if calibration is None and references:  # the references at the scale that decides, once
            calibration, table = view._calibrated(references, alpha, progress, parametric=parametric, suspect=model,
                                                  joint=True)
        elif calibration is not None and calibration.decides_jointly() and \
                calibration.table_names == self.stage_names():  # a stored rule with every stage's scores kept
            table, alpha = calibration.table, calibration.alpha_requested
        stages: list[dict[str, Any]] = []
        available = [view, *view.later_stages()]  # a clipped suspect: the geometry through its clip
        if calibration is not None and len(calibration.stages) > len(available):
            raise InvalidParameter(f"A calibration with {len(calibration.stages)} stages was given to a fingerprint "
                                   f"with {len(available)}: calibrate it with this fingerprint's "
                                   "Fingerprint.calibrate.")
        run = available if calibration is None or table is not None else available[:len(calibration.stages)]
        evidence: WeightEvidence | None = None
        if weights is True and self.owner_layers:
            evidence = self.weight_evidence(model, references)
        elif isinstance(weights, WeightEvidence):
            evidence = weights
        weight_p = evidence.p_value if evidence is not None and evidence.applicable else None
        weighed = weight_p is not None
        if weighed and calibration is not None and table is None:
            calibration = calibration.with_exact(WEIGHT_STAGE)
        if len(run) > 1 or weighed:  # a rule of one stage: the first decides alone, and no stage list is shown
            names = [stage.scheme.name for stage in run]
            exact = WEIGHT_STAGE if weighed else None
            first = {"name": self.scheme.name, "score": score.value, "queries": queries, "seconds": seconds}
            stages, needed = run_later_stages(model, run[1:], first, calibration, table=table, alpha=alpha,
                                              exact=exact)
            if table is not None and calibration is not None:  # the stages together, for this suspect
                why = (f"{calibration.n_references} references are too few for each of the {len(stages)} stages' "
                       f"share of {alpha:g} by rank (Bonferroni would calibrate {len(calibration.stages)})")
                calibration = joint_rule(stages, table, names, alpha, needed, exact=exact,
                                         notes=[*calibration.notes[:-1], why])  # not its note of the stages left out
            if weighed and (calibration is None or WEIGHT_STAGE in calibration.names):
                assert weight_p is not None
                stages.append({"name": WEIGHT_STAGE, "score": weight_score(weight_p),
                               "queries": 0, "seconds": 0.0})
            queries = sum(stage["queries"] for stage in stages)
            seconds = sum(stage["seconds"] for stage in stages)
        queries += checked
        positive_scores = self.scores(positives, progress=progress, desc="positives") if positives else None
        if calibration is None and not stored_rule:
            notes.append("no references: score reported, no decision made")
        stored = self.meta.get(PARENT_REFERENCE_SCORES)
        if calibration is None and stored:  # evidence, not a bound (see parent_calibration)
            notes.append(f"the score is above {sum(score.value > v for v in stored)} of the {len(stored)} data-free "
                         "references made from the declared parent (the parent and fine-tunes of it on synthetic "
                         "inputs); they are no bound against siblings fine-tuned on real data of the same task: give "
                         "--references (e.g. the owner's own fine-tunes of the parent, other seeds)")
        if self.parent_signature and model.content_hash() == self.meta.get("parent_sha256"):
            notes.append("the suspect is the declared parent (same SHA-256): it cannot be derived from the owner's "
                         "fine-tune; it scores as unchanged from the parent")
        if self.probes.analysis is Analysis.BLACK_BOX:
            how = str(self.probes.info.get("analysis", "black-box"))  # 'black-box (why)' from the probes
            notes.append(f"fingerprint made {how}" if how.startswith("black-box") else
                         f"fingerprint made black-box: {how}")
        said = _consistency_note(model)
        if said:
            notes.append(said)
        if recognised is not None and recognised.note:
            notes.append(recognised.note)
        unresolved = None
        if recognised is not None and recognised.quantised is not None:
            unresolved = (f"the answers lie on a grid of step {recognised.quantised:.3g}: a score below the threshold "
                          "is no evidence of independence, so no stage above its threshold means no decision")
        elif too_few is not None:
            unresolved = (f"the answers are clipped and {too_few}: a score below the threshold is no evidence of "
                          "independence, so no stage above its threshold means no decision")
        return Verdict.decide(score, calibration, queries=queries, seconds=seconds, suspect=model.describe(),
                              scheme=self.scheme.name, fingerprint_sha256=self.sha256,
                              positive_scores=positive_scores, notes=notes, stages=stages, unresolved=unresolved,
                              evasive=evasion.note if evasion is not None and evasion.evasive else None,
                              evasion=None if evasion is None else evasion.to_dict(), weights=evidence,
                              coarse=None if coarse is None else {
                                  "score": coarse[0].value, "roughness": coarse[1],
                                  "curvature": None if recognised is None else recognised.curvature, "decides": False,
                                  **({"probes": coarse[0].per_point.size}
                                     if coarse[0].per_point.size < len(self.probes) else {})})

    def shown_stage(self, recognised: Recognised | None) -> ShownStage | None:
        """The first stage on the classes a suspect shows (:mod:`tafa.shown_stage`), for answers
        recognised as a top-k list not on a grid that leave at least
        :data:`~tafa.signature.censoring.MIN_INSIDE` probes showing two classes or more at all their
        inputs (a top-1 list, or one whose length moves much with the input, leaves too few: the
        label stage and the coarse scale decide it as before); ``None`` for any other."""
        measurement = self.scheme.make_signature()
        if (recognised is None or recognised.kind != "top-k probabilities" or recognised.quantised is not None
                or not ShownStage.applies(measurement, self.probes, self.owner_signature)):
            return None
        assert isinstance(measurement, Derivatives) and recognised.hidden is not None
        shown = ~measurement.unknown(self.probes, recognised.hidden)
        if int((shown.sum(axis=1) >= 2).sum()) < MIN_INSIDE:
            return None
        return ShownStage(measurement, self.probes, self.owner_signature, counts=(~recognised.hidden).sum(axis=1))

    def shown_geometry(self, recognised: Recognised | None) -> "Fingerprint | None":
        """The boundary geometry read on the classes a top-k list shows (:class:`~tafa.signature.kinks.Kinks`
        with ``shown``), for a fingerprint with that stage and answers recognised as a list of one
        length at every input (the references are asked through the same list, which its queries,
        chosen from the answers, cannot replay input by input); ``None`` otherwise."""
        if self.second is None or self.shown_stage(recognised) is None or recognised is None \
                or recognised.hidden is None or self.second.scheme.signature != "kinks":
            return None
        if len(np.unique(recognised.hidden.sum(axis=1))) != 1:
            return None
        return self._geometry_with(shown=True)

    def _geometry_with(self, **params: Any) -> "Fingerprint":
        """The boundary geometry (the second stage) with ``params`` added to its measurement's."""
        assert self.second is not None
        scheme = self.second.scheme
        return replace(self.second, scheme=replace(scheme, signature_params={**scheme.signature_params, **params}))

    def _verify_coarse(self, model: Model, references: list[ModelLike], coarse: tuple[Score, float, Recognised] | None,
                       fine: float | None, recognised: Recognised | None, evasion: EvasionCheck | None, *, alpha: float,
                       parametric: bool, ready: bool, queries: int, seconds: float, progress: bool,
                       labels: bool = True, shown: ShownStage | None = None) -> Verdict:
        """:meth:`verify` for a suspect whose answers at the fingerprint's step are not a ReLU
        network's (a grid, or derivative sizes off the owner's ratio between the scales): the
        coarse scale decides, against the references' coarse scores (:mod:`tafa.signature.scales`);
        the second stage, measured at fine steps too, does not run. With ``labels`` (answers that
        keep little more than labels, :func:`~tafa.label_stage.keeps_labels_only`, and a
        fingerprint with a label stage) the label stage decides beside it, each at its share of
        ``alpha`` (:class:`~tafa.decide.rule.Rule`); alone, at the whole ``alpha``, without a
        coarse scale (a labels-only suspect). With ``shown`` (a top-k list) the first stage on the
        classes it shows decides first (and the boundary geometry on them, :meth:`shown_geometry`),
        then the label stage, then the coarse scale, as many of them as the references support
        (:meth:`~tafa.decide.rule.Rule.stages_supported`). The rule is made first, and the suspect is
        asked only at the stages it calibrates (at every one: each is evidence of its own)."""
        notes: list[str] = []
        # the stages in the order they decide: how the suspect is measured there, whether the references
        # are asked through the suspect's interface, and what the verdict says of the stage when it runs
        planned: list[_Planned] = []
        if shown is not None and recognised is not None:  # the first stage's answers, already asked
            reading = shown.compare(recognised)
            planned.append(_Planned(
                f"{self.scheme.name} ({SHOWN_STAGE})", shown, lambda: reading, True,
                f"the answers are a top-{recognised.shown} list: the first stage compares the derivatives of the "
                f"classes shown at every input of a probe ({reading.per_point.size} of {len(self.probes)} probes "
                "show two or more), the references asked through the same list"))
        geometry = self.shown_geometry(recognised) if shown is not None else None
        if geometry is not None:  # the boundary geometry on the same classes
            planned.append(_Planned(f"{geometry.scheme.name} ({SHOWN_STAGE})", geometry,
                                    partial(geometry.score, model), True))
        averaged_stage = self.coarse_stage(averaged=True) if coarse is not None else None
        coarse_entry = None if averaged_stage is None else _Planned(  # differences averaged over jittered steps
            f"{self.scheme.name} (coarse scale)", averaged_stage, partial(averaged_stage.score, model), False)
        if coarse_entry is not None and shown is None:
            planned.append(coarse_entry)
        if labels:
            assert self.labels is not None
            form = "labels only" if recognised is None else recognised.kind
            beside = (" after the first stage on the shown classes" if shown is not None else "") + (
                " beside the coarse scale" if coarse is not None else " alone, at the whole alpha")
            free = is_free(self.labels.scheme)
            if free:
                label_note = (f"the answers keep little more than labels ({form}): the data-free label stage "
                              f"decides{beside} (how the suspect trades the owner's two leading classes off at "
                              f"{len(self.labels.probes)} points near the owner's decision boundaries, found without "
                              "data, against the owner's; the references asked through the same interface)")
            else:
                label_note = (f"the answers keep little more than labels ({form}): the label stage decides{beside} "
                              f"(the suspect's label at {len(self.labels.probes)} points just across the owner's "
                              "decision boundaries, found from the owner's inputs, against the owner's)")
            planned.append(_Planned(LABEL_STAGE, self.labels, partial(self.labels.score, model), free, label_note))
        if coarse_entry is not None and shown is not None:  # after the shown classes and the labels
            planned.append(coarse_entry)
        names = [entry.name for entry in planned]
        rule = None
        if references:
            kept, cleaned = self.distinct_references(references, model)

            def scored(entry: _Planned, models: list[Model]) -> list[float]:
                """References scored by a stage; through the suspect's interface where it says so."""
                stage = entry.stage
                if entry.asked_through:
                    return asked_scores(lambda m: stage.score(m).value, models, model, recognised)
                assert isinstance(stage, Fingerprint)
                return stage.scores(models, progress=progress, desc=f"references, {entry.name}")

            def later(keep: list[int]) -> list[list[float]]:
                return [scored(entry, [kept[i] for i in keep]) for entry in planned[1:]]

            first_stage = planned[0].stage
            lined = self if isinstance(first_stage, ShownStage) else first_stage  # the shown classes: the first stage's
            rule = Rule.from_references([m.name for m in kept], scored(planned[0], kept), alpha, stage_names=names,
                                        copy_line=lined.copy_line(), parametric=parametric, notes=cleaned, later=later)
        # the suspect at each stage the rule calibrates (every stage without one: each is reported, as
        # evidence of its own); the first stage's record carries the queries already asked (the first
        # stage's and the coarse check's)
        checked = 0 if evasion is None else evasion.queries  # the evasion check's: counted apart, as verify does
        scores: list[Score | None] = []
        records: list[dict[str, Any]] = []  # what the verdict shows of each stage
        calibrated = len(planned) if rule is None else len(rule.stages)
        for index, entry in enumerate(planned):
            if index >= calibrated:
                scores.append(None)
                records.append({"name": entry.name, "score": None, "queries": 0, "seconds": 0.0})
                continue
            started, before = time.perf_counter(), model.queries
            measured = entry.measure()
            scores.append(measured)
            records.append({"name": entry.name, "score": measured.value, "queries": model.queries - before,
                            "seconds": time.perf_counter() - started})
            if index == 0:
                records[-1]["queries"] += queries - checked
                records[-1]["seconds"] += seconds
            queries += model.queries - before
            seconds += time.perf_counter() - started
            if entry.note:
                notes.append(entry.note)
        coarse_score = next((score for entry, score in zip(planned, scores) if entry is coarse_entry), None)
        if not references and ready:
            notes.append(f"the {' and '.join(names)} stage that decides this suspect needs the references "
                         "themselves (--references), not a stored calibration: no decision")
        elif not references:
            notes.append("no references: score reported, no decision made")
        if coarse is not None and coarse_score is not None:
            why = coarse_reason(coarse[1], *bend_of(recognised))
            if why is not None:
                notes.append(f"the suspect's answers at the fingerprint's step are not a ReLU network's ({why}): "
                             f"decided at the coarse step ({COARSE_SCALE:g} times the domain's scale, each difference "
                             f"averaged over {len(JITTER)} steps within {max(abs(j) for j in JITTER):.0%} of it) "
                             f"against the references' scores there; the fine-scale score was {fine:.4f}")
                shares = coarse_score.parts
                if "smoothed" in shares:
                    notes.append(f"the coarse score {coarse_score.value:.4f} is the mean of the averaged differences' "
                                 f"({shares['differences']:.4f}) and of the outputs averaged over each probe's "
                                 f"jittered steps ({shares['smoothed']:.4f}: how they move over the probes as the "
                                 "owner's do, a disturbance of the answers averaged out), the references scored the "
                                 "same way")
            else:
                where = ("the third stage, after the shown classes and the label stage" if shown is not None
                         else "beside the label stage")
                notes.append(f"the coarse step ({COARSE_SCALE:g} times the domain's scale, averaged over {len(JITTER)} "
                             f"steps) decides {where}; the fine-scale score (every class, the zeroed ones at a floor) "
                             f"was {fine:.4f}")
            if coarse[2].note:
                notes.append(coarse[2].note)
        unresolved = None
        deciding = coarse[2] if coarse is not None else recognised  # how the deciding answers were recognised
        grid = None if deciding is None else deciding.quantised
        if grid is not None:
            unresolved = (f"the answers lie on a grid of step {grid:.3g}: a score below the threshold is no evidence "
                          "of independence, so no decision")
        elif model.labels_only:
            unresolved = ("the suspect answers labels only: a score below the threshold is no evidence of "
                          "independence, so no decision")
        resolution = [] if unresolved is None or rule is None else [
            entry.to_dict() for entry in self._resolutions(planned, scores, rule, deciding, averaged_stage)]
        said = _consistency_note(model)
        if said:
            notes.append(said)
        parts = ([SHOWN_STAGE] * (shown is not None) + ["their boundary geometry"] * (geometry is not None)
                 + ["coarse scale"] * (coarse is not None) + ["labels"] * labels)
        if shown is not None:  # in the order they decide
            parts.sort(key=lambda part: part == "coarse scale")
        kind = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
        assert scores[0] is not None  # the first stage is always measured
        return Verdict.decide(scores[0], rule, queries=queries, seconds=seconds, suspect=model.describe(),
                              scheme=f"{self.scheme.name} ({kind})", fingerprint_sha256=self.sha256,
                              notes=notes, unresolved=unresolved, stages=records if len(records) > 1 else [],
                              resolution=resolution,
                              evasive=evasion.note if evasion is not None and evasion.evasive else None,
                              evasion=None if evasion is None else evasion.to_dict(),
                              coarse=None if coarse is None or coarse_score is None else {
                                  "score": coarse_score.value, "roughness": coarse[1],
                                  "curvature": None if recognised is None else recognised.curvature,
                                  "single_step_score": coarse[0].value, "decides": shown is None,
                                  **{part: coarse_score.parts[part] for part in ("differences", "smoothed")
                                     if "smoothed" in coarse_score.parts}})

    def _resolutions(self, planned: list[_Planned], scores: list[Score | None], rule: Rule,
                     deciding: Recognised | None, averaged: "Fingerprint | None") -> list[Resolution]:
        """For a suspect the measurement cannot clear (a grid, labels): per stage of ``rule`` that
        measured it, whether more queries there could decide it and about how many
        (:mod:`tafa.decide.resolution`). The coarse scale only for answers compared as they are
        on their grid (integers, a rounding; not probabilities or pixels undone by a logit)."""
        said = []
        for entry, score, own in zip(planned, scores, rule.stages):
            if score is None or score.value >= own.threshold:
                continue
            if entry.stage is averaged and averaged is not None and deciding is not None and \
                    deciding.quantised is not None and deciding.kind in ("integers", "quantised"):
                said.append(grid_resolution(
                    entry.name, partial(_score_value, averaged), averaged.owner_signature,
                    grid_spacing(deciding.answers, deciding.quantised), np.asarray(averaged.probes.steps), JITTER,
                    score.value, own.threshold, averaged.step_queries()))
            elif entry.name == LABEL_STAGE and self.labels is not None:
                asked = self.labels.queries()  # the stage's own (a first stage's record also holds the earlier ones)
                if is_free(self.labels.scheme):  # a correlation over (point, direction) values, 2 queries each
                    said.append(correlation_resolution(entry.name, asked // 2, score.value, own.threshold, 2.0,
                                                       asked))
                else:  # the share of points where the suspect's label is the owner's, 1 query each
                    said.append(agreement_resolution(entry.name, len(self.labels.probes), score.value,
                                                     own.threshold, asked))
        return said

    def measure_checked(self, suspect: ModelLike, check: bool = True, *, seed: int | None = None,
                        owner_data: np.ndarray | None = None,
                        ) -> tuple[Signature, Recognised | None, EvasionCheck | None]:
        """The suspect's first-stage signature (its interface undone) and, when ``check`` and the
        measurement has fixed inputs, the evasion check on the same answers
        (:func:`~tafa.signature.consistency.check_evasion`: a few inputs asked again, alone and in
        other batches, and near pairs of another style; ``seed``: ``None``, fresh randomness each
        time, as ``verify`` asks; the benchmark seeds it to be reproducible). How the answers were
        recognised is ``None`` for a labels-only suspect."""
        model = as_model(suspect, self.input_shape)
        self.check_shapes(model)
        measurement = self.scheme.make_signature()
        if model.labels_only:
            return measurement.from_labels(self.probes, model(measurement.inputs(self.probes))), None, None
        if measurement.adaptive:
            return (*measure_suspect(measurement, model, self.probes, self.owner_signature), None)
        inputs = measurement.inputs(self.probes)
        answers = model(inputs)
        signature, recognised = assemble_suspect(measurement, self.probes, answers, self.owner_signature)
        if type(measurement) is Derivatives:  # how much the answers bend within a step (tafa.signature.scales)
            recognised = replace(recognised, curvature=curvature(self.probes, recognised.answers),
                                 curvature_limit=curvature_limit(self.meta.get(OWNER_CURVATURE)))
        evasion = (check_evasion_of(model, inputs, answers, self.domain, anchors=owner_data, seed=seed) if check
                   else None)
        return signature, recognised, evasion

    def uncensored(self, signature: Signature, recognised: Recognised | None,
                   ) -> tuple["Fingerprint", Signature, str | None]:
        """This fingerprint and the suspect's ``signature`` at the probes whose answers are all
        inside a clip (:mod:`tafa.signature.censoring`), when the suspect's answers were
        recognised as clipped; references scored by that view are scored at the same probes, and
        its boundary geometry asks every model through the suspect's clip, an answer at a bound
        unknown (:class:`~tafa.signature.kinks.Kinks`'s ``clip``: the clip's own kinks are not the
        network's, and a reference is served as the suspect is). As they are, with no reason, when
        nothing was clipped; as they are, with the reason a
        comparison there cannot be made, when too few probes are left."""
        if recognised is None or recognised.censored is None:
            return self, signature, None
        measurement = self.scheme.make_signature()
        keep, why = inside_points(measurement, self.probes, recognised.censored)
        if keep is None:
            return self, signature, why
        view = self.at_probes(keep)
        if self.second is not None and self.second.scheme.signature == "kinks":  # asked through the same clip
            clip = [list(pair) for pair in clip_bounds(recognised.answers, recognised.censored)]
            view = replace(view, second=self._geometry_with(clip=clip))
        return view, at_points(signature, keep, len(self.probes)), None

    def at_probes(self, keep: np.ndarray) -> "Fingerprint":
        """This fingerprint at the probes ``keep`` selects (booleans or indices), the owner's (and
        the parent's) signature with them; no coarse scale or label stage."""
        n = len(self.probes)
        return replace(self, probes=self.probes.subset(keep), owner_signature=at_points(self.owner_signature, keep, n),
                       parent_signature=at_points(self.parent_signature, keep, n) if self.parent_signature else {},
                       coarse={}, labels=None)

    def coarse_stage(self, averaged: bool = False) -> "Fingerprint | None":
        """This fingerprint at its coarse scale (:mod:`tafa.signature.scales`): the same probes at
        the coarse step, the owner's coarse signature, one stage; ``None`` without one.
        ``averaged``: as the coarse scale decides, each difference averaged over steps jittered
        around the coarse one (:class:`~tafa.signature.scales.JitteredDerivatives`: the centres once,
        the stepped inputs 4 times), for the suspect and its references alike."""
        if not self.coarse:
            return None
        meta = {key: value for key, value in self.meta.items() if key != OWNER_INT8_SCORE}
        if COARSE_INT8_SCORE in self.meta:
            meta[OWNER_INT8_SCORE] = self.meta[COARSE_INT8_SCORE]
        scheme = self.scheme
        owner = _without_steps(self.coarse)
        if averaged and scheme.signature == "derivatives":
            scheme = _with_smoothed(scheme) if SMOOTHED in owner else replace(
                scheme, signature="jittered-derivatives", signature_params={"jitter": list(JITTER)})
        elif SMOOTHED in owner:  # one step: no smoothed outputs to compare
            owner.pop(SMOOTHED)
            meta.pop(OWNER_INT8_SCORE, None)  # the int8 copy's line is the averaged scale's
        return replace(self, scheme=scheme, probes=coarse_probes(self.probes, self.coarse["steps"]),
                       owner_signature=owner, meta=meta, second=None, coarse={}, labels=None, extraction=None,
                       datalike=None)

    def measure_coarse(self, suspect: Model, fine: Signature,
                       screen: bool = False) -> tuple[Score, float, Recognised] | None:
        """The suspect's coarse-scale score, its roughness relative to the owner's (how far its
        answers at the fingerprint's step are from a ReLU network's, :func:`~tafa.signature.scales.roughness`)
        and how its coarse answers were recognised; ``None`` without a coarse scale, or for an
        adaptive measurement. ``screen`` (for a suspect nothing but its roughness could send to the
        coarse scale): first at the first :data:`~tafa.signature.scales.SCREEN_PROBES` probes, and
        when the upper quartile of its size ratios there is below
        :data:`~tafa.signature.scales.SCREEN_LIMIT` times the owner's (far from rough), that
        measurement is the answer (its score and roughness over those probes); else every probe."""
        stage = self.coarse_stage()
        measurement = self.scheme.make_signature()
        if stage is None or measurement.adaptive or "derivatives" not in fine:
            return None
        if screen and len(stage.probes) > SCREEN_PROBES:
            first = np.arange(SCREEN_PROBES)
            screened = self.at_probes(first)._coarse_at(suspect, at_points(fine, first, len(self.probes)),
                                                        stage.at_probes(first))
            if screened[3] < SCREEN_LIMIT and screened[2].quantised is None:
                return screened[:3]
        return self._coarse_at(suspect, fine, stage)[:3]

    def _coarse_at(self, suspect: Model, fine: Signature,
                   stage: "Fingerprint") -> tuple[Score, float, Recognised, float]:
        """:meth:`measure_coarse` at ``stage``'s probes (``self`` and ``fine`` at the same ones), and
        the upper quartile of the size ratios relative to the owner's median (the screen's)."""
        measurement = self.scheme.make_signature()
        answers = suspect(measurement.inputs(stage.probes))
        signature, recognised = assemble_suspect(measurement, stage.probes, answers, stage.owner_signature)
        own = roughness(self.owner_signature, stage.owner_signature)
        ratios = size_ratios(fine, signature)
        if own <= 0:
            return stage.compare(signature), float("inf"), recognised, float("inf")
        return (stage.compare(signature), float(np.median(ratios)) / own, recognised,
                float(np.quantile(ratios, SCREEN_QUANTILE)) / own)

    def weight_evidence(self, suspect: ModelLike, references: Iterable[ModelLike] | None = None) -> WeightEvidence:
        """Weight evidence (:mod:`tafa.weights`) for a suspect whose weights can be read (a file
        opened by :func:`tafa.open_model`, or a torch module): its units aligned with the owner's
        kept layers and tested against "independently initialised". ``references``
        (independent models whose weights can be read) rank the alignment statistic too. Not
        applicable (no error) when this fingerprint keeps no owner layers, when the suspect's
        weights cannot be read (a service) or its first layer reads its inputs differently."""
        if not self.owner_layers:
            return WeightEvidence(False, "the fingerprint keeps no owner weights (made without "
                                         "--white-box keep / weights=True, from a black-box owner, or by an older "
                                         "tafa)")
        # only as many layers as the owner keeps are compared: no more are read
        layers = suspect_layers(suspect, max_layers=len(self.owner_layers))
        if layers is None:
            return WeightEvidence(False, "the suspect's weights cannot be read (a service, or a file tafa "
                                         "could not import)")
        found = compare(self.owner_layers, layers)
        if found.applicable and references:
            statistics = []
            for reference in references:
                read = suspect_layers(reference, max_layers=len(self.owner_layers))
                other = compare(self.owner_layers, read) if read is not None else None
                if other is not None and other.applicable and other.statistic is not None:
                    statistics.append(other.statistic)
            found.with_references(statistics)
        return found

    def describe(self) -> dict[str, Any]:
        """A summary for reports and the command line."""
        return {"scheme": self.scheme.name, "domain": self.domain.describe(), "points": len(self.probes),
                "directions": 0 if self.probes.directions is None else int(self.probes.directions.shape[1]),
                "queries_per_verification": self.queries(),
                **({"queries_per_stage": self.stage_queries(), "stages": self.stage_names()}
                   if self.later_stages() else {}),
                "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "owner_sha256": self.owner_sha256,
                "created": self.created, "analysis": self.probes.info.get("analysis"),
                **({"probes_selected": self.probes.info["selected"]} if "selected" in self.probes.info else {}),
                **({"label_stage": describe_labels(len(self.labels.probes), self.labels.meta,
                                                   is_free(self.labels.scheme))} if self.labels is not None else {}),
                "sha256": self.sha256, **{k: v for k, v in self.meta.items() if k != "tafa_version"}}


def _score_value(stage: "Fingerprint", signature: Signature) -> float:
    """``stage``'s score of a signature (the owner's remade through a grid: :mod:`tafa.decide.resolution`)."""
    return stage.compare(signature).value


#: How :func:`run_later_stages` measures a stage: ``(stage, model, threshold)`` to its score (``None``:
#: none) and how far it went (:meth:`Fingerprint.score_until`'s second value).
StageMeasure = Callable[["Fingerprint", Model, "float | None"], "tuple[float | None, dict[str, Any] | None]"]


def _score_until(stage: "Fingerprint", model: Model,
                 threshold: float | None) -> tuple[float | None, dict[str, Any] | None]:
    """:func:`run_later_stages`'s measure for ``tafa verify``: :meth:`Fingerprint.score_until`."""
    value, stopped = stage.score_until(model, threshold)
    return value.value, stopped


def run_later_stages(model: Model, later: Sequence["Fingerprint"], first: dict[str, Any], rule: Rule | None, *,
                     table: np.ndarray | None = None, alpha: float = 0.0, exact: str | None = None,
                     measure: StageMeasure = _score_until) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """The records of the first stage (``first``, measured) and of each ``later`` stage as ``tafa
    verify`` runs them: a stage only when the earlier ones do not already fire, and stopped once
    its threshold is out of reach (never a false positive more). The thresholds are ``rule``'s;
    with ``table`` (the references' scores at every stage) the stages decide together
    (:meth:`Rule.joint <tafa.decide.rule.Rule.joint>` at ``alpha``, ``exact``: an exact stage
    beside them), the stages not measured yet at their least favourable, and the second value
    holds what each stage was stopped against. ``measure`` measures a stage (a scan's keeps a
    failing stage from sinking the others)."""
    records = [first]
    names = [first["name"], *(stage.scheme.name for stage in later)]
    needed: dict[int, float] = {}  # what a stage was stopped against, when the stages decide together
    for index, stage in enumerate(later, start=1):
        threshold = None
        if table is not None:  # the stages together: the ones not measured yet at their least favourable
            known = _joint_scores(records, len(names))
            fired = Rule.joint(table, names, alpha, known, exact=exact).fires(known)
            threshold = None if fired else Rule.joint_needs(table, alpha, known, index, exact=exact)
            if threshold is not None:
                needed[index] = threshold
        else:
            fired = rule is not None and rule.fires([record["score"] for record in records])
            threshold = None if rule is None else rule.stages[index].threshold
        if fired:
            records.append({"name": stage.scheme.name, "score": None, "queries": 0, "seconds": 0.0})
            continue
        started, before = time.perf_counter(), model.queries
        value, stopped = measure(stage, model, threshold)
        records.append({"name": stage.scheme.name, "score": value, "queries": model.queries - before,
                        "seconds": time.perf_counter() - started, **({} if stopped is None else {"stopped": stopped})})
    return records, needed


def joint_rule(records: list[dict[str, Any]], table: np.ndarray, names: Sequence[str], alpha: float,
               needed: dict[int, float], *, exact: str | None = None, notes: Sequence[str] = ()) -> Rule:
    """The rule made for one suspect whose stages decide together, from :func:`run_later_stages`'
    ``records`` and ``needed`` with the references' ``table``: :meth:`Rule.joint
    <tafa.decide.rule.Rule.joint>` with a stage not measured or stopped taken as unknown (at its
    least favourable), each stopped stage showing the threshold it was stopped against."""
    together = Rule.joint(table, names, alpha, _joint_scores(records, len(names)), exact=exact, notes=notes)
    return _stopped_against(needed, records, together)


def _stopped_against(needed: dict[int, float], stages: list[dict[str, Any]], rule: Rule) -> Rule:
    """``rule`` (:meth:`Rule.joint <tafa.decide.rule.Rule.joint>`) showing, for each stage stopped
    once out of reach, the threshold it was stopped against (its score, over the probes measured,
    is at or below it: the stage does not fire, as the rule, which cannot use it, says)."""
    for index, entry in enumerate(stages):
        if entry.get("stopped") and index in needed:
            rule.stages[index].threshold = rule.stages[index].rank_threshold = needed[index]
    return rule


def _joint_scores(stages: list[dict[str, Any]], count: int) -> list[float | None]:
    """The scores :meth:`Rule.joint <tafa.decide.rule.Rule.joint>` takes of a suspect's ``count``
    stages from the verdict's records so far: ``None`` for a stage not measured, or stopped
    (its score is over the probes measured, not a measurement like the references')."""
    known: list[float | None] = [None if entry.get("stopped") else entry["score"] for entry in stages]
    return known + [None] * (count - len(known))


def _consistency_note(model: Model) -> str | None:
    """What a service's re-asked inputs showed (services re-ask a few inputs of every request;
    ``None`` for a model that does not, or when they all agreed)."""
    return None if model.consistency is None else model.consistency.note()


def _open_owner_file(path: str | os.PathLike[str], input_shape: tuple[int, ...] | None) -> Model:
    """The owner model in the file ``path`` (:func:`tafa.models.open_model`: run in the sandbox,
    never unpickled); a service URL is refused: an owner fingerprints its own model file."""
    from .models import open_model

    if str(path).startswith(("http://", "https://")):
        raise InvalidParameter("A model on a service can be verified but not fingerprinted: the owner "
                               "fingerprints its own model file.")
    return open_model(path, input_shape=input_shape)


def _second_stage(scheme: Scheme, owner: Model, domain: Domain, seed: int, wanted: bool | None, parent: bool,
                  progress: bool) -> tuple["Fingerprint | None", dict[str, Any]]:
    """The second stage of ``scheme`` for ``owner`` (``None`` where it does not apply, or is
    not ``wanted``), and what to record about it."""
    if not scheme.second or wanted is False:
        return None, {"made": False, "why": "not asked for" if scheme.second else "the scheme has none"}
    from .relu.linearise import NotPiecewiseLinear, NotWhiteBox

    module = owner.torch_module()
    reason = None
    if parent:
        reason = "a parent is declared (the second stage is not measured relative to a parent)"
    elif module is None:
        reason = "the owner is not a torch module the analysis can read"
    second = None
    if reason is None:
        try:
            second = Fingerprint.create(owner, domain, scheme=scheme.second, seed=seed, progress=progress,
                                        time_budget=None, second_stage=False, white_box_only=True)
        except NotWhiteBox as error:
            reason = f"its lines could not be aimed white-box: {error}"
        except NotPiecewiseLinear as error:
            reason = f"no boundary to measure ({one_line(error)})"
    if reason is not None:
        if wanted:
            raise InvalidParameter(f"No second stage ({scheme.second}) for this owner: {reason}.")
        return None, {"made": False, "scheme": scheme.second, "why": reason}
    assert second is not None
    return second, {"made": True, "scheme": scheme.second, "queries": second.queries(),
                    "lines": len(second.probes), "fingerprint_seconds": second.meta.get("fingerprint_seconds")}


def _extraction_stage(scheme: Scheme, owner: Model, domain: Domain, seed: int, wanted: bool | None,
                      parent: bool, budget: float | None,
                      progress: bool = False) -> tuple["Fingerprint | None", dict[str, Any]]:
    """The extraction stage of ``scheme`` for ``owner`` (:attr:`Scheme.extraction`; ``None`` where
    it does not apply, or ``wanted`` is ``False``: no later stage), and what to record about it.
    For an owner answering a vector of values (a classifier: the owners the data-free label stage
    applies to, a torch module) it is the scheme's, at inputs found on the owner's gradients; for
    one answering a single value or an image (a regressor, a decoder: no confident inputs) it is the
    outputs stage (:data:`OUTPUTS_STAGE`, at domain draws, any owner). Never with a declared
    parent: siblings fine-tuned from one parent share the parent's outputs as students share their
    teacher's. Inputs found on the gradients only within ``budget`` seconds (:func:`_on_gradients`)."""
    if not scheme.extraction or wanted is False:
        return None, {"made": False, "why": "not asked for" if scheme.extraction else "the scheme has none"}
    vector = _answers_vector(owner)
    name = scheme.extraction if vector else OUTPUTS_STAGE
    reason = None
    if parent:
        reason = "a parent is declared (its fine-tunes share its outputs as students share their teacher's)"
    elif vector and not free_stage_applies(owner):
        reason = (f"the owner is not a torch module answering a vector of 2 to {FREE_MAX_OUTPUTS:,} values from at "
                  f"most {FREE_MAX_INPUT:,} input values (its confident inputs are found on its gradients)")
    stage = None
    if reason is None and vector:
        stage, reason = _on_gradients(owner, domain, get_scheme(name), seed, "its confident inputs", budget, progress)
    elif reason is None:
        stage = Fingerprint.create(owner, domain, scheme=get_scheme(name), seed=seed, time_budget=None,
                                   second_stage=False, free_labels=False)
    if stage is None:
        return None, {"made": False, "scheme": name, "why": reason}
    return stage, {"made": True, "scheme": name, "queries": stage.queries(),
                   "fingerprint_seconds": stage.meta.get("fingerprint_seconds")}


def _data_style_stage(scheme: Scheme, owner: Model, domain: Domain, seed: int, wanted: bool | None,
                      parent: bool) -> tuple["Fingerprint | None", dict[str, Any]]:
    """The data-like stage of ``scheme`` for ``owner`` (:attr:`Scheme.data_style`; ``None`` where it
    does not apply, or ``wanted`` is ``False``: no later stage), and what to record about it. Any
    owner (its probes need no analysis); never with a declared parent (it is not measured relative
    to one)."""
    if not scheme.data_style or wanted is False:
        return None, {"made": False, "why": "not asked for" if scheme.data_style else "the scheme has none"}
    if parent:
        return None, {"made": False, "scheme": scheme.data_style,
                      "why": "a parent is declared (the data-like stage is not measured relative to a parent)"}
    stage = Fingerprint.create(owner, domain, scheme=get_scheme(scheme.data_style), seed=seed, time_budget=None,
                               second_stage=False, free_labels=False)
    return stage, {"made": True, "scheme": scheme.data_style, "queries": stage.queries(),
                   "fingerprint_seconds": stage.meta.get("fingerprint_seconds")}


def _seconds(value: float) -> str:
    """An estimate in seconds for people: whole seconds from 10 on (``6,070``), two digits below."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _on_gradients(owner: Model, domain: Domain, scheme: Scheme, seed: int, what: str, budget: float | None,
                  progress: bool = False) -> tuple["Fingerprint | None", str | None]:
    """A stage of ``owner`` whose probes are found on its gradients (the data-free label stage, the
    extraction stage), or ``None`` and why: when its search would take longer than ``budget``
    seconds at the reference speed (counted on the owner's network, the same on every machine:
    :meth:`~tafa.probes.base.ProbeStrategy.plan`; ``None``: no budget), or when torch cannot
    differentiate the owner (an operator without a gradient, a forward run without autograd).
    The fingerprint is made without it."""
    try:
        plan = scheme.build()[0].plan(owner, domain, n=scheme.points, k=scheme.directions,
                                      signature_queries=scheme.points * (2 * scheme.directions + 1), budget=budget)
        if budget is not None and plan is not None and plan.seconds > budget:
            why = (f"{what} were not searched for: about {_seconds(plan.seconds)} s on one core ({plan.summary}), "
                   f"over the {budget:g} s time budget (a larger budget makes the stage)")
            if progress:
                tqdm.write(f"{scheme.name} stage left out: {why}")
            return None, why
        return Fingerprint.create(owner, domain, scheme=scheme, seed=seed, time_budget=None, second_stage=False,
                                  free_labels=False, progress=progress), None
    except RuntimeError as error:
        return None, f"{what} could not be found ({type(error).__name__}: {one_line(error)})"


def _label_stage(owner: Model, domain: Domain, data: np.ndarray, seed: int) -> Fingerprint:
    """The label stage of ``owner`` from its inputs ``data`` (:mod:`tafa.label_stage`): IPGuard's
    points from them, clipped into the domain, with the owner's labels there."""
    inputs, record = owner_inputs(owner, data)
    stage = Fingerprint.create(owner, domain, scheme=label_scheme(), seed=seed, data=domain.clip(inputs),
                               time_budget=None, second_stage=False)
    stage.meta.update(record)
    return stage


def _owner_int8_score(owner: Model, probes: Probes, signature: Any, similarity: Similarity,
                      owner_signature: Signature, relative: Any = None) -> float | None:
    """Score of the owner's own int8 weight-rounded copy (one more signature measurement), when
    the owner is a torch module: a reference scoring as high is a probable copy of the owner."""
    module = owner.torch_module()
    if module is None:
        return None
    from .attacks.quantize import quantize

    rounded = TorchModel(quantize(copy.deepcopy(module).float(), 8), owner.input_shape)
    relative = relative or (lambda measured: measured)
    return float(similarity.compare(relative(owner_signature), relative(signature.measure(rounded, probes))).value)


def _parent_reference_models(owner: Model, parent: Model, domain: Domain, count: int, seed: int
                             ) -> References | None:
    """The data-free references of a declared parent (``None`` when either model is not a torch
    module, or ``count`` is 0)."""
    owner_module, parent_module = owner.torch_module(), parent.torch_module()
    if owner_module is None or parent_module is None or count == 0:
        return None
    from .attacks.references import parent_references

    return parent_references(copy.deepcopy(parent_module).float(), copy.deepcopy(owner_module).float(), domain,
                             count=count, seed=seed)


def _parent_model(parent: ModelLike, owner: Model, signature: Any) -> Model:
    """The declared parent as a :class:`Model`, refused (one line) unless it takes and returns
    what the owner does and the scheme's signature can be measured relative to it."""
    if not signature.relative_keys:
        raise InvalidParameter(f"The parent parameter of Fingerprint.create needs a scheme whose signature can be "
                               f"measured relative to a parent (outputs or derivatives); got signature "
                               f"{signature.name!r}.")
    try:
        model = as_model(parent, owner.input_shape, name="parent")
    except (RuntimeError, ValueError) as error:  # a torch module whose layers do not fit the owner's inputs
        raise ShapeMismatch(f"The parent does not take the owner's inputs of shape {owner.input_shape} "
                            f"({one_line(error)}).") from None
    if model.input_shape != owner.input_shape or int(np.prod(model.output_shape)) != int(np.prod(owner.output_shape)):
        raise ShapeMismatch(f"The parent {model.name} takes inputs of shape {model.input_shape} and returns "
                            f"{model.output_shape}; the owner takes {owner.input_shape} and returns "
                            f"{owner.output_shape}: a parent must have the owner's input and output shapes.")
    return model


def _default_references(scheme: Scheme, owner: Model, domain: Domain, seed: int) -> References:
    """Data-free references for a ``"data-free"`` scheme; other learned schemes need them given."""
    module = owner.torch_module()
    if scheme.references is not ReferenceSource.DATA_FREE:
        raise InvalidParameter(f"Scheme {scheme.name!r} learns its decision from reference models: pass "
                               "references=References(positives=[...], negatives=[...]) (or use a data-free scheme).")
    if module is None:
        raise InvalidParameter(f"Scheme {scheme.name!r} makes its references from the owner's weights, but "
                               f"{owner.name} is not available as a torch module.")
    from .attacks.references import data_free_references

    return data_free_references(copy.deepcopy(module).float(), domain, seed=seed)


def _answers_vector(owner: Model) -> bool:
    """Whether ``owner`` answers a vector of 2 or more values (a classifier's scores), not a single
    value or an image (a regressor, a decoder)."""
    outputs = tuple(owner.output_shape)
    return len(outputs) == 1 and outputs[0] >= 2


def _with_smoothed(scheme: Scheme) -> Scheme:
    """``scheme`` at the coarse scale of an owner whose smoothed outputs are kept: its similarity
    averaged with theirs (:class:`~tafa.decide.similarity.WithSmoothedOutputs`), differences
    averaged over the jittered steps."""
    return replace(scheme, signature="jittered-derivatives", signature_params={"jitter": list(JITTER)},
                   similarity="with-smoothed-outputs",
                   similarity_params={"base": scheme.similarity, "params": dict(scheme.similarity_params)})


def _has_coarse_scale(scheme: Scheme) -> bool:
    """Whether fingerprints of ``scheme`` get a coarse scale: the method's derivative signature
    compared by its fixed similarity (a learned verifier is fitted at the fine scale only)."""
    return scheme.signature == "derivatives" and scheme.similarity == "derivative-cosine" \
        and scheme.probes != "data-like"  # the data-like stage: the first stage's scales decide rough answers


def _without_steps(coarse: Signature) -> Signature:
    return {key: value for key, value in coarse.items() if key != "steps"}
