"""``tafa bench``: every scheme on the same zoos, in one run, with one set of metrics.

For each zoo and each scheme that applies to its task kind: fingerprint the owner (timed),
score every scored, calibration and shared-initialisation model (timed, queries counted),
calibrate the threshold on the calibration models exactly as ``tafa verify`` does, at
alpha = 0.05 and 0.01, and compute AUC, TPR at FPR <= 1% and at FPR = 0 (with bootstrap
intervals), ARUC on the common calibrated scale (:func:`tafa.bench.metrics.calibrated_scale`)
and the best threshold's min(robustness, uniqueness), the calibrated rule's true and
false-positive rates on the scored models with the false-positive rate of every
independent family and its binomial 95% interval, and the detection rate per attack
family. Extraction (distillation) is reported in its own family and kept out of the
post-processing metrics; models trained from the owner's initialisation are reported in
their own row and counted in neither rate. Each scenario also gets a pooled entry over its
zoos (scores against each zoo's own owner; the rule uses each zoo's own thresholds).

A zoo with a shared public parent (:class:`~tafa.bench.parents.ParentSpec`) is scored twice
by every scheme whose signature can be taken relative to a parent: as is (``NAME``: the owner
fingerprinted as if it had no parent) and parent-aware (``NAME+parent``: the owner
fingerprinted with ``parent=`` the zoo's parent, as ``tafa fingerprint --parent`` does). Its
negatives are the siblings and the parent; the parent zoos are pooled together, as
``shared parent (pooled)``, not into their task kind's pool.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..references import References
from ..decide.learned import LearnedSimilarity
from ..decide.rule import Decision, Rule
from ..decide.sequential import measured_part, stopped_score
from ..decide.threshold import references_needed
from ..fingerprint import Fingerprint
from ..models.base import Model, TorchModel
from ..signature.base import Signature
from ..signature.scales import bend_of, coarse_decides, screen_applies
from ..label_stage import LABEL_STAGE, asked_scores, decides as label_stage_decides, decides_alone, is_free
from ..shown_stage import SHOWN_STAGE
from ..probes.base import CandidateCache
from ..scheme import SCHEMES, get_scheme
from . import metrics
from .report import write_report
from .scenarios import SIZES
from .utility import KEEP, measure_name, zoo_utilities
from .zoo import Zoo, ZooSpec, build_zoos

#: The false-positive level the calibrated rule is asked for (the CLI's default).
ALPHA = 0.01
#: Every level the rule is checked at (the first is reported per family, each pooled). At each,
#: the rule is the one ``tafa verify --alpha A`` makes from the zoo's calibration models as
#: references; where they are too few for ``A`` by rank, ``tafa verify --alpha A --parametric``
#: (a user would otherwise get ``undecided``), and the summary's ``method`` says which.
ALPHAS = (0.05, 0.01)
EXTRACTION = "extraction"
#: The role (and family) of the models trained from the owner's initialisation.
SHARED_INIT = "shared-init"

#: Per zoo (``""`` for a single zoo, else the zoo's name): the calibration at each alpha.
Rules = dict[str, dict[float, Rule]]


@dataclass
class Scored:
    """One model's score under one scheme, and on the common calibrated scale."""

    model: str
    label: int
    family: str
    role: str
    score: float
    calibrated: float = float("nan")
    utility: float = float("nan")      # the model's utility as a share of the owner's (NaN: not measured)
    #: ``-log10`` of the score's p-value against its zoo's calibration rows, uncapped
    #: (:func:`metrics.evidence_decades`): what pooled figures rank by.
    evidence: float = float("nan")
    #: A scheme with stages: each stage's own score (``score`` then ranks the combined evidence,
    #: :func:`with_stages`, and the rule is each stage against its own threshold).
    stages: tuple[float, ...] = ()
    #: The evasion check judged the suspect's answers to depend on how it is asked (only measured
    #: on the evasion families' rows: :func:`evasion_suspects`).
    evasive: bool = False
    #: Its answers lie on a grid (:attr:`tafa.signature.interface.Recognised.quantised`): a score
    #: below the thresholds is then no evidence of independence (``undecided``, as in verify).
    quantised: bool = False
    #: The score at the fingerprint's coarse scale (:mod:`tafa.signature.scales`; NaN: none), and
    #: whether it decides (the answers at the fingerprint's step are not a ReLU network's: a grid,
    #: or derivative sizes off the owner's ratio between the scales), as in ``tafa verify``.
    coarse: float = float("nan")
    rough: bool = False
    #: The label stage's score (:mod:`tafa.label_stage`; NaN: not measured), and whether it decides
    #: with the coarse scale (answers that keep little more than labels, a fingerprint with a label
    #: stage), as in ``tafa verify``. Measured on the calibration rows too (their thresholds).
    labels: float = float("nan")
    lossy: bool = False
    #: For a row the data-free label stage decides: the calibration rows' label-stage scores asked
    #: through this row's interface (:func:`tafa.label_stage.asked_scores`), in their order (empty: the
    #: calibration rows' own ``labels`` calibrate it).
    label_references: tuple[float, ...] = ()
    #: The label stage decides the row alone, at the whole alpha (answers that are labels: one-hot
    #: rows, :func:`tafa.label_stage.decides_alone`); its coarse scale is not measured.
    labels_alone: bool = False
    #: Answers recognised as clipped (:mod:`tafa.signature.censoring`): the first stage is measured at
    #: the probes answered inside the clip, and these are the calibration rows' first-stage scores at
    #: the same probes, in their order (empty: not clipped). ``inside``: how many probes; ``too_few``:
    #: too few were left, and a score below the thresholds is no evidence of independence.
    censored: tuple[float, ...] = ()
    #: Of a clipped row, per later stage, the calibration rows' scores asked through its clip (the
    #: boundary geometry, :class:`~tafa.signature.kinks.Kinks`'s ``clip``), in their order.
    censored_later: tuple[tuple[float, ...], ...] = ()
    inside: int = 0
    too_few: bool = False
    #: A lossy row answering a top-k list: its scores on the classes shown (the first stage,
    #: :mod:`tafa.shown_stage`, then the boundary geometry where the fingerprint has it; empty: none),
    #: and per stage the calibration rows' asked through its list, in their order. They decide first,
    #: then the label stage, then the coarse scale, as in verify.
    shown: tuple[float, ...] = ()
    shown_references: tuple[tuple[float, ...], ...] = ()
    #: The per-probe values of the stage ``looked`` (an index into ``stages``; 0: none) whose score
    #: is their mean (the boundary geometry): the rule stops it once its threshold is out of reach,
    #: as verify does (:func:`as_verified`, :mod:`tafa.decide.sequential`).
    looked: int = 0
    lines: tuple[float, ...] = ()
    #: That stage's score is the lines' bounded mean: it also stops once its threshold is surely
    #: passed (:func:`~tafa.decide.sequential.bounded_mean`).
    settles: bool = False


def with_calibrated(rows: list[Scored]) -> list[Scored]:
    """``rows`` with ``evidence`` and ``calibrated`` set from their calibration rows' scores
    (:func:`metrics.evidence_decades`, :func:`metrics.calibrated_scale`)."""
    references = [r.score for r in rows if r.role == "calibration"]
    values = _against_own(rows, metrics.evidence_decades([r.score for r in rows], references))
    return [replace(r, evidence=float(v), calibrated=float(np.clip(v / metrics.CALIBRATED_DECADES, 0.0, 1.0)))
            for r, v in zip(rows, values)]


