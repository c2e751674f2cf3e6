"""What to measure at the probes: measurements (the stage's classes, looked up by name)
and the signatures they produce (named arrays)."""

from .base import SIGNATURES, Measurement, Signature, get_signature, register_signature
from .derivatives import Derivatives
from .outputs import Outputs

__all__ = ["SIGNATURES", "Derivatives", "Measurement", "Outputs", "Signature", "get_signature",
           "register_signature"]

from .correlation import Correlation  # noqa: E402
from .distance import DecisionDistance  # noqa: E402
from .labels import Labels  # noqa: E402

__all__ += ["Correlation", "DecisionDistance", "Labels"]

from .kinks import Kinks  # noqa: E402

__all__ += ["Kinks"]

from .pairs import PairDifferences  # noqa: E402

__all__ += ["PairDifferences"]
