"""What to measure at the probes: the one verb every signature answers.

A signature is split in two so that queries can be shared, batched, cached or sent to a
remote service: :meth:`SignatureKind.inputs` lists every input to query for a probe set,
and :meth:`SignatureKind.assemble` turns the answers into named arrays. :meth:`measure`
does both against a :class:`~tafa.models.Model`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..components import Components
from ..models.base import Model
from ..probes.base import Probes

Signature = dict[str, np.ndarray]


class SignatureKind(ABC):
    """Measures a model at a probe set."""

    name: str = ""

    @abstractmethod
    def inputs(self, probes: Probes) -> np.ndarray:
        """Every input this signature queries, ``(Q, *input_shape)``."""

    @abstractmethod
    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        """Named arrays from the model's answers to :meth:`inputs` (in that order)."""

    #: Whether a suspect that answers only labels (a class index per input) can be measured.
    accepts_labels: bool = False

    def from_labels(self, probes: Probes, labels: np.ndarray) -> Signature:
        """The signature of a labels-only suspect from its answers to :meth:`inputs`."""
        raise NotImplementedError(f"Signature {self.name!r} needs the model's outputs, not labels.")

    def queries(self, probes: Probes) -> int:
        """How many inputs one measurement sends."""
        return len(self.inputs(probes))

    def measure(self, model: Model, probes: Probes) -> Signature:
        """Query ``model`` and assemble its signature."""
        return self.assemble(probes, model(self.inputs(probes)))


SIGNATURES: Components[SignatureKind] = Components("signature")

#: Class decorator: make a signature available by name.
register_signature = SIGNATURES.register


def get_signature(name: str, **params: Any) -> SignatureKind:
    """The registered signature ``name``, built with ``params``."""
    return SIGNATURES.create(name, **params)