def with_utility(rows: list[Scored], relative: dict[str, float]) -> list[Scored]:
    """``rows`` with ``utility`` set from ``relative`` (model name -> share of the owner's utility);
    a model behind an interface (``BASE@INTERFACE``) has its base model's (the owner's: 1)."""
    shares = {"owner": 1.0, **relative}
    return [replace(r, utility=float(shares.get(r.model.split("@")[0].split("%")[0], float("nan")))) for r in rows]


def with_stages(rows: list[Scored]) -> list[Scored]:
    """Rows of a scheme with stages, ranked by their combined evidence: each stage's score
    against the calibration rows' scores at that stage (``-log10`` of its p-value,
    :func:`metrics.evidence_decades`), the smallest p-value times the number of stages
    (Bonferroni, as the rule); ``score`` and ``evidence`` are that value in decades,
    ``calibrated`` it on the calibrated scale."""
    count = len(rows[0].stages)
    references = [[r.stages[i] for r in rows if r.role == "calibration"] for i in range(count)]
    # a stage that did not run (the coarse scale decides the row, :func:`with_coarse`) counts as no evidence
    per_stage = [metrics.evidence_decades([r.stages[i] if np.isfinite(r.stages[i]) else min(references[i])
                                           for r in rows], references[i]) for i in range(count)]
    per_stage = [_against_own(rows, values, stage) for stage, values in enumerate(per_stage)]
    combined = _bonferroni(per_stage)
    return [replace(r, score=float(v), evidence=float(v),
                    calibrated=float(np.clip(v / metrics.CALIBRATED_DECADES, 0.0, 1.0)))
            for r, v in zip(rows, combined)]


def _against_own(rows: list[Scored], values: np.ndarray, stage: int = 0) -> np.ndarray:
    """``values`` of stage ``stage`` (evidence in decades against the calibration rows) with each
    clipped row's own instead: its score against the calibration rows' at its probes (the first
    stage, ``censored``) or asked through its clip (a later one, ``censored_later``; a stage that
    did not run counts as no evidence)."""
    own = [r.censored if stage == 0 else r.censored_later[stage - 1] if len(r.censored_later) >= stage else ()
           for r in rows]
    scores = [r.stages[stage] if r.stages else r.score for r in rows]
    return np.array([metrics.evidence_decades([score if np.isfinite(score) else min(mine)], list(mine))[0]
                     if mine else value for score, mine, value in zip(scores, own, values)])


def _bonferroni(per_stage: list[np.ndarray]) -> np.ndarray:
    """Evidence in decades of stages decided together: the smallest p-value times their number."""
    return np.maximum(np.max(np.stack(per_stage), axis=0) - np.log10(len(per_stage)), 0.0)


def with_coarse(rows: list[Scored], staged: bool) -> list[Scored]:
    """``rows`` whose coarse scale decides ranked by it: ``evidence`` from their coarse score against
    the calibration rows' coarse scores (one stage at the whole alpha, as ``tafa verify``
    decides them), and for a row the label stage decides too, the smallest of the two p-values
    times two (Bonferroni, as the rule); ``score`` that evidence for a scheme with stages, the
    coarse score otherwise."""
    references = [r.coarse for r in rows if r.role == "calibration" and np.isfinite(r.coarse)]
    if len(references) < 2 or not any(r.rough or r.lossy for r in rows):
        return rows
    values = metrics.evidence_decades([r.coarse if (r.rough or r.lossy) and not r.labels_alone else 0.0
                                       for r in rows], references)
    coarse = values.copy()
    labels = [r.labels for r in rows if r.role == "calibration" and np.isfinite(r.labels)]

    def against(row: Scored) -> list[float]:
        """The label-stage scores a lossy row is ranked against: its own (references asked through its
        interface), else the calibration rows'."""
        return list(row.label_references) or labels

    if any(r.lossy and len(against(r)) >= 2 for r in rows):
        by_labels = np.array([metrics.evidence_decades([r.labels], against(r))[0]
                              if r.lossy and len(against(r)) >= 2 else 0.0 for r in rows])
        values = np.where([r.labels_alone for r in rows], by_labels,
                          np.where([r.lossy for r in rows], _bonferroni([values, by_labels]), values))
        for i, row in enumerate(rows):  # a top-k row: the shown classes' stages too
            if row.shown_references and len(row.shown_references[0]) >= 2:
                shown = [metrics.evidence_decades([value], list(asked))[0]
                         for value, asked in zip(row.shown, row.shown_references)]
                values[i] = _bonferroni([np.array([v]) for v in [*shown, by_labels[i], coarse[i]]])[0]
    return [replace(r, evidence=float(v), calibrated=float(np.clip(v / metrics.CALIBRATED_DECADES, 0.0, 1.0)),
                    score=float(v) if staged or r.lossy else r.coarse) if r.rough or r.lossy else r
            for r, v in zip(rows, values)]


def calibrations(rows: list[Scored], stage_names: list[str] | None = None,
                 copy_line: float | None = None, coarse_copy_line: float | None = None) -> dict[float, Rule]:
    """The rule at every level of :data:`ALPHAS` from the calibration rows as references,
    made as ``tafa verify`` makes it (:meth:`~tafa.decide.rule.Rule.from_references`, which
    :meth:`Fingerprint.calibrate <tafa.fingerprint.Fingerprint.calibrate>` calls): rows scoring
    at or above the fingerprint's ``copy_line`` left out as probable copies, then as many stages
    as the rest support at that level (``stage_names``: the fingerprint's, one per score of a
    row with stages), parametric only where the rows are too few for it by rank: for a row with
    stages, too few for every stage's share of it (as ``tafa verify --parametric`` with the
    references a user without more would give; by rank alone, 40 calibration rows support two
    of three stages at 0.05, and a third stage would be measured at 0.01 and not at 0.05)."""
    references = [r for r in rows if r.role == "calibration"]
    count = len(rows[0].stages) if rows and rows[0].stages else 1
    names = stage_names or [f"stage {i + 1}" for i in range(count)]
    first = [r.stages[0] if r.stages else r.score for r in references]

    def later(keep: list[int]) -> list[list[float]]:
        return [[references[i].stages[stage] for i in keep] for stage in range(1, count)]

    rules = {alpha: Rule.from_references([r.model for r in references], first, alpha, stage_names=names,
                                         copy_line=copy_line, later=later,
                                         parametric=len(references) < references_needed(alpha / count))
             for alpha in ALPHAS}
    for row in rows:  # a clipped suspect: the rule from the references' scores at its probes
        if row.censored and row.role != "calibration":
            scores = list(row.censored)
            for alpha, rule in rules.items():
                rule.per_suspect[row.model] = Rule.from_references(
                    [r.model for r in references], scores, alpha, stage_names=names, copy_line=copy_line,
                    later=_picked(*row.censored_later),
                    parametric=len(references) < references_needed(alpha / count))
    coarse = [r.coarse for r in references]
    if references and all(np.isfinite(coarse)):
        for alpha, rule in rules.items():
            rule.coarse = Rule.from_references([r.model for r in references], coarse, alpha,
                                               stage_names=["coarse"], copy_line=coarse_copy_line,
                                               parametric=len(references) < references_needed(alpha))
            if all(np.isfinite(r.labels) for r in references):
                rule.coarse_labels = Rule.from_references(
                    [r.model for r in references], coarse, alpha, stage_names=["coarse", LABEL_STAGE],
                    copy_line=coarse_copy_line, parametric=len(references) < references_needed(alpha / 2),
                    later=lambda keep: [[references[i].labels for i in keep]])
            for row in rows:  # the label stage alone (labels as answers), at the whole alpha
                if row.labels_alone and row.role != "calibration":
                    asked = row.label_references or tuple(r.labels for r in references)
                    rule.per_suspect[row.model] = Rule.from_references(
                        [r.model for r in references], list(asked), alpha, stage_names=[LABEL_STAGE],
                        parametric=len(references) < references_needed(alpha))
            for row in rows:  # the shown classes, then the label stage, then the coarse scale: each asked
                # through the row's interface (the label stage's own scores where the row has none)
                if row.shown_references and row.role != "calibration":
                    asked = row.label_references or tuple(r.labels for r in references)
                    names = [SHOWN_STAGE, f"geometry ({SHOWN_STAGE})"][:len(row.shown)] + [LABEL_STAGE, "coarse"]
                    rule.per_suspect[row.model] = Rule.from_references(
                        [r.model for r in references], list(row.shown_references[0]), alpha, stage_names=names,
                        copy_line=copy_line, parametric=len(references) < references_needed(alpha / len(names)),
                        later=_picked(*row.shown_references[1:], asked, tuple(coarse)))
            for row in rows:  # the data-free label stage: the references asked through the row's interface
                if row.label_references and row.role != "calibration" and not row.labels_alone \
                        and not row.shown_references:
                    rule.per_suspect[row.model] = Rule.from_references(
                        [r.model for r in references], coarse, alpha, stage_names=["coarse", LABEL_STAGE],
                        copy_line=coarse_copy_line, parametric=len(references) < references_needed(alpha / 2),
                        later=_picked(row.label_references))
    return rules


