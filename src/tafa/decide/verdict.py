"""The verdict: the decision and everything needed to defend it.

``decision`` is ``"derived"`` when the suspect's score exceeds the calibrated threshold,
``"independent"`` when it does not, and ``"undecided"`` when there were no references to
calibrate on (the raw score is still reported; tafa never guesses a threshold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .similarity import Score
from .threshold import Calibration

DECISIONS = ("derived", "independent", "undecided")


@dataclass
class Verdict:
    """Outcome of verifying one suspect against one fingerprint."""

    decision: str
    score: float
    calibration: Calibration | None
    per_point: dict[str, float]
    parts: dict[str, float]
    queries: int
    seconds: float
    suspect: dict[str, Any]
    scheme: str
    fingerprint_sha256: str
    positive_scores: list[float] | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def decide(cls, score: Score, calibration: Calibration | None, **fields: Any) -> "Verdict":
        """Apply the calibrated rule ``derived iff score > threshold`` (``undecided`` without one)."""
        if calibration is None:
            decision = "undecided"
        else:
            decision = "derived" if score.value > calibration.threshold else "independent"
        return cls(decision=decision, score=score.value, calibration=calibration,
                   per_point=score.spread(), parts=dict(score.parts), **fields)

    @property
    def threshold(self) -> float | None:
        return None if self.calibration is None else self.calibration.threshold

    @property
    def alpha(self) -> float | None:
        return None if self.calibration is None else self.calibration.bound

    def margin(self) -> dict[str, float] | None:
        """How the positive references sit against the threshold (robustness side)."""
        if not self.positive_scores or self.calibration is None:
            return None
        scores = np.asarray(self.positive_scores)
        return {"n": int(scores.size), "min": float(scores.min()),
                "detected": float(np.mean(scores > self.calibration.threshold)),
                "margin": float(scores.min() - self.calibration.threshold)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``decision``, ``score``, ``threshold``, ``alpha``, ``queries``,
        ``n_references`` first, then the evidence."""
        cal = self.calibration
        return {
            "decision": self.decision, "score": self.score, "threshold": self.threshold,
            "alpha": self.alpha, "queries": self.queries,
            "n_references": 0 if cal is None else cal.n_references,
            "bound_method": None if cal is None else cal.method,
            "alpha_requested": None if cal is None else cal.alpha,
            "rank_threshold": None if cal is None else cal.rank_threshold,
            "rank_bound": None if cal is None else cal.rank_bound,
            "parametric_threshold": None if cal is None else cal.parametric_threshold,
            "reference_scores": None if cal is None else cal.reference_scores,
            "positives": self.margin(),
            "per_point": self.per_point, "parts": self.parts, "seconds": self.seconds,
            "scheme": self.scheme, "fingerprint_sha256": self.fingerprint_sha256,
            "suspect": self.suspect, "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        """A short human-readable verdict table."""
        cal = self.calibration
        rows = [("decision", self.decision.upper()), ("score", f"{self.score:.4f}")]
        rows += [(f"  {name} part", f"{value:.4f}") for name, value in self.parts.items()]
        if cal is None:
            rows.append(("threshold", "none: no references given, so no decision (see --references)"))
        else:
            if cal.method == "rank":
                bound = f"false-positive rate <= {cal.bound:.3g} (distribution-free, rank of {cal.n_references} references)"
            else:
                bound = (f"false-positive rate <= {cal.alpha:.3g} (parametric normal tail of the references' "
                         f"Fisher-z scores); distribution-free bound {cal.rank_bound:.3g} at {cal.rank_threshold:.4f}")
            rows += [("threshold", f"{cal.threshold:.4f}"), ("bound", bound),
                     ("references", f"{cal.n_references}, scores {min(cal.reference_scores):.4f} .. "
                                    f"{max(cal.reference_scores):.4f}")]
        margin = self.margin()
        if margin:
            rows.append(("positives", f"{margin['n']}, lowest {margin['min']:.4f}, "
                                      f"{100 * margin['detected']:.0f}% above threshold"))
        if self.per_point:
            spread = self.per_point
            rows.append(("per-point", f"min {spread['min']:.3f}  q10 {spread['q10']:.3f}  median "
                                      f"{spread['median']:.3f}  q90 {spread['q90']:.3f}  max {spread['max']:.3f}"))
        rows += [("queries", str(self.queries)), ("seconds", f"{self.seconds:.2f}"),
                 ("suspect", str(self.suspect.get("name", "?"))), ("scheme", self.scheme)]
        rows += [("note", note) for note in self.notes]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
