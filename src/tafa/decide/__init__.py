"""How to decide: similarities, the calibrated threshold, the verdict."""

from .learned import EvidenceVerifier, LearnedSimilarity
from .similarity import SIMILARITIES, Score, Similarity, get_similarity, register_similarity
from .threshold import BoundMethod, Calibration, StagedCalibration, calibrate, calibrate_stages
from .verdict import DECISIONS, Decision, Verdict

__all__ = ["EvidenceVerifier", "LearnedSimilarity", "DECISIONS", "SIMILARITIES", "BoundMethod", "Calibration",
           "Decision", "Score", "Similarity", "StagedCalibration", "Verdict", "calibrate", "calibrate_stages",
           "get_similarity", "register_similarity"]

from .metav import MetaVerifier  # noqa: E402

__all__ += ["MetaVerifier"]
