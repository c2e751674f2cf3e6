"""Reference models: what a learned verifier, a reference-guided probe selection and the margin
report are given about the owner's neighbourhood.

:class:`References` is only the container (positives: copies derived from the owner;
negatives: models that are not), low in the tree so that probes, decisions and the
fingerprint accept it as an argument. *Making* references from the owner alone, which needs
the attacks, is :func:`tafa.attacks.references.data_free_references`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


@dataclass
class References:
    """Positive (derived) and negative (independent) reference models, with provenance.

    ``provenance`` (optional) holds one record per reference made by
    :func:`tafa.attacks.references.data_free_references`: its name, kind, relative weight
    change from the owner and utility; the fingerprint keeps it in its metadata.
    """

    positives: list[nn.Module] = field(default_factory=list)
    negatives: list[nn.Module] = field(default_factory=list)
    positive_names: list[str] = field(default_factory=list)
    negative_names: list[str] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
