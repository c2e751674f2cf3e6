"""What to measure at the probes: the one verb every measurement answers.

Two names, two things: a :class:`Measurement` is the stage (a registered class such as
``Derivatives``, chosen by a scheme's ``signature`` name), and a :data:`Signature` is what
it produces for one model (named arrays, e.g. ``{"outputs": ..., "derivatives": ...}``),
which the owner keeps in the fingerprint and the decision stage compares.

A measurement is split in two so that queries can be shared, batched, cached or sent to a
remote service: :meth:`Measurement.inputs` lists every input to query for a probe set,
and :meth:`Measurement.assemble` turns the answers into a signature.
:meth:`Measurement.measure` does both against a :class:`~tafa.models.Model`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..components import Components
from ..models.base import Model
from ..probes.base import Probes

#: A model's signature at a probe set: named arrays (what a :class:`Measurement` produces).
Signature = dict[str, np.ndarray]


class Measurement(ABC):
    """Measures a model at a probe set: the signature stage's verb is :meth:`measure`."""

    name: str = ""

    @abstractmethod
    def inputs(self, probes: Probes) -> np.ndarray:
        """Every input this signature queries, ``(Q, *input_shape)``."""

    @abstractmethod
    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        """Named arrays from the model's answers to :meth:`inputs` (in that order)."""

    #: Whether a suspect that answers only labels (a class index per input) can be measured.
    accepts_labels: bool = False
    #: Whether the inputs depend on the answers (then :meth:`inputs` has no fixed list: only
    #: :meth:`measure` against a model works, and :meth:`queries` is an upper bound).
    adaptive: bool = False
    #: Arrays of :meth:`signature_shapes` that an owner signature stored before they were measured
    #: may lack (a similarity then compares without them).
    optional_keys: frozenset[str] = frozenset()

    def signature_shapes(self, probes: Probes, output_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of every array of a signature at ``probes`` (what a fingerprint file checks)."""
        outputs = np.random.default_rng(0).normal(size=(self.queries(probes), *output_shape))
        return {key: np.shape(value) for key, value in self.assemble(probes, outputs).items()}

    #: The arrays that can be measured relative to another model at the same probes (a shared
    #: public parent's): values in the output space, where the difference of two models' arrays
    #: is what one changed relative to the other (:func:`relative_to`). Empty: no parent-aware use.
    relative_keys: tuple[str, ...] = ()

    def answer_probes(self, probes: Probes) -> np.ndarray | None:
        """Which probe each answer to :meth:`inputs` belongs to (``(Q,)`` indices into the probes;
        ``None``: answers are not per probe, and no probe can be left out)."""
        return None

    def from_labels(self, probes: Probes, labels: np.ndarray) -> Signature:
        """The signature of a labels-only suspect from its answers to :meth:`inputs`."""
        raise NotImplementedError(f"Signature {self.name!r} needs the model's outputs, not labels.")

    def queries(self, probes: Probes) -> int:
        """How many inputs one measurement sends."""
        return len(self.inputs(probes))

    def measure(self, model: Model, probes: Probes) -> Signature:
        """Query ``model`` and assemble its signature."""
        return self.assemble(probes, model(self.inputs(probes)))


def relative_to(signature: Signature, baseline: Signature, keys: tuple[str, ...]) -> Signature:
    """``signature`` with each array of ``keys`` replaced by its difference from ``baseline``'s
    (the other arrays, e.g. direction-group labels, kept as they are): what a model changed
    relative to the baseline model (a parent it was fine-tuned from) at the same probes.

    >>> relative_to({"outputs": np.array([[3.0]]), "group": np.array([0.0])},
    ...             {"outputs": np.array([[1.0]])}, ("outputs",))["outputs"].tolist()
    [[2.0]]
    """
    return {key: value - baseline[key] if key in keys else value for key, value in signature.items()}


SIGNATURES: Components[Measurement] = Components("signature")

#: Class decorator: make a signature available by name.
register_signature = SIGNATURES.register


def get_signature(name: str, **params: Any) -> Measurement:
    """The registered signature ``name``, built with ``params``."""
    return SIGNATURES.create(name, **params)