def _picked(*scores: tuple[float, ...]) -> Callable[[list[int]], list[list[float]]]:
    """Later stages' scores, of the references kept (:meth:`Rule.from_references`'s ``later``)."""
    return lambda keep: [[stage[i] for i in keep] for stage in scores]


def decision(calibration: Rule, row: Scored) -> Decision:
    """The decision ``tafa verify`` gives ``row``'s model with this rule (:meth:`Verdict.decide
    <tafa.decide.Verdict.decide>`): the rule's, ``undecided`` instead of ``independent`` for
    answers on a grid, ``evasive`` for an evasive suspect the rule does not judge derived."""
    decided = _decide(calibration, row)
    if decided is Decision.INDEPENDENT and (row.quantised or row.too_few):
        decided = Decision.UNDECIDED
    return Decision.EVASIVE if row.evasive and decided is not Decision.DERIVED else decided


def caught(calibration: Rule, row: Scored) -> bool:
    """Whether ``tafa verify`` would not clear ``row``'s derived model: judged derived, or
    evasive (the decision ``evasive``). For an independent row only ``derived`` counts (a
    false positive is a false claim of derivation)."""
    return fires(calibration, row) or (row.label == 1 and decision(calibration, row) is Decision.EVASIVE)


def fires(calibration: Rule, row: Scored) -> bool:
    """Whether the calibrated rule judges ``row`` derived (any stage above its own threshold,
    for a rule with stages; a rule that cannot support its alpha judges nothing derived)."""
    return _decide(calibration, row) is Decision.DERIVED


def _decide(calibration: Rule, row: Scored) -> Decision:
    """The rule's decision on ``row``'s scores: its coarse rule's on its coarse score when the coarse
    scale decides it (``undecided`` without one), with the label stage's when that decides too."""
    own = calibration.per_suspect.get(row.model.split("/", 1)[-1])  # pooled rows are named ZOO/ROW
    if row.labels_alone:
        return Decision.UNDECIDED if own is None else own.decide([row.labels])
    if row.lossy and row.shown_references:
        return Decision.UNDECIDED if own is None else own.decide([*row.shown, row.labels, row.coarse])
    if row.lossy:
        rule = own or calibration.coarse_labels
        return Decision.UNDECIDED if rule is None else rule.decide([row.coarse, row.labels])
    if row.rough:
        return Decision.UNDECIDED if calibration.coarse is None else calibration.coarse.decide([row.coarse])
    rule = own or calibration
    return rule.decide(as_verified(rule, row))


def as_verified(rule: Rule, row: Scored) -> list[float]:
    """``row``'s stage scores as ``tafa verify`` measures them under ``rule``: the stage measured a
    few probes at a time (``looked``) stopped once its threshold is out of reach (or, ``settles``,
    surely passed), its score then over the probes measured (:func:`~tafa.decide.sequential.stopped_score`);
    ``[score]`` without stages."""
    scores = list(row.stages) or [row.score]
    measured = measured_lines(rule, row)
    if measured is not None:
        scores[row.looked] = stopped_score(measured, len(row.lines), row.settles)
    return scores


