"""Where to query: probe strategies, looked up by name."""

from .base import PROBES, Analysis, Probes, ProbeStrategy, get_probes, orthonormal_directions, register_probes
from .random import RandomProbes
from .relu import ReluProbes

__all__ = ["PROBES", "Analysis", "Probes", "ProbeStrategy", "RandomProbes", "ReluProbes", "get_probes",
           "orthonormal_directions", "register_probes"]

from .ipguard import IPGuardProbes  # noqa: E402
from .modeldiff import ModelDiffProbes  # noqa: E402
from .sacm import SACmProbes  # noqa: E402

__all__ += ["IPGuardProbes", "ModelDiffProbes", "SACmProbes"]

from .learned import MetaVProbes  # noqa: E402

__all__ += ["MetaVProbes"]

from .boundary import BoundaryProbes  # noqa: E402

__all__ += ["BoundaryProbes"]

from .pairs import PairBoundaryProbes  # noqa: E402

__all__ += ["PairBoundaryProbes"]

from .datalike import DataLikeProbes  # noqa: E402

__all__ += ["DataLikeProbes"]
