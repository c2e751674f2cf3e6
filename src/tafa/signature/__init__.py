"""What to measure at the probes: signatures, looked up by name."""

from .base import SIGNATURES, Signature, SignatureKind, get_signature, register_signature
from .derivatives import Derivatives
from .outputs import Outputs

__all__ = ["SIGNATURES", "Derivatives", "Outputs", "Signature", "SignatureKind", "get_signature",
           "register_signature"]

from .correlation import Correlation  # noqa: E402
from .distance import DecisionDistance  # noqa: E402
from .labels import Labels  # noqa: E402

__all__ += ["Correlation", "DecisionDistance", "Labels"]