def measured_lines(rule: Rule, row: Scored) -> np.ndarray | None:
    """The per-probe values of ``row``'s stage ``looked`` that verify measures under ``rule``
    before its threshold is out of reach (``None``: no such stage, or the rule leaves it out)."""
    if not row.looked or row.looked >= len(rule.stages):
        return None
    return measured_part(np.asarray(row.lines), rule.stages[row.looked].threshold, bounded=row.settles)


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """A one-line description of this machine."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def applicable(scheme_name: str, spec: ZooSpec) -> bool:
    return spec.scenario in get_scheme(scheme_name).tasks


def zoo_references(zoo: Zoo, kind: str) -> tuple[References, list[str]] | None:
    """The reference models a learned scheme trains on: ``"data"`` (made by the owner from its
    own data: the zoo's ``training`` role) or ``"data-free"`` (the ``free`` role)."""
    role = {"data": "training", "data-free": "free"}.get(kind)
    if role is None:
        return None
    rows = zoo.with_role(role)
    refs = References(positives=[m for r, m in rows if r.label == 1], negatives=[m for r, m in rows if r.label == 0],
                      positive_names=[r.name for r, _ in rows if r.label == 1],
                      negative_names=[r.name for r, _ in rows if r.label == 0])
    return refs, [r.family for r, _ in rows if r.label == 1]


#: Suffix of a scheme run parent-aware on a parent zoo (``tafa+parent``), and the pool of those zoos.
PARENT_AWARE, SHARED_PARENT = "+parent", "shared parent"
#: Suffix of a scheme run with a label stage made from the owner's data (``tafa+owner-data``,
#: :mod:`tafa.label_stage`), and the schemes that get that run on a classification zoo.
OWNER_DATA, OWNER_DATA_SCHEMES = "+owner-data", ("tafa",)


def parent_variants(scheme_name: str, spec: ZooSpec) -> list[tuple[str, bool]]:
    """``(entry name, parent-aware)`` of the runs of one scheme on one zoo."""
    aware = spec.parent is not None and bool(get_scheme(scheme_name).make_signature().relative_keys)
    return [(scheme_name, False)] + ([(scheme_name + PARENT_AWARE, True)] if aware else [])


def variants(scheme_name: str, spec: ZooSpec) -> list[tuple[str, bool, bool]]:
    """``(entry name, parent-aware, with the owner's data)`` of the runs of one scheme on one zoo:
    :func:`parent_variants`, and on a classification zoo with interface families the default
    scheme again with a label stage from the owner's data (``tafa+owner-data``)."""
    labelled = (scheme_name in OWNER_DATA_SCHEMES and spec.scenario == "classification" and not spec.latent
                and interface_rows(spec))
    return ([(name, aware, False) for name, aware in parent_variants(scheme_name, spec)]
            + ([(scheme_name + OWNER_DATA, False, True)] if labelled else []))


def evaluate_scheme(zoo: Zoo, scheme_name: str, parent_aware: bool = False, owner_data: bool = False
                    ) -> dict[str, Any]:
    """Fingerprint ``zoo``'s owner with one scheme and score every other model (``owner_data``:
    the fingerprint also gets a label stage from the owner's half of the task's data, as
    ``tafa fingerprint --owner-data`` makes it).

    A learned scheme trains on the zoo's reference role for it and is also scored
    leave-one-family-out: the models of each attack family are scored by a verifier refitted
    without any reference of that family (``lofo`` rows), and the negatives by that same
    refitted verifier, so each family's figures come from one verifier.
    """
    spec = zoo.spec
    parent = TorchModel(zoo.models["parent"], spec.input_shape, name="parent") if parent_aware else None
    # one candidate cache per owner and scheme: the leave-one-family-out re-selections reuse
    # the candidate probes (their region LPs) of the first fingerprint
    scheme = replace(get_scheme(scheme_name), candidate_cache=CandidateCache())
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    data = None if spec.latent else np.asarray(spec.data("owner").x)
    references = zoo_references(zoo, scheme.references)
    started = time.perf_counter()
    fingerprint = Fingerprint.create(owner, spec.domain, scheme=scheme, seed=0, data=data,
                                     references=references[0] if references else None, parent=parent,
                                     owner_data=None if data is None or not owner_data
                                     else data.reshape(-1, *spec.input_shape))
    fingerprint_seconds = time.perf_counter() - started
    rows: list[Scored] = []
    models = []
    signatures = []
    seconds = []
    # the calibration models are the references: cleaned as tafa verify cleans them (duplicates by
    # content hash count once; the owner among them is refused)
    calibration_models = [TorchModel(model, spec.input_shape, name=recipe.name)
                          for recipe, model in zoo.with_role("calibration")]
    distinct = {model.name for model in fingerprint.distinct_references(calibration_models)[0]}
    references_in_order = [model for model in calibration_models if model.name in distinct]  # the calibration rows'
    averaged_stage = fingerprint.coarse_stage(averaged=True)
    replayed: dict[Any, tuple[float, ...]] = {}  # the references through each interface, asked once
    replayed_later: dict[Any, tuple[tuple[float, ...], ...]] = {}

    def score(suspect: Model, name: str, label: int, family: str, role: str, check: bool = False) -> Signature:
        """Score ``suspect`` at every stage (timed), add its row, return its first-stage signature;
        ``check``: with the evasion check ``tafa verify`` runs (seeded by the row's name)."""
        started = time.perf_counter()
        signature, recognised, evasion = fingerprint.measure_checked(suspect, check, seed=_seed(name))
        clipped = role != "calibration" and recognised is not None and recognised.clipped  # references: as verify
        view, at_view, too_few = fingerprint.uncensored(signature, recognised if clipped else None)
        value = view.compare(at_view).value
        censored = () if view is fingerprint else tuple(view.score(m).value for m in references_in_order)
        censored_later: tuple[tuple[float, ...], ...] = ()
        if view is not fingerprint:  # the later stages through the row's clip: asked once per clip
            clipped_at = repr(view.second.scheme.signature_params.get("clip") if view.second else None)
            if clipped_at not in replayed_later:
                replayed_later[clipped_at] = tuple(tuple(stage.score(m).value for m in references_in_order)
                                                   for stage in view.later_stages())
            censored_later = replayed_later[clipped_at]
        label_stage = fingerprint.labels
        decides = role != "calibration" and label_stage_decides(None if label_stage is None else label_stage.scheme,
                                                                suspect, recognised)
        alone = decides and decides_alone(suspect, recognised)  # as verify: the label stage alone, no coarse scale
        grid, bent, limit = bend_of(recognised)
        screen = screen_applies(grid, bent, decides, limit)
        coarse = None if clipped or alone else fingerprint.measure_coarse(suspect, signature, screen)
        rough = coarse is not None and coarse_decides(coarse[1], grid, bent, limit)
        lossy = decides and (alone or coarse is not None)
        if coarse is not None and (rough or lossy):  # the coarse scale as it decides (references: below)
            assert averaged_stage is not None
            coarse = (averaged_stage.score(suspect), *coarse[1:])
        later = view.later_stages()  # a rough row's later stages do not run (verify's path)
        later_scores = [None if rough or lossy else stage.score(suspect) for stage in later]
        stages = () if not later else (value, *[float("nan") if s is None else s.value for s in later_scores])
        looked = next((i for i, (stage, s) in enumerate(zip(later, later_scores), start=1)
                       if s is not None and stage.similarity().mean_over_points), 0)
        lines = () if not looked else tuple(float(v) for v in later_scores[looked - 1].per_point)  # type: ignore[union-attr]
        settles = bool(looked) and later[looked - 1].similarity().settles
        free = label_stage is not None and is_free(label_stage.scheme)
        # the calibration rows' own label scores calibrate the owner-data stage; the data-free stage's
        # references are asked through each row's interface instead (below)
        labels = (label_stage.score(suspect).value if label_stage is not None
                  and (lossy or (role == "calibration" and not free)) else float("nan"))
        asked: tuple[float, ...] = ()
        if lossy and role != "calibration" and label_stage is not None and free:
            key = (suspect.labels_only, None if recognised is None else (recognised.kind, recognised.quantised,
                                                                         recognised.shown))
            if key not in replayed:
                stage = label_stage
                replayed[key] = tuple(asked_scores(lambda m: stage.score(m).value, list(references_in_order), suspect,
                                                   recognised))
            asked = replayed[key]
        shown: tuple[float, ...] = ()
        shown_asked: tuple[tuple[float, ...], ...] = ()
        reading = fingerprint.shown_stage(recognised) if lossy and not alone and role != "calibration" else None
        if reading is not None and recognised is not None:  # a top-k list: the stages on the classes shown
            geometry = fingerprint.shown_geometry(recognised)
            readers: list[Callable[[Model], float]] = [lambda m: reading.score(m).value]
            if geometry is not None:
                readers.append(lambda m: geometry.score(m).value)
            shown = (reading.compare(recognised).value, *[read(suspect) for read in readers[1:]])
            for i, read in enumerate(readers):
                listed = ("shown", i, recognised.kind, recognised.quantised,
                          hashlib.sha256(reading.counts.tobytes() if reading.counts is not None else b"").hexdigest())
                if listed not in replayed:
                    replayed[listed] = tuple(asked_scores(read, list(references_in_order), suspect, recognised))
                shown_asked += (replayed[listed],)
        seconds.append(time.perf_counter() - started)
        rows.append(Scored(name, label, family, role, value, stages=stages,
                           evasive=evasion is not None and evasion.evasive, quantised=grid is not None,
                           coarse=float("nan") if coarse is None else coarse[0].value, rough=rough,
                           labels=labels, lossy=lossy, label_references=asked, labels_alone=alone, censored=censored,
                           censored_later=censored_later, inside=len(view.probes) if censored else 0,
                           too_few=too_few is not None, shown=shown, shown_references=shown_asked,
                           looked=looked, lines=lines, settles=settles))
        return signature

    for role in ("scored", "calibration", SHARED_INIT):
        for recipe, model in zoo.with_role(role):
            if role == "calibration" and recipe.name not in distinct:
                continue
            signatures.append(score(TorchModel(model, spec.input_shape, name=recipe.name), recipe.name,
                                    recipe.label, recipe.family, role))
            models.append(model)
    lofo: dict[str, list[Scored]] = {}
    if references is not None:
        refs, families = references
        positive_signatures = [fingerprint.measure(TorchModel(m, spec.input_shape)) for m in refs.positives]
        negative_signatures = [fingerprint.measure(TorchModel(m, spec.input_shape)) for m in refs.negatives]
        learned = isinstance(fingerprint.similarity(), LearnedSimilarity)
        for family in sorted({r.family for r in rows if r.label == 1 and r.role == "scored"}):
            if learned:  # refit the verifier without the family's references
                kept = [sig for sig, fam in zip(positive_signatures, families) if fam != family]
                again = fingerprint.refit(kept, negative_signatures)
            else:  # references chose the probes: choose them again without the family's references
                held_out = References(positives=[m for m, fam in zip(refs.positives, families) if fam != family],
                                      negatives=refs.negatives)
                again = Fingerprint.create(owner, spec.domain, scheme=scheme, seed=0, data=data,
                                           references=held_out, parent=parent)
            lofo[family] = [Scored(r.model, r.label, r.family, r.role, again.compare(
                                sig if learned else again.measure(TorchModel(model, spec.input_shape))).value)
                            for r, model, sig in zip(rows, models, signatures)
                            if r.role != SHARED_INIT and (r.label == 0 or r.family == family)]
    for name, label, family, suspect in interface_suspects(zoo):
        score(suspect, name, label, family, "scored")
    for name, label, family, suspect in evasion_suspects(zoo):
        score(suspect, name, label, family, "scored", check=True)
    if averaged_stage is not None and any(r.rough or r.lossy for r in rows):
        # the references of the coarse scale, as it decides: measured only when a row needs them
        averaged = iter([averaged_stage.score(model).value for model in references_in_order])
        rows[:] = [replace(r, coarse=next(averaged)) if r.role == "calibration" else r for r in rows]
    similarity = fingerprint.similarity()
    staged = bool(fingerprint.later_stages())
    return {"rows": with_coarse(with_stages(rows) if staged else with_calibrated(rows), staged),
            "lofo": {family: with_calibrated(group) for family, group in lofo.items()},
            "queries": fingerprint.queries(), "queries_per_stage": fingerprint.stage_queries(),
            "fingerprint_seconds": fingerprint_seconds, "verify_seconds": float(np.mean(seconds)),
            # what the time budget made of the owner's analysis (a figure depends on it)
            "cost_plan": {key: fingerprint.meta.get(key) for key in ("cost_plan", "shortcuts")},
            "stage_names": fingerprint.stage_names(), "copy_line": fingerprint.copy_line(),
            "coarse_copy_line": None if averaged_stage is None else averaged_stage.copy_line(),
            "score_range": None if staged else similarity.score_range}


#: Interface families (:mod:`tafa.attacks.interface`): the owner itself and these copies, and the
#: first :data:`INTERFACE_NEGATIVES` scored independents, each served through every interface of
#: the zoo's task; rows ``BASE@INTERFACE``, family ``interface/NAME`` (copies) or
#: ``interface/NAME/independent`` (an innocent service answering the same way). Not in the
#: shared-parent zoos, the ResNet zoo or the smooth-activation zoos (cost).
INTERFACE_COPIES = ("int8", "ft_all_small", "prune50_ft")
INTERFACE_NEGATIVES = 6
INTERFACE = "interface"


def interface_rows(spec: ZooSpec) -> bool:
    """Whether a zoo has interface (and evasion) families: not the shared-parent zoos, nor those
    whose :attr:`~tafa.bench.zoo.ZooSpec.interfaces` is off (the ResNet zoo, the smooth-activation zoos)."""
    return spec.parent is None and spec.interfaces


def interface_suspects(zoo: Zoo) -> list[tuple[str, int, str, Model]]:
    """``(row name, label, family, model)`` of every interface-wrapped suspect of ``zoo``."""
    spec = zoo.spec
    if not interface_rows(spec):
        return []
    from ..attacks.interface import interfaces_for

    scored = zoo.with_role("scored")
    bases = [("owner", 1, zoo.owner)] + [(r.name, 1, m) for r, m in scored if r.label == 1
                                         and r.name in INTERFACE_COPIES]
    bases += [(r.name, 0, m) for r, m in scored if r.label == 0][:INTERFACE_NEGATIVES]
    return [(f"{name}@{interface.name}", label,
             f"{INTERFACE}/{interface.name}" + ("" if label else "/independent"),
             interface.apply(TorchModel(model, spec.input_shape, name=name)))
            for interface in interfaces_for(spec.scenario) for name, label, model in bases]


#: Evasion families (:mod:`tafa.attacks.evasion`): the same bases as the interface families, each
#: served by every registered evasion with an unrelated decoy (a scored independent that is not
#: a base, another for the independents); rows ``BASE%EVASION``, family ``evasion/NAME`` (copies)
#: or ``evasion/NAME/independent``. The pirate's data for the range router: the other half of the
#: task's data. Not in the shared-parent zoos, the ResNet zoo or the smooth-activation zoos.
EVASION = "evasion"


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def evasion_suspects(zoo: Zoo, serve: Callable[[Model], Model] | None = None) -> list[tuple[str, int, str, Model]]:
    """``(row name, label, family, model)`` of every evasion-wrapped suspect of ``zoo``; ``serve``:
    how the copy and the decoy are each served inside the router (e.g. an interface's ``apply``:
    a pirate computing both in half precision), as they are by default."""
    spec = zoo.spec
    if not interface_rows(spec):
        return []
    from ..attacks.evasion import EVASIONS

    scored = zoo.with_role("scored")
    negatives = [(r.name, m) for r, m in scored if r.label == 0]
    bases = [("owner", 1, zoo.owner)] + [(r.name, 1, m) for r, m in scored if r.label == 1
                                         and r.name in INTERFACE_COPIES]
    bases += [(name, 0, model) for name, model in negatives[:INTERFACE_NEGATIVES]]
    spare = negatives[INTERFACE_NEGATIVES:INTERFACE_NEGATIVES + 2]
    if len(spare) < 2:
        return []
    served = serve or (lambda model: model)
    decoys = {1: served(TorchModel(spare[0][1], spec.input_shape, name=spare[0][0])),
              0: served(TorchModel(spare[1][1], spec.input_shape, name=spare[1][0]))}
    data = (np.random.default_rng(0).normal(size=(1000, *spec.input_shape)) if spec.latent  # a latent's users
            else np.asarray(spec.data("other").x).reshape(-1, *spec.input_shape))
    return [(f"{name}%{evasion.name}", label, f"{EVASION}/{evasion.name}" + ("" if label else "/independent"),
             evasion.apply(served(TorchModel(model, spec.input_shape, name=name)), decoys[label], data=data,
                           seed=_seed(f"{name}%{evasion.name}")))
            for evasion in EVASIONS.values() if spec.scenario in evasion.tasks for name, label, model in bases]


def copies_behind(zoo: Zoo, copies: Sequence[str], families: Sequence[str]) -> dict[str, list[Model]]:
    """Each of ``copies`` (scored rows' names, or ``"owner"``) as it is, then behind each evasion
    family of ``families`` (its row of :func:`evasion_suspects`), in that order: what the
    measurement scripts of ``benchmarks/`` compare copy by copy."""
    scored = {recipe.name: model for recipe, model in zoo.with_role("scored")}
    scored["owner"] = zoo.owner
    disturbed = {row: model for row, label, _, model in evasion_suspects(zoo) if label == 1}
    return {copy: [TorchModel(scored[copy], zoo.spec.input_shape, name=copy),
                   *[disturbed[f"{copy}%{family}"] for family in families]] for copy in copies}


def summarise_lofo(lofo: dict[str, list[Scored]]) -> dict[str, Any]:
    """Leave-one-family-out figures: per family, its models against the negatives, both scored
    by the verifier refitted without that family; averaged over families weighted by size.
    ``utility_kept`` repeats AUC, TPR at 1% FPR and the rule's TPR (alpha :data:`ALPHA`) over
    the copies that keep at least :data:`KEEP` of the owner's utility."""
    weights, aucs, arucs, tprs, rules = [], [], [], [], []
    kept_weights, kept_aucs, kept_tprs, kept_rules = [], [], [], []
    per_family = {}
    for family, rows in lofo.items():
        pos = [r for r in rows if r.label == 1 and r.role == "scored"]
        neg = [r for r in rows if r.label == 0 and r.role == "scored"]
        rule = calibrations(rows)[ALPHA]
        detected = float(np.mean([caught(rule, r) for r in pos]))
        per_family[family] = {"n": len(pos), "detection_rate": detected}
        if family.split("/")[-1] == EXTRACTION:  # pooled families are "zoo/family"
            continue
        weights.append(len(pos))
        aucs.append(metrics.roc_auc([r.score for r in pos], [r.score for r in neg]))
        arucs.append(metrics.aruc([r.calibrated for r in pos], [r.calibrated for r in neg], score_range=(0.0, 1.0)))
        tprs.append(metrics.tpr_at_fpr([r.score for r in pos], [r.score for r in neg], 0.01))
        rules.append(detected)
        kept = [r for r in pos if np.isfinite(r.utility) and metrics.utility_kept([r.utility], KEEP)[0]]
        if kept:
            kept_weights.append(len(kept))
            kept_aucs.append(metrics.roc_auc([r.score for r in kept], [r.score for r in neg]))
            kept_tprs.append(metrics.tpr_at_fpr([r.score for r in kept], [r.score for r in neg], 0.01))
            kept_rules.append(float(np.mean([caught(rule, r) for r in kept])))
    average = lambda values: float(np.average(values, weights=weights))  # noqa: E731

    def kept_average(values: list[float]) -> float:
        return float(np.average(values, weights=kept_weights)) if kept_weights else float("nan")

    return {"auc": average(aucs), "aruc": average(arucs), "tpr_at_fpr_1pct": average(tprs), "rule_tpr": average(rules),
            "utility_kept": {"n_pos": int(sum(kept_weights)), "auc": kept_average(kept_aucs),
                             "tpr_at_fpr_1pct": kept_average(kept_tprs), "rule_tpr": kept_average(kept_rules)},
            "per_family": per_family}


def _zoo_of(row: Scored) -> str:
    return row.model.split("/")[0] if "/" in row.model else ""


def rule_summary(scored: list[Scored], rules: Rules, alpha: float) -> dict[str, Any]:
    """The calibrated rule at ``alpha`` on the scored rows: its true-positive rate (extraction
    left out), its false-positive rate with a binomial 95% interval, and the false-positive
    rate of every independent family with its interval."""
    def flagged(row: Scored) -> bool:
        return caught(rules[_zoo_of(row)][alpha], row)

    positives = [flagged(r) for r in scored if r.label == 1 and r.family != EXTRACTION]
    negatives = [r for r in scored if r.label == 0]
    hits = sum(flagged(r) for r in negatives)
    families: dict[str, list[bool]] = {}
    for row in negatives:
        families.setdefault(row.family, []).append(flagged(row))
    used = [rules[zoo][alpha] for zoo in sorted(rules)]
    return {"alpha": alpha, "bound": float(max(c.bound for c in used)),
            "method": "/".join(sorted({c.method for c in used})),
            "n_references": int(min(c.n_references for c in used)),
            "threshold": float(np.mean([c.threshold for c in used])),
            "tpr": float(np.mean(positives)) if positives else float("nan"),
            "fpr": hits / len(negatives) if negatives else float("nan"), "false_positives": int(hits),
            "fpr_ci": list(metrics.binomial_ci(int(hits), len(negatives))) if negatives else None,
            "families": {family: {"n": len(flags), "false_positives": int(sum(flags)),
                                  "fpr": float(np.mean(flags)), "ci": list(metrics.binomial_ci(int(sum(flags)),
                                                                                               len(flags)))}
                         for family, flags in families.items()}}


def _flagged(row: Scored, rules: Rules, alpha: float) -> bool:
    return caught(rules[_zoo_of(row)][alpha], row)


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if np.isfinite(v)]


