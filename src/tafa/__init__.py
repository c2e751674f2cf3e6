"""tafa: task-agnostic, data-free fingerprinting of ReLU networks.

The pipeline, one stage per subpackage: a model is opened (:mod:`tafa.models`), probes are
chosen (:mod:`tafa.probes`), a signature is measured (:mod:`tafa.signature`), a decision is
made (:mod:`tafa.decide`). Users import from here:

>>> from tafa import Fingerprint, Verdict, parse_domain

The names are imported when first used (PEP 562), so that ``import tafa`` -- and the
command line's ``--help`` -- does not pay for torch and scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Calibration": "tafa.decide", "Score": "tafa.decide", "Verdict": "tafa.decide", "calibrate": "tafa.decide",
    "Box": "tafa.domain", "Domain": "tafa.domain", "Gaussian": "tafa.domain", "parse_domain": "tafa.domain",
    "TafaError": "tafa.errors", "Fingerprint": "tafa.fingerprint", "Model": "tafa.models",
    "TorchModel": "tafa.models", "SCHEMES": "tafa.scheme", "Scheme": "tafa.scheme", "get_scheme": "tafa.scheme",
    "register_scheme": "tafa.scheme", "References": "tafa.references", "WeightEvidence": "tafa.weights",
}

__all__ = ["Box", "Calibration", "Domain", "Fingerprint", "Gaussian", "Model", "References", "SCHEMES", "Scheme",
           "Score", "TafaError", "TorchModel", "Verdict", "WeightEvidence", "calibrate", "get_scheme", "parse_domain",
           "register_scheme"]

if TYPE_CHECKING:
    from .decide import Calibration, Score, Verdict, calibrate
    from .domain import Box, Domain, Gaussian, parse_domain
    from .errors import TafaError
    from .fingerprint import Fingerprint
    from .models import Model, TorchModel
    from .references import References
    from .scheme import SCHEMES, Scheme, get_scheme, register_scheme
    from .weights import WeightEvidence


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tafa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
