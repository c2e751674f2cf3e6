"""What to measure at the probes: the one verb every signature answers.

A signature is split in two so that queries can be shared, batched, cached or sent to a
remote service: :meth:`SignatureKind.inputs` lists every input to query for a probe set,
and :meth:`SignatureKind.assemble` turns the answers into named arrays. :meth:`measure`
does both against a :class:`~tafa.models.Model`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

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

    def queries(self, probes: Probes) -> int:
        """How many inputs one measurement sends."""
        return len(self.inputs(probes))

    def measure(self, model: Model, probes: Probes) -> Signature:
        """Query ``model`` and assemble its signature."""
        return self.assemble(probes, model(self.inputs(probes)))


SIGNATURES: dict[str, Callable[..., SignatureKind]] = {}


def register_signature(name: str) -> Callable[[type[SignatureKind]], type[SignatureKind]]:
    """Class decorator: make a signature available by ``name``."""
    def decorate(cls: type[SignatureKind]) -> type[SignatureKind]:
        cls.name = name
        SIGNATURES[name] = cls
        return cls
    return decorate


def get_signature(name: str, **params: Any) -> SignatureKind:
    """The registered signature ``name``, built with ``params``."""
    if name not in SIGNATURES:
        raise KeyError(f"Unknown signature {name!r}; registered: {sorted(SIGNATURES)}.")
    return SIGNATURES[name](**params)