def utility_gated(derived: list[Scored], independent: list[Scored], rules: Rules,
                  keep: float = KEEP, value: Callable[[Scored], float] = lambda r: r.score) -> dict[str, Any]:
    """Detection over the derived rows that keep at least ``keep`` of the owner's utility
    (the copies worth stealing), against every independent row: AUC, TPR at FPR <= 1% and
    at FPR = 0 (ranking the rows by ``value``: the raw score, or the calibrated scale when
    several zoos are pooled), and the calibrated rule's true-positive rate at each level of
    :data:`ALPHAS`. Rows whose utility was not measured count as not kept; with no kept
    row the figures are NaN."""
    measured = [r for r in derived if np.isfinite(r.utility)]
    kept = [r for r, ok in zip(measured, metrics.utility_kept([r.utility for r in measured], keep)
                               if measured else []) if ok]
    entry: dict[str, Any] = {"keep": keep, "n_pos": len(kept), "n_all": len(derived), "n_measured": len(measured)}
    nan = float("nan")
    if kept and independent:
        pos, neg = [value(r) for r in kept], [value(r) for r in independent]
        entry.update(auc=metrics.roc_auc(pos, neg), tpr_at_fpr_1pct=metrics.tpr_at_fpr(pos, neg, 0.01),
                     tpr_at_fpr_0=metrics.tpr_at_fpr(pos, neg, 0.0))
    else:
        entry.update(auc=nan, tpr_at_fpr_1pct=nan, tpr_at_fpr_0=nan)
    entry["rules"] = {f"{alpha:g}": float(np.mean([_flagged(r, rules, alpha) for r in kept])) if kept else nan
                      for alpha in ALPHAS}
    return entry


