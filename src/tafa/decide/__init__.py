"""How to decide: similarities, the calibrated threshold, the verdict."""

from .similarity import SIMILARITIES, Score, Similarity, get_similarity, register_similarity
from .threshold import Calibration, calibrate
from .verdict import DECISIONS, Verdict

__all__ = ["DECISIONS", "SIMILARITIES", "Calibration", "Score", "Similarity", "Verdict", "calibrate",
           "get_similarity", "register_similarity"]
