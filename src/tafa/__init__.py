"""tafa: task-agnostic, data-free fingerprinting of ReLU networks.

The pipeline, one stage per subpackage: a model is opened (:mod:`tafa.models`), probes are
chosen (:mod:`tafa.probes`), a signature is measured (:mod:`tafa.signature`), a decision is
made (:mod:`tafa.decide`). Users import from here:

>>> from tafa import Fingerprint, Verdict, parse_domain
"""

from .decide import Calibration, Score, Verdict, calibrate
from .domain import Box, Domain, Gaussian, parse_domain
from .errors import TafaError
from .fingerprint import Fingerprint
from .models import Model, TorchModel
from .scheme import SCHEMES, Scheme, get_scheme, register_scheme

__all__ = ["Box", "Calibration", "Domain", "Fingerprint", "Gaussian", "Model", "SCHEMES", "Scheme", "Score",
           "TafaError", "TorchModel", "Verdict", "calibrate", "get_scheme", "parse_domain", "register_scheme"]

from . import baseline_schemes  # noqa: F401,E402  (registers the modeldiff, ipguard, sac-m and metav schemes)