def per_recipe(scored: list[Scored], rules: Rules, keep: float = KEEP) -> dict[str, dict[str, Any]]:
    """Per derived recipe (the model's name within its zoo; extraction included): how many
    models, their family, their median share of the owner's utility, the fraction keeping at
    least ``keep`` of it, and the calibrated rule's detection rate at each level of
    :data:`ALPHAS`. Copies that destroyed the model show here with their low utility."""
    groups: dict[str, list[Scored]] = {}
    for row in scored:
        if row.label == 1:
            groups.setdefault(row.model.split("/")[-1], []).append(row)
    table = {}
    for recipe, rows in groups.items():
        shares = _finite([r.utility for r in rows])
        table[recipe] = {
            "n": len(rows), "family": rows[0].family,
            "median_utility": float(np.median(shares)) if shares else float("nan"),
            "kept": float(np.mean(metrics.utility_kept(shares, keep))) if shares else float("nan"),
            "detection": {f"{alpha:g}": float(np.mean([_flagged(r, rules, alpha) for r in rows])) for alpha in ALPHAS}}
    return table


def summarise(rows: list[Scored], rules: Rules, n_boot: int) -> dict[str, Any]:
    """Metrics over scored rows; ``rules`` maps a zoo prefix ('' for one zoo) to its calibrations.

    ``aruc`` is on the common calibrated scale (the rows' ``calibrated`` values, range
    [0, 1]); ``aruc_raw`` over the raw scores' observed span, for comparison with earlier runs.

    Pooled over several zoos (``rules`` has more than one), the ranking figures (AUC, TPR at
    1% and 0% FPR, the utility-gated ones, extraction's) rank the rows by their ``evidence``,
    i.e. by each row's p-value against its own zoo's calibration models: raw scores
    of different owners are not on one scale (one zoo's independent models may outscore
    another zoo's copies), and no user thresholds them jointly, each verdict is calibrated
    against its own owner's references. The raw-score pooling of earlier runs is kept as
    ``auc_raw_pooled`` / ``tpr_at_fpr_1pct_raw_pooled`` (and ``utility_kept_raw_pooled``).
    Within one zoo the two orders are the same (the scale is increasing in the score), unless some
    rows were decided at another scale (the coarse scale of a rough row, the label stage of a lossy
    one), whose scores are not on the fine scores' scale: such a zoo is ranked by evidence too (a
    one-stage scheme's rough ResNet copy ranked by its coarse score against the independent
    models' fine scores was put above every one of them, session 29).
    """
    scored = [r for r in rows if r.role == "scored"]
    derived = [r for r in scored if r.label == 1 and r.family != EXTRACTION]
    independent = [r for r in scored if r.label == 0]
    pooled = len(rules) > 1
    by_evidence = pooled or any(r.rough or r.lossy for r in scored)
    value: Callable[[Scored], float] = (lambda r: r.evidence) if by_evidence else (lambda r: r.score)
    pos, neg = np.array([value(r) for r in derived]), np.array([value(r) for r in independent])
    raw_pos, raw_neg = np.array([r.score for r in derived]), np.array([r.score for r in independent])
    cal_pos, cal_neg = np.array([r.calibrated for r in derived]), np.array([r.calibrated for r in independent])
    extraction = [r for r in scored if r.family == EXTRACTION]
    shared = [r for r in rows if r.role == SHARED_INIT]
    aruc = partial(metrics.aruc, score_range=(0.0, 1.0))
    tpr1 = partial(metrics.tpr_at_fpr, max_fpr=0.01)

    def flagged(row: Scored, alpha: float = ALPHA) -> bool:
        return caught(rules[_zoo_of(row)][alpha], row)

    families: dict[str, dict[str, Any]] = {}
    for row in scored:
        entry = families.setdefault(row.family, {"n": 0, "hits": 0, "label": row.label})
        entry["n"] += 1
        entry["hits"] += int(flagged(row))
    by_alpha = {f"{alpha:g}": rule_summary(scored, rules, alpha) for alpha in ALPHAS}
    rule = dict(by_alpha[f"{ALPHA:g}"])
    rule.pop("families")
    result = {
        "n_pos": int(pos.size), "n_neg": int(neg.size),
        "auc": metrics.roc_auc(pos, neg),
        "auc_ci": list(metrics.bootstrap_ci(metrics.roc_auc, pos, neg, n_boot=n_boot)),
        "aruc": aruc(cal_pos, cal_neg), "aruc_ci": list(metrics.bootstrap_ci(aruc, cal_pos, cal_neg, n_boot=n_boot)),
        "aruc_raw": metrics.aruc(raw_pos, raw_neg), "max_min_ru": metrics.max_min_ru(pos, neg),
        "ranked_on": "evidence" if by_evidence else "score",
        "tpr_at_fpr_1pct": tpr1(pos, neg), "tpr_at_fpr_0": metrics.tpr_at_fpr(pos, neg, 0.0),
        "tpr_at_fpr_1pct_ci": list(metrics.bootstrap_ci(tpr1, pos, neg, n_boot=n_boot)),
        "rule": rule, "rules": by_alpha,
        "per_family": {family: {"n": v["n"], "detection_rate": v["hits"] / v["n"]} for family, v in families.items()},
        "scores": [{"model": r.model, "label": r.label, "family": r.family, "score": r.score,
                    "calibrated": r.calibrated, "evidence": r.evidence, "utility": r.utility,
                    **({"stages": list(r.stages)} if r.stages else {}),
                    **({"looked": r.looked, "lines": list(r.lines), "settles": r.settles} if r.looked else {}),
                    **({"labels": r.labels, "lossy": True} if r.lossy else {}),
                    **({"clipped": {"probes": r.inside, "references_max": max(r.censored)}} if r.censored else {}),
                    **({"clipped": {"too_few": True}} if r.too_few else {})} for r in scored],
        "utility_kept": utility_gated(derived, independent, rules, value=value),
        "per_recipe": per_recipe(scored, rules),
        # the references the rule was calibrated on, so that the exchangeability of scored and
        # calibration independents can be checked from results.json alone
        "calibration_scores": [{"model": r.model, "family": r.family, "score": r.score,
                                **({"stages": list(r.stages)} if r.stages else {}),
                                **({"looked": r.looked, "lines": list(r.lines)} if r.looked else {})}
                               for r in rows if r.role == "calibration"],
    }
    staged = [r for r in scored if r.stages]
    if staged:  # how often the second stage runs: the first does not already fire (at ALPHA)
        runs = {label: [not rules[_zoo_of(r)][ALPHA].fires(list(r.stages[:1])) for r in staged
                        if r.label == value and r.family != EXTRACTION]
                for label, value in (("derived", 1), ("independent", 0))}
        result["second_stage_runs"] = {label: float(np.mean(v)) if v else float("nan") for label, v in runs.items()}
        # of the probes of a stage stopped once out of reach, the share measured where it runs (at ALPHA)
        parts: dict[str, list[float]] = {"derived": [], "independent": []}
        for r in staged:
            zoo_rule = rules[_zoo_of(r)][ALPHA]
            measured = measured_lines(zoo_rule, r)
            if measured is not None and r.family != EXTRACTION and not zoo_rule.fires(list(r.stages[:r.looked])):
                parts["derived" if r.label == 1 else "independent"].append(len(measured) / len(r.lines))
        result["second_stage_measured"] = {label: float(np.mean(v)) if v else float("nan")
                                           for label, v in parts.items()}
        result["staged_models"] = len(staged)
    if pooled:
        result.update(auc_raw_pooled=metrics.roc_auc(raw_pos, raw_neg),
                      tpr_at_fpr_1pct_raw_pooled=tpr1(raw_pos, raw_neg),
                      utility_kept_raw_pooled=utility_gated(derived, independent, rules))
    if extraction:
        ext = np.array([value(r) for r in extraction])
        result["extraction"] = {"n": int(ext.size), "tpr_at_fpr_1pct": tpr1(ext, neg),
                                "detection_rate": float(np.mean([flagged(r) for r in extraction]))}
    if shared:
        values = np.array([r.score for r in shared])
        result["shared_init"] = {
            "n": len(shared), "median_score": float(np.median(values)), "min_score": float(values.min()),
            "max_score": float(values.max()), "median_calibrated": float(np.median([r.calibrated for r in shared])),
            "above_every_independent": float(np.mean(np.array([value(r) for r in shared]) > neg.max())),
            "judged_derived": {f"{alpha:g}": float(np.mean([flagged(r, alpha) for r in shared])) for alpha in ALPHAS},
            "scores": [{"model": r.model, "score": r.score, "calibrated": r.calibrated} for r in shared]}
    return result


