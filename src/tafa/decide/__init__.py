"""How to decide: similarities, the calibrated threshold, the verdict."""

from .learned import EvidenceVerifier, LearnedSimilarity
from .similarity import SIMILARITIES, Score, Similarity, get_similarity, register_similarity
from .rule import DECISIONS, Decision, Rule
from .threshold import BoundMethod, Calibration, calibrate
from .verdict import Verdict

__all__ = ["EvidenceVerifier", "LearnedSimilarity", "DECISIONS", "SIMILARITIES", "BoundMethod", "Calibration",
           "Decision", "Rule", "Score", "Similarity", "Verdict", "calibrate",
           "get_similarity", "register_similarity"]

from .metav import MetaVerifier  # noqa: E402

__all__ += ["MetaVerifier"]
