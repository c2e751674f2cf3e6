"""What a service returns instead of raw outputs: interface wrappers around a model.

A pirate who serves a copy rarely returns its raw outputs: a classifier answers probabilities
(often rounded), the top k of them, or a label; a regressor answers in another unit, clipped or
rounded; a decoder answers pixels in a bounded range or in 8 bits. An :class:`Interface` is one
such transform of the answers, by name, behind one verb, :meth:`Interface.apply`, which wraps a
:class:`~tafa.models.Model` in an :class:`InterfacedModel`: a model that asks the wrapped one and
transforms its answers (in float64), counting queries as every model does. Innocent services
answer the same way, so the benchmark wraps independent models in the same interfaces.

The interfaces of the benchmark are registered in :data:`INTERFACES` at import;
:func:`register_interface` adds more.

>>> import numpy as np
>>> from tafa.models import TorchModel
>>> import torch
>>> model = TorchModel(torch.nn.Linear(3, 4), (3,))
>>> served = get_interface("softmax").apply(model)
>>> answers = served(np.ones((2, 3), dtype=np.float32))
>>> answers.sum(axis=1).round(12).tolist(), served.queries, model.queries
([1.0, 1.0], 2, 2)
>>> sorted({interface.task for interface in INTERFACES.values()})
['any', 'classification', 'generation', 'regression']
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from ..components import named, register_named
from ..errors import check_param
from ..models.base import Model

#: The tasks an interface belongs to (what kind of answers it transforms).
TASKS = ("classification", "regression", "generation")
#: The task of an interface that fits every task (how the answers are computed, not what they are).
ANY = "any"

#: A transform of one batch of answers, ``(b, *output_shape)`` -> the same shape, float64.
Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interface:
    """A named transform of a model's answers, for models of one task."""

    name: str
    task: str
    transform: Transform
    description: str = ""
    #: How the service computes its answers, where not as the model is given: a new torch module
    #: made from the model's (e.g. the whole network in half precision); the model must then be a
    #: torch module (:meth:`~tafa.models.Model.torch_module`), which is not changed.
    compute: Callable[[Any], Any] | None = None

    def apply(self, model: Model) -> InterfacedModel:
        """``model`` answering through this interface (``model`` itself is not changed)."""
        caller = f"Interface({self.name!r}).apply"
        check_param("model", model, "a tafa Model", isinstance(model, Model), caller=caller)
        if self.compute is not None:
            module = model.torch_module()
            check_param("model", model, "a model held as a torch module (TorchModel)", module is not None,
                        caller=caller)
            from ..models.base import TorchModel

            model = TorchModel(self.compute(module), model.input_shape, name=model.name, white_box=False,
                               batch_size=model.batch_size)
        return InterfacedModel(model, self)


class InterfacedModel(Model):
    """A model that answers what ``inner`` answers, transformed by ``interface``: a black box
    (no torch module), whose content hash is the inner model's combined with the interface's name."""

    def __init__(self, inner: Model, interface: Interface) -> None:
        self.inner = inner
        self.interface = interface
        super().__init__(inner.input_shape, inner.output_shape, name=f"{inner.name}|{interface.name}",
                         batch_size=inner.batch_size)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        answers = np.asarray(self.inner(x), dtype=np.float64)
        return np.asarray(self.interface.transform(answers), dtype=np.float64).reshape(answers.shape)

    def content_hash(self) -> str:
        inner = self.inner.content_hash()
        return hashlib.sha256(f"{inner}|{self.interface.name}".encode()).hexdigest() if inner else ""

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "name": self.name, "white_box": False, "interface": self.interface.name}


#: Every registered interface, by name.
INTERFACES: dict[str, Interface] = {}


def register_interface(interface: Interface, *, replace: bool = False) -> Interface:
    """Add ``interface`` to :data:`INTERFACES` (an existing name only with ``replace=True``)."""
    caller = "register_interface"
    check_param("interface", interface, "an Interface", isinstance(interface, Interface), caller=caller)
    check_param("interface.task", interface.task, f"one of {(*TASKS, ANY)}", interface.task in (*TASKS, ANY),
                caller=caller)
    return register_named(INTERFACES, interface, interface.name, what="interface", replace=replace, caller=caller)


def get_interface(name: str) -> Interface:
    """The registered interface called ``name``."""
    return named(INTERFACES, name, caller="get_interface")


def interfaces_for(task: str) -> list[Interface]:
    """The registered interfaces of ``task`` (and those of every task), in registration order."""
    check_param("task", task, f"one of {TASKS}", task in TASKS, caller="interfaces_for")
    return [interface for interface in INTERFACES.values() if interface.task in (task, ANY)]