def relative_utilities(zoo: Zoo, cache: Path | None) -> tuple[dict[str, float], dict[str, Any]]:
    """Each scored, calibration and shared-initialisation model's utility as a share of the
    owner's (:mod:`tafa.bench.utility`, cached in ``cache``), and the owner's own utility
    with what it measures."""
    values = zoo_utilities(zoo, cache, roles=("scored", "calibration", SHARED_INIT))
    owner = values.pop("owner")
    names = [n for n in values if np.isfinite(values[n])]  # a diverged model's utility stays NaN
    shares: Iterable[float] = metrics.relative_utility([values[n] for n in names], owner) if owner > 0 and names else []
    return ({**{n: float("nan") for n in values}, **{n: float(v) for n, v in zip(names, shares)}},
            {"measure": measure_name(zoo.spec), "data": "the half of the task the owner did not train on",
             "owner": owner, "keep": KEEP})


def evaluate_zoo(zoo: Zoo, names: list[str], cache: Path | None, n_boot: int) -> dict[str, Any]:
    """Every scheme of ``names`` (each of its :func:`variants`) on one zoo: the zoo's entry of the
    results (its summary per scheme) and, per run, its rows, rules and evaluation (what the
    pooled figures are made of)."""
    spec = zoo.spec
    relative, owner_utility = relative_utilities(zoo, cache)
    entry: dict[str, Any] = {"scenario": spec.scenario, "owner": f"{spec.owner_arch} on {spec.task}",
                             "domain": spec.domain, "utility": owner_utility, "schemes": {}}
    runs = []
    runs_here = [variant for n in names if applicable(n, spec) for variant in variants(n, spec)]
    for name, parent_aware, owner_data in runs_here:
        evaluation = evaluate_scheme(zoo, name.removesuffix(PARENT_AWARE).removesuffix(OWNER_DATA), parent_aware,
                                     owner_data)
        rows = with_utility(evaluation["rows"], relative)
        evaluation["lofo"] = {family: with_utility(group, relative) for family, group in evaluation["lofo"].items()}
        rules = calibrations(rows, evaluation["stage_names"], evaluation["copy_line"],
                             evaluation.get("coarse_copy_line"))
        summary = summarise(rows, {"": rules}, n_boot)
        if evaluation["lofo"]:
            summary["lofo"] = summarise_lofo(evaluation["lofo"])
        summary.update({key: evaluation[key] for key in ("queries", "queries_per_stage", "fingerprint_seconds",
                                                         "verify_seconds", "cost_plan")})
        entry["schemes"][name] = summary
        entry["n_pos"], entry["n_neg"] = summary["n_pos"], summary["n_neg"]
        runs.append((name, rows, rules, evaluation))
    return {"entry": entry, "utility": owner_utility, "runs": runs}


