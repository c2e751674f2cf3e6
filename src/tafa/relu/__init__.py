"""White-box analysis of piecewise-linear networks: local affine maps and region centres."""

from .linearise import Linearisation, NotPiecewiseLinear, check_head_on_top, linearise
from .regions import Centre, centre, slice_radius

__all__ = ["Centre", "Linearisation", "NotPiecewiseLinear", "centre", "check_head_on_top", "linearise", "slice_radius"]
