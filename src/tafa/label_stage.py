"""The label stage: evidence a service that answers only labels cannot hide (issue 20).

A service that answers a one-hot label, a top-k list, or probabilities rounded to a few decimals
keeps too little at data-free probes: those are mostly confident, and confident probabilities round
to 0 and 1 at any step (docs/method.md, "What an interface cannot hide"). What such a service still
shows is *which class wins*, and where the owner's classes meet, near the owner's own inputs, a
derived copy's classes meet in nearly the same places, while an independent model of the task draws
its boundaries elsewhere.

So an owner who has its own inputs (the data it trained on, or any sample of its task) can add a
**label stage** to the fingerprint (``tafa fingerprint --owner-data FILE``,
``Fingerprint.create(..., owner_data=X)``): points just across the owner's decision boundaries,
each found white-box from one of those inputs (IPGuard's optimisation,
:class:`tafa.probes.ipguard.IPGuardProbes`, at the margin :data:`LABEL_MARGIN`), and the owner's
label at each. A suspect's score there is the fraction of those points where its label (the argmax
of whatever it answers) is the owner's; the references' scores at the same points calibrate it.

The stage is used where it is needed, decided from the suspect's interface, never from its score
(so the bound holds for each kind of suspect): a suspect whose answers keep little more than labels
(:func:`keeps_labels_only`: a labels-only service, answers on a grid, or a top-k list) is decided by
its coarse scale and the label stage together, each at half of alpha
(:class:`~tafa.decide.rule.Rule`); every other suspect as before. The stage is stored in the
fingerprint file under ``labels`` and covered by its SHA-256, not by its reproducible content hash
(the owner's inputs would be needed to re-create it): the inputs' SHA-256 and count are in its
metadata.

Measured (``python benchmarks/label_stage.py``, docs/method.md): the margin, and the interface
families of the classification zoos with the stage.

**Without the owner's inputs** a white-box classifier's fingerprint gets a *data-free* label stage
(:func:`free_label_scheme`): points near the owner's boundaries found from domain draws
(:class:`~tafa.probes.pairs.PairBoundaryProbes`), where the owner's two leading classes trade off,
and the suspect's soft-value differences there in random directions compared with the owner's
(:mod:`tafa.signature.pairs`, 1,600 queries): rounded probabilities and top-k lists keep those
values, a one-hot label their sign. It decides only suspects whose answers are probabilities (on a
grid), a top-k list, a one-hot label or labels alone (:func:`decides`); the references are then
asked through the same interface (:func:`replays`), since an innocent service would answer through
it too, and a label or a rounded probability keeps less of any model than its logits do.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .errors import InvalidParameter
from .models.base import Model
from .scheme import Scheme, get_scheme

if TYPE_CHECKING:
    from .attacks.interface import InterfacedModel
    from .signature.interface import Recognised

#: The label stage's name in a verdict's stages.
LABEL_STAGE = "labels"
#: Points just across the owner's boundaries: one query each.
LABEL_POINTS = 100
#: The owner's logit gap at each point (IPGuard's ``k``): 0.5 (the paper's 0.01 puts a point so
#: close to the boundary that the owner's own int8 copy disagrees at a quarter of them; 2 leaves
#: independent models agreeing at most points: python benchmarks/label_stage.py --margins).
LABEL_MARGIN = 0.5
#: The fewest owner inputs a label stage is made from.
MIN_OWNER_INPUTS = 10


def label_scheme() -> Scheme:
    """The label stage's scheme: IPGuard's points at :data:`LABEL_MARGIN`, :data:`LABEL_POINTS` of them."""
    return replace(get_scheme("ipguard"), probe_params={"margin": LABEL_MARGIN}, points=LABEL_POINTS)


def owner_inputs(owner: Model, data: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """``data`` as float64 inputs of ``owner`` and what the stage records of them (their count and
    SHA-256), or :class:`~tafa.errors.InvalidParameter` (one line) where a label stage cannot be
    made from them: a black-box owner, an owner with one output, too few inputs, wrong shapes,
    values that are not finite."""
    data = np.asarray(data, dtype=np.float64)
    if owner.torch_module() is None:
        raise InvalidParameter("A label stage needs the owner as a torch module or a model file (its points are "
                               "found on the owner's gradients).")
    if int(np.prod(owner.output_shape)) < 2:
        raise InvalidParameter(f"A label stage needs a classifier with at least two outputs; the owner answers "
                               f"{list(owner.output_shape)}.")
    if data.ndim < 1 or data.shape[1:] != tuple(owner.input_shape) or len(data) < MIN_OWNER_INPUTS:
        raise InvalidParameter(f"The owner's inputs for a label stage must be at least {MIN_OWNER_INPUTS} inputs of "
                               f"shape {list(owner.input_shape)}; got an array of shape {list(data.shape)}.")
    if not np.all(np.isfinite(data)):
        raise InvalidParameter("The owner's inputs for a label stage hold NaN or infinite values.")
    return data, {"owner_inputs": len(data),
                  "owner_inputs_sha256": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()}


def keeps_labels_only(model: Model, recognised: "Recognised | None") -> bool:
    """Whether ``model``'s answers keep little more than its labels: a labels-only service, answers
    on a grid (one-hot labels, rounded probabilities, integer logits), or a top-k list (the rest
    zeroed). Decided from the interface alone, never from a score."""
    if model.labels_only:
        return True
    return recognised is not None and (recognised.quantised is not None
                                       or recognised.kind == "top-k probabilities")


def describe(points: int, meta: dict[str, Any], free: bool = False) -> dict[str, Any]:
    """What a fingerprint's description says of its label stage (``points``, its ``meta``;
    ``free``: the data-free stage)."""
    if free:
        return {"points": points, "directions": FREE_DIRECTIONS, "margin": FREE_MARGIN, "owner_inputs": None,
                "data_free": True}
    return {"points": points, "margin": LABEL_MARGIN, "owner_inputs": meta.get("owner_inputs"),
            "owner_inputs_sha256": meta.get("owner_inputs_sha256")}


#: The data-free label stage: points, shared random directions per point, the owner's logit gap
#: at each point (python benchmarks/soft_boundary.py; docs/method.md, "The data-free label stage").
FREE_POINTS = 100
FREE_DIRECTIONS = 8
FREE_MARGIN = 0.5
#: The largest owner a data-free label stage is made for: input values, outputs (its points are
#: stored in the fingerprint, 8 bytes a value each).
FREE_MAX_INPUT = 1 << 16
FREE_MAX_OUTPUTS = 1000
#: The interfaces the data-free label stage decides (besides labels-only services): answers that
#: keep each class's share or the winning label.
LABEL_KINDS = ("probabilities", "top-k probabilities", "one-hot labels")


def free_label_scheme() -> Scheme:
    """The data-free label stage's scheme (see module doc)."""
    return Scheme("soft-labels", probes="pair-boundary", signature="pair-differences",
                  similarity="pair-correlation", points=FREE_POINTS, directions=FREE_DIRECTIONS,
                  probe_params={"margin": FREE_MARGIN}, tasks=("classification",), benchmark=False,
                  description="data-free label stage: soft-value differences of the owner's two leading classes "
                              "near its boundaries")