def _evaluate_zoos(zoos: list[Zoo], names: list[str], cache: Path, n_boot: int, roles: list[str],
                   jobs: int) -> Iterable[tuple[ZooSpec, dict[str, Any]]]:
    """:func:`evaluate_zoo` of each zoo, in order: in this process, or with ``jobs`` > 1 in that
    many fresh ones (each loads its zoo from ``cache``; a scheme registered only in this process
    is not known there: score it with ``jobs=1``)."""
    if jobs <= 1 or len(zoos) == 1:
        for zoo in zoos:
            yield zoo.spec, evaluate_zoo(zoo, names, cache, n_boot)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(zoos)), mp_context=context, initializer=_one_thread) as pool:
        futures = [pool.submit(_evaluate_cached_zoo, zoo.spec, names, str(cache), n_boot, roles) for zoo in zoos]
        for zoo, future in zip(zoos, futures):
            yield zoo.spec, future.result()


def _one_thread() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def _evaluate_cached_zoo(spec: ZooSpec, names: list[str], cache: str, n_boot: int, roles: list[str]) -> dict[str, Any]:
    (zoo,) = build_zoos([spec], Path(cache), jobs=1, progress=False, roles=roles)
    return evaluate_zoo(zoo, names, Path(cache), n_boot)


def run_benchmark(size: str = "full", *, schemes: Iterable[str] | None = None, out: Path | None = None,
                  cache: Path = Path(".tafa-cache/zoo"), jobs: int = 2, progress: bool = True,
                  command: str = "tafa bench", n_boot: int = 1000,
                  zoo_filter: Callable[[ZooSpec], bool] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``results.json``, ``results.md`` and plots to ``out`` if given."""
    started = time.perf_counter()
    specs = [spec for spec in SIZES[size] if zoo_filter is None or zoo_filter(spec)]
    names = list(schemes) if schemes is not None else [name for name in SCHEMES if SCHEMES[name].benchmark]
    references = {get_scheme(name).references for name in names}
    roles = ["scored", "calibration", SHARED_INIT] + [role for kind, role in (("data", "training"),
                                                                              ("data-free", "free"))
                                                      if kind in references]
    zoos = build_zoos(specs, cache, jobs=jobs, progress=progress, roles=roles)
    zoo_seconds = time.perf_counter() - started
    results: dict[str, Any] = {
        "command": command, "machine": machine(), "git_commit": _git_commit(), "size": size,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "zoo_seconds": zoo_seconds, "scenarios": {}}
    pooled: dict[str, dict[str, dict[str, Any]]] = {}
    bar = tqdm(total=sum(len(variants(n, z.spec)) for z in zoos for n in names if applicable(n, z.spec)),
               desc="bench: schemes", disable=not progress)
    owner_utility: dict[str, dict[str, Any]] = {}
    for spec, done in _evaluate_zoos(zoos, names, cache, n_boot, roles, jobs):
        owner_utility[spec.name] = done["utility"]
        entry = done["entry"]
        for name, rows, rules, evaluation in done["runs"]:
            pool = SHARED_PARENT if spec.parent else spec.pool or spec.scenario
            group = pooled.setdefault(pool, {}).setdefault(name, {"rows": [], "rules": {}, "cost": []})
            group["rows"] += [replace(r, model=f"{spec.name}/{r.model}") for r in rows]
            group["rules"][spec.name] = rules
            group["cost"].append(evaluation)
            bar.update(1)
        results["scenarios"][f"{spec.scenario}: {spec.name}"] = entry
    bar.close()
    for scenario, by_scheme in pooled.items():
        entry = {"scenario": scenario, "owner": "pooled over the scenario's zoos", "schemes": {},
                 "utility": {z.spec.name: owner_utility[z.spec.name] for z in zoos if z.spec.scenario == scenario}}
        for name, group in by_scheme.items():
            summary = summarise(group["rows"], group["rules"], n_boot)
            summary["queries"] = int(max(c["queries"] for c in group["cost"]))
            summary["queries_per_stage"] = max((c["queries_per_stage"] for c in group["cost"]), key=len)
            summary["fingerprint_seconds"] = float(np.mean([c["fingerprint_seconds"] for c in group["cost"]]))
            summary["verify_seconds"] = float(np.mean([c["verify_seconds"] for c in group["cost"]]))
            if all(c["lofo"] for c in group["cost"]):
                merged: dict[str, list[Scored]] = {}
                for cost, zoo_name in zip(group["cost"], group["rules"]):
                    for family, rows in cost["lofo"].items():
                        merged.setdefault(f"{zoo_name}/{family}", []).extend(rows)
                pooled_lofo = summarise_lofo(merged)
                families: dict[str, list[float]] = {}
                for key, value in pooled_lofo["per_family"].items():
                    families.setdefault(key.split("/", 1)[1], []).extend([value["detection_rate"]] * value["n"])
                pooled_lofo["per_family"] = {f: {"n": len(v), "detection_rate": float(np.mean(v))}
                                             for f, v in families.items()}
                summary["lofo"] = pooled_lofo
            entry["schemes"][name] = summary
            entry["n_pos"], entry["n_neg"] = summary["n_pos"], summary["n_neg"]
        results["scenarios"][f"{scenario} (pooled)"] = entry
    results["seconds"] = time.perf_counter() - started
    if out is not None:
        write_report(results, Path(out))
    return results
