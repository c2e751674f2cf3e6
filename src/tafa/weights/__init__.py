"""Weight evidence when the suspect is a file: its hidden units aligned with the owner's (up
to permutation and positive scale) and tested against "independently initialised".

:mod:`.layers` reads a network's weighted layers as units, :mod:`.align` matches them,
:mod:`.evidence` turns the matching into p-values. It reads tensors the safe loaders already
give and runs nothing.
"""

from .align import Matching, align, match_units
from .evidence import WeightEvidence, compare, module_evidence
from .layers import (MAX_STORED_VALUES, STORED_LAYERS, UnitLayer, layers_from_arrays, stored_layers, suspect_layers,
                     unit_layers)

__all__ = ["MAX_STORED_VALUES", "STORED_LAYERS", "Matching", "UnitLayer", "WeightEvidence", "align", "compare",
           "layers_from_arrays", "match_units", "module_evidence", "stored_layers", "suspect_layers", "unit_layers"]