def free_stage_applies(owner: Model) -> bool:
    """Whether a data-free label stage can be made for ``owner``: a torch module (its points are
    found on its gradients) answering a vector of 2 to :data:`FREE_MAX_OUTPUTS` values, with at
    most :data:`FREE_MAX_INPUT` input values."""
    outputs = tuple(owner.output_shape)
    return (owner.torch_module() is not None and len(outputs) == 1 and 2 <= outputs[0] <= FREE_MAX_OUTPUTS
            and int(np.prod(owner.input_shape)) <= FREE_MAX_INPUT)


def is_free(scheme: Scheme) -> bool:
    """Whether a label stage of ``scheme`` is the data-free one (not one made from the owner's inputs)."""
    return scheme.signature == "pair-differences"


def decides(stage: Scheme | None, model: Model, recognised: "Recognised | None") -> bool:
    """Whether the label stage of scheme ``stage`` (``None``: no label stage) decides ``model``
    (beside the coarse scale): its answers keep
    little more than labels (:func:`keeps_labels_only`), and for the data-free stage they are
    probabilities, a top-k list, a one-hot label or labels alone (:data:`LABEL_KINDS`; integers and
    other grids are left to the coarse scale). Decided from the interface, never from a score."""
    if stage is None or not keeps_labels_only(model, recognised):
        return False
    if not is_free(stage):
        return True
    return model.labels_only or (recognised is not None and recognised.kind in LABEL_KINDS)