def rounded_to(step: float, task: str = "regression") -> Interface:
    """Answers rounded to multiples of ``step`` (a service's own rounding, at any grid; not
    registered: ``round1`` is the benchmark's)."""
    check_param("step", step, "a positive number", step > 0, caller="rounded_to")
    return Interface(f"round_to_{step:g}", task, lambda y: np.round(y / step) * step,
                     f"answers rounded to multiples of {step:g}")


# --- the transforms: pure functions of a batch of answers, per row over the flattened outputs ---

def per_row(transform: Callable[[np.ndarray], np.ndarray]) -> Transform:
    """``transform`` of ``(b, m)`` rows, applied to answers of any per-sample shape."""
    def apply(answers: np.ndarray) -> np.ndarray:
        flat = np.asarray(answers, dtype=np.float64).reshape(len(answers), -1)
        return np.asarray(transform(flat), dtype=np.float64).reshape(answers.shape)
    return apply


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``(b, m)`` logits at ``temperature`` (shifted by the row maximum)."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exps = np.exp(scaled)
    return exps / exps.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``(b, m)`` logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def top_k(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` largest values kept, the others set to 0 (not renormalised)."""
    kept = np.zeros_like(probabilities)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    np.put_along_axis(kept, order, np.take_along_axis(probabilities, order, axis=1), axis=1)
    return kept


def rounded_softmax(logits: np.ndarray, decimals: int) -> np.ndarray:
    """Row-wise softmax probabilities rounded to ``decimals`` decimals."""
    return np.round(softmax(logits), decimals)


def one_hot(logits: np.ndarray) -> np.ndarray:
    """Each row's top-1 label as a one-hot row."""
    return np.eye(logits.shape[1])[np.argmax(logits, axis=1)]


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function, computed without overflow."""
    return np.exp(-np.logaddexp(0.0, -values))


def in_precision(module: Any, dtype: Any) -> Any:
    """A copy of the torch ``module`` computed in ``dtype`` (its parameters and buffers cast; a
    :class:`~tafa.models.TorchModel` casts the inputs to it and the answers back)."""
    import copy

    return copy.deepcopy(module).to(dtype)


def pixels8(values: np.ndarray) -> np.ndarray:
    """Values clamped to ``[0, 1]`` and rounded to 8 bits (multiples of 1/255)."""
    return np.round(np.clip(values, 0.0, 1.0) * 255.0) / 255.0


def _register_standard() -> None:
    def classification(name: str, transform: Callable[[np.ndarray], np.ndarray], description: str) -> None:
        register_interface(Interface(name, "classification", per_row(transform), description))

    classification("softmax", softmax, "probabilities (softmax of the logits)")
    classification("log_softmax", log_softmax, "log-probabilities (log-softmax of the logits)")
    for temperature, tag in ((0.5, "t05"), (3.0, "t3")):
        classification(f"softmax_{tag}", partial(softmax, temperature=temperature),
                       f"probabilities at temperature {temperature:g} (softmax of logits / {temperature:g})")
    for decimals in (2, 3):
        classification(f"softmax_round{decimals}", partial(rounded_softmax, decimals=decimals),
                       f"probabilities rounded to {decimals} decimals")
    classification("top3", lambda z: top_k(softmax(z), 3), "the 3 largest probabilities, the others zeroed")
    classification("integer_logits", np.round, "logits rounded to integers")
    classification("one_hot", one_hot, "the top-1 label, one-hot")
    classification("top1", lambda z: top_k(softmax(z), 1), "the top-1 label with its probability, the others zeroed")

    register_interface(Interface("affine", "regression", lambda y: 2.5 * y + 10.0, "another unit: 2.5 y + 10"))
    register_interface(Interface("affine_negative", "regression", lambda y: -0.5 * y + 3.0,
                                 "another unit, reversed: -0.5 y + 3"))
    register_interface(Interface("clip", "regression", lambda y: np.clip(y, -1.0, 1.0), "clipped to [-1, 1]"))
    register_interface(Interface("round1", "regression", lambda y: np.round(y, 1), "rounded to 1 decimal"))

    register_interface(Interface("sigmoid", "generation", sigmoid, "sigmoid of every output"))
    register_interface(Interface("tanh", "generation", np.tanh, "tanh of every output"))
    register_interface(Interface("clamp", "generation", lambda y: np.clip(y, 0.0, 1.0), "clamped to [0, 1]"))
    register_interface(Interface("pixels8", "generation", pixels8, "clamped to [0, 1], 8-bit pixels"))

    import torch

    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        register_interface(Interface(name, ANY, lambda y: y, f"the whole network computed in {name}, the answers "
                                     "cast back", compute=partial(in_precision, dtype=dtype)))


_register_standard()
