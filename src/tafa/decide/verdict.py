"""The verdict: the decision and everything needed to defend it.

``decision`` is :attr:`Decision.DERIVED` when the suspect's score exceeds the calibrated
threshold, :attr:`Decision.INDEPENDENT` when it does not, and :attr:`Decision.UNDECIDED` when
there were no references to calibrate on, or too few to support the false-positive rate asked
for (the raw score is still reported, with a note saying what the references do support; tafa
never guesses a threshold and never prints a bound it does not have).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rule import DECISIONS, Decision, Rule
from .similarity import Score
from .threshold import BoundMethod


@dataclass
class Verdict:
    """Outcome of verifying one suspect against one fingerprint."""

    decision: Decision
    score: float
    calibration: Rule | None
    per_point: dict[str, float]
    parts: dict[str, float]
    queries: int
    seconds: float
    suspect: dict[str, Any]
    scheme: str
    fingerprint_sha256: str
    positive_scores: list[float] | None = None
    notes: list[str] = field(default_factory=list)
    #: A fingerprint with stages: per stage ``name``, ``score`` (``None``: not run, an earlier
    #: stage decided), ``queries`` and ``seconds``, and ``stopped`` for a stage measured only in
    #: part, its threshold out of reach (:mod:`tafa.decide.sequential`: ``probes``, ``of``,
    #: ``reach``) or surely passed (``probes``, ``of``, ``passed``); ``score`` above is the first
    #: stage's, and the decision is the :class:`~tafa.decide.rule.Rule`'s.
    stages: list[dict[str, Any]] = field(default_factory=list)

    #: The evasion check's evidence (:class:`~tafa.signature.consistency.EvasionCheck` as a dict;
    #: ``None``: not run).
    evasion: dict[str, Any] | None = None
    #: The weight evidence (:class:`~tafa.weights.WeightEvidence`) of a suspect whose weights
    #: could be read, ``None`` when not computed; its order p-value is the ``weights`` stage.
    weights: Any = None
    #: The coarse scale's evidence (:mod:`tafa.signature.scales`): ``score``, ``roughness`` (the
    #: suspect's relative to the owner's) and whether it ``decides``; ``None`` without one.
    coarse: dict[str, Any] | None = None
    #: For a suspect left ``undecided`` because its answers keep too little (a grid, labels): per
    #: stage that decides it, whether more queries could and about how many
    #: (:class:`~tafa.decide.resolution.Resolution` as dicts); empty otherwise.
    resolution: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def decide(cls, score: Score, calibration: Rule | None, *, unresolved: str | None = None,
               evasive: str | None = None, **fields: Any) -> "Verdict":
        """The rule's decision (:meth:`Rule.decide`) on the stages' scores (``score`` alone
        without stages): ``undecided`` without a rule, or with one whose references cannot
        support the alpha asked for. ``unresolved``: why the measurement cannot show
        independence (answers on a coarse grid): a suspect the rule does not judge derived is
        then ``undecided``, with that note, never cleared. ``evasive``: why the suspect's answers
        depend on how it is asked: a suspect the rule does not judge derived is then ``evasive``."""
        notes = list(fields.pop("notes", None) or [])
        if calibration is None:
            decision = Decision.UNDECIDED
        else:
            notes += [note for note in [*calibration.notes, calibration.note()] if note and note not in notes]
            decision = calibration.decide(cls._scores(score.value, fields.get("stages")))
            if decision is Decision.INDEPENDENT and unresolved:
                decision = Decision.UNDECIDED
                notes.append(unresolved)
                notes += [entry["text"] for entry in fields.get("resolution") or []]
            else:
                fields["resolution"] = []  # what a decision would need: only where none was made
        if evasive:
            notes.append(evasive)
            if decision is not Decision.DERIVED:
                decision = Decision.EVASIVE
        return cls(decision=decision, notes=notes, score=score.value, calibration=calibration,
                   per_point=score.spread(), parts=dict(score.parts), **fields)

    @staticmethod
    def _scores(score: float, stages: list[dict[str, Any]] | None) -> list[float | None]:
        return [stage.get("score") for stage in stages or []] or [score]

    @property
    def p_value(self) -> float | None:
        """The suspect's rank p-value against the references (:meth:`Rule.p_value`; ``None``
        without references)."""
        cal = self.calibration
        return None if cal is None else cal.p_value(self._scores(self.score, self.stages))

    @property
    def margin_to_threshold(self) -> float | None:
        """How far the deciding score is above (positive) or below its threshold: the largest
        over the stages that ran of score minus that stage's threshold."""
        cal = self.calibration
        if cal is None:
            return None
        gaps = [value - stage.threshold for value, stage in zip(self._scores(self.score, self.stages), cal.stages)
                if value is not None and stage.method is not BoundMethod.EXACT]  # similarities, not -log10 p
        return max(gaps) if gaps else None

    @property
    def threshold(self) -> float | None:
        return None if self.calibration is None else self.calibration.threshold

    @property
    def alpha_requested(self) -> float | None:
        """The false-positive rate asked for."""
        return None if self.calibration is None else self.calibration.alpha_requested

    @property
    def bound(self) -> float | None:
        """The false-positive bound the calibration achieves (see :attr:`Calibration.method`)."""
        return None if self.calibration is None else self.calibration.bound

    def __post_init__(self) -> None:
        self.decision = Decision(self.decision)

    def _thresholds(self) -> list[Any]:
        """Each stage's own threshold (``None`` for a stage the rule does not decide with: no
        references, or too few of them for every stage)."""
        own = [] if self.calibration is None else list(self.calibration.stages)
        return (own + [None] * len(self.stages))[:len(self.stages)]

    def _stage_dicts(self) -> list[dict[str, Any]]:
        """Each stage's record, with its own threshold, bound and p-value when calibrated."""
        return [dict(stage) if own is None else
                {**stage, "threshold": own.threshold, "alpha": own.alpha_requested, "bound": own.bound,
                 "bound_method": own.method.value,
                 "p_value": None if stage.get("score") is None else own.p_value(stage["score"])}
                for stage, own in zip(self.stages, self._thresholds())]

    def _stage_rows(self) -> list[tuple[str, str]]:
        """One line per stage: its score against its threshold, or why it did not run."""
        rows = []
        for i, (stage, own) in enumerate(zip(self.stages, self._thresholds()), start=1):
            if stage.get("score") is None:
                why = "an earlier stage decided" if own is not None else "too few references for it: see the note"
                text = f"{stage['name']}: not run ({why})"
            elif own is not None and own.method is BoundMethod.EXACT:
                side = "below" if own.fires(stage["score"]) else "not below"
                text = (f"{stage['name']}: exact p-value {own.p_value(stage['score']):.3g}, {side} its level "
                        f"{own.alpha_requested:.3g}; no queries")
            else:
                text = f"{stage['name']}: score {stage['score']:.4f}"
                if own is not None:
                    side = "above" if stage["score"] > own.threshold else "not above"
                    joint = self.calibration is not None and self.calibration.joint_p is not None
                    level = (f"needed for this suspect, the stages together at alpha "
                             f"{self.calibration.alpha_requested:.3g}" if joint and self.calibration is not None
                             else f"at alpha {own.alpha_requested:.3g}")
                    text += f", threshold {own.threshold:.4f} {level}: {side}"
                text += f"; {stage.get('queries', 0)} queries"
                stopped = stage.get("stopped")
                if stopped and stopped.get("passed"):  # tafa.decide.sequential
                    text += (f"; stopped after {stopped['probes']} of its {stopped['of']} probes, the threshold surely "
                             "passed (the score is what all of them would score at least)")
                elif stopped:
                    text += (f"; stopped after {stopped['probes']} of its {stopped['of']} probes, the threshold out of "
                             f"reach (at most {stopped['reach']:.4f} over all of them)")
            rows.append((f"stage {i}", text))
        return rows

    def margin(self) -> dict[str, float] | None:
        """How the positive references sit against the threshold (robustness side)."""
        if not self.positive_scores or self.calibration is None:
            return None
        scores = np.asarray(self.positive_scores)
        return {"n": int(scores.size), "min": float(scores.min()),
                "detected": float(np.mean(scores > self.calibration.threshold)),
                "margin": float(scores.min() - self.calibration.threshold)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``decision``, ``score``, ``threshold``, ``alpha_requested``, ``bound``
        (achieved), ``bound_method``, ``bound_note``, ``queries``, ``n_references`` first, then the
        evidence."""
        cal = self.calibration
        first = None if cal is None else cal.stages[0]
        return {
            "decision": self.decision.value, "score": self.score, "threshold": self.threshold,
            "alpha_requested": self.alpha_requested, "bound": self.bound, "p_value": self.p_value,
            "margin": self.margin_to_threshold,
            "bound_method": None if cal is None else str(cal.method),
            "bound_note": None if cal is None else cal.note(),
            "queries": self.queries, "n_references": 0 if cal is None else cal.n_references,
            "rank_threshold": None if first is None else first.rank_threshold,
            "rank_bound": None if first is None else first.rank_bound,
            "parametric_threshold": None if first is None else first.parametric_threshold,
            "reference_scores": None if first is None else first.reference_scores,
            "stages": self._stage_dicts(),
            "positives": self.margin(),
            "per_point": self.per_point, "parts": self.parts, "seconds": self.seconds,
            "scheme": self.scheme, "fingerprint_sha256": self.fingerprint_sha256,
            "suspect": self.suspect, "evasion": self.evasion,
            "weights": None if self.weights is None else self.weights.to_dict(), "coarse": self.coarse,
            "resolution": self.resolution, "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """A short human-readable verdict table."""
        cal = self.calibration
        rows = [("decision", self.decision.value.upper()),
                ("score", f"{self.score:.4f}" + (" (stage 1)" if self.stages else ""))]
        rows += [(f"  {name} part", f"{value:.4f}") for name, value in self.parts.items()]
        rows += self._stage_rows()
        if cal is not None and len(cal.stages) > 1:
            if not cal.supports_alpha:
                bound = (f"the stages' references support a false-positive rate <= {cal.bound:.3g} only; "
                         f"{cal.alpha_requested:.3g} was asked for: no decision")
            elif cal.joint_p is not None:
                exact = [stage for stage in cal.stages if stage.method is BoundMethod.EXACT]
                weighed = f" + {exact[0].bound:.3g} for the weight test" if exact else ""
                together = cal.bound - sum(stage.bound for stage in exact)
                bound = (f"false-positive rate <= {cal.bound:.3g} ({together:.3g} for the stages together, by max-T "
                         f"over {cal.n_references} distinct references{weighed})")
            else:
                shares = " + ".join(f"{stage.bound:.3g}" for stage in cal.stages)
                bound = (f"false-positive rate <= {cal.bound:.3g} = {shares} (each stage at its own share of alpha: "
                         f"{cal.method}; {cal.n_references} distinct references)")
            rows += [("bound", bound)]
        elif cal is None:
            rows.append(("threshold", "none: no references given, so no decision (see --references)"))
        else:
            stage = cal.stages[0]
            if not cal.supports_alpha:
                bound = (f"false-positive rate <= {cal.bound:.3g} only (rank of {cal.n_references} distinct "
                         f"references); {cal.alpha_requested:.3g} was asked for: no decision")
            elif stage.method is BoundMethod.RANK:
                bound = (f"false-positive rate <= {cal.bound:.3g} (distribution-free, rank of {cal.n_references} "
                         "distinct references)")
            else:
                bound = (f"false-positive rate <= {cal.bound:.3g} (parametric normal tail of the references' "
                         f"Fisher-z scores); distribution-free bound {stage.rank_bound:.3g} at "
                         f"{stage.rank_threshold:.4f}")
            rows += [("threshold", f"{cal.threshold:.4f}"), ("bound", bound),
                     ("references", f"{cal.n_references}, scores {min(stage.reference_scores):.4f} .. "
                                    f"{max(stage.reference_scores):.4f}")]
        if cal is not None and self.p_value is not None:
            gap = self.margin_to_threshold
            how = "rank among the references" + (", Bonferroni over the stages" if len(cal.stages) > 1 else "")
            floor = min([1.0] + [1 / ((cal.n_references + 1) * fraction) for stage, fraction
                                 in zip(cal.stages, cal.fractions) if stage.method is not BoundMethod.EXACT])
            if cal.joint_p is not None:
                how, floor = "max-T over the stages: the rank of its largest standardised stage score", \
                    1 / (cal.n_references + 1)
            if self.p_value <= floor * (1 + 1e-9):
                how += f": the smallest {cal.n_references} references can give"
            side = "" if gap is None else f"; {'above' if gap > 0 else 'at or below'} its threshold by {abs(gap):.4f}"
            rows.append(("p-value", f"{self.p_value:.3g} ({how}){side}"))
        margin = self.margin()
        if margin:
            rows.append(("positives", f"{margin['n']}, lowest {margin['min']:.4f}, "
                                      f"{100 * margin['detected']:.0f}% above threshold"))
        if self.per_point:
            spread = self.per_point
            rows.append(("per-point", f"min {spread['min']:.3f}  q10 {spread['q10']:.3f}  median "
                                      f"{spread['median']:.3f}  q90 {spread['q90']:.3f}  max {spread['max']:.3f}"))
        if self.coarse is not None:
            screened = self.coarse.get("probes")
            text = f"score {self.coarse['score']:.4f}, roughness {self.coarse['roughness']:.3g} (the suspect's " \
                   "relative to the owner's" + (f" at the first {screened} probes, far from rough: the others not asked"
                                                if screened else "")
            bent = self.coarse.get("curvature")
            if bent is not None:
                text += f"), curvature {bent:.3g} (its answers' bend within a step"
            text += "; " + ("it decides)" if self.coarse["decides"] else "the fingerprint's own step decides)")
            rows.append(("coarse scale", text))
        rows += [("queries", str(self.queries)), ("seconds", f"{self.seconds:.2f}"),
                 ("suspect", str(self.suspect.get("name", "?"))), ("scheme", self.scheme)]
        rows += [("note", note) for note in self.notes]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


__all__ = ["DECISIONS", "Decision", "Verdict"]