def decides_alone(model: Model, recognised: "Recognised | None") -> bool:
    """Whether ``model``'s answers are labels themselves (a labels-only service, or one-hot rows):
    then the label stage decides alone, at the whole alpha, as for a labels-only service; the coarse
    scale, which finds nothing in a label (docs/method.md, "The interface table"), is not asked."""
    return model.labels_only or (recognised is not None and recognised.kind == "one-hot labels")


#: The softmax temperatures a reference answers at when the suspect's probabilities are rounded:
#: rounding hides the suspect's temperature, and a reference keeps more of itself through the
#: rounding at some temperatures than at others, so each reference counts at its highest score
#: over them (the conservative null; python benchmarks/interface_references.py measured the same
#: for the coarse scale).
REPLAY_TEMPERATURES = (0.5, 1.0, 2.0, 4.0, 8.0)


def replays(model: Model, suspect: Model, recognised: "Recognised | None") -> "list[Model | InterfacedModel]":
    """``model`` (a reference, answering logits) asked through the interface ``suspect`` was
    recognised behind: one-hot labels for a labels-only or one-hot suspect; otherwise a softmax,
    then its ``k`` largest kept (top-k), then rounded to the suspect's grid, at each of
    :data:`REPLAY_TEMPERATURES` when rounded (unrounded, the correlation does not move with the
    temperature: one). ``[model]`` for any other interface."""
    from .attacks.interface import Interface, InterfacedModel, one_hot, per_row, softmax, top_k

    kind = None if recognised is None else recognised.kind
    transforms: dict[str, Callable[[np.ndarray], np.ndarray]]
    if suspect.labels_only or kind == "one-hot labels":
        transforms = {"one-hot labels": one_hot}
    elif kind in ("probabilities", "top-k probabilities"):
        assert recognised is not None
        step, shown = recognised.quantised, recognised.shown

        def served(temperature: float) -> Callable[[np.ndarray], np.ndarray]:
            def transform(rows: np.ndarray) -> np.ndarray:
                probabilities = softmax(rows, temperature)
                if shown is not None:
                    probabilities = top_k(probabilities, shown)
                return probabilities if step is None else np.round(probabilities / step) * step
            return transform
        name = kind + ("" if step is None else f" rounded to {step:.3g}")
        temperatures = (1.0,) if step is None else REPLAY_TEMPERATURES
        transforms = {f"{name} at temperature {t:g}": served(t) for t in temperatures}
    else:
        return [model]
    return [InterfacedModel(model, Interface(f"as the suspect: {name}", "classification", per_row(transform)))
            for name, transform in transforms.items()]


def asked_scores(score: Callable[[Model], float], references: list[Model], suspect: Model,
                 recognised: "Recognised | None") -> list[float]:
    """Each reference's label-stage ``score`` as it would answer through ``suspect``'s interface
    (:func:`replays`: its highest over the temperatures a rounding hides)."""
    return [max(score(asked) for asked in replays(reference, suspect, recognised)) for reference in references]


__all__ = ["FREE_DIRECTIONS", "FREE_MARGIN", "FREE_POINTS", "LABEL_KINDS", "LABEL_MARGIN", "LABEL_POINTS",
           "LABEL_STAGE", "decides", "decides_alone", "describe", "free_label_scheme", "free_stage_applies", "is_free",
           "keeps_labels_only", "label_scheme", "owner_inputs", "REPLAY_TEMPERATURES", "asked_scores", "replays"]
