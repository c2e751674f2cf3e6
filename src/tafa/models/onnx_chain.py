"""An ONNX graph read as a chain of standard layers, without torch.

:func:`chain_steps` decides whether a graph is a single chain of layers that have a plain torch
equivalent (Linear, Conv2d, ReLU, MaxPool2d, Flatten, ...) and lists them with their weights as
numpy arrays; :mod:`tafa.models.onnx_import` builds an ``nn.Sequential`` from those steps for
an owner's white-box analysis. (The weight evidence reads any graph's layers, chain or not,
with :mod:`tafa.models.onnx_units`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelLoadError, UnsafeModelFile
from .onnx_checks import shadows_standard_operator

#: Operator domains whose nodes the import reads by their operator name.
STANDARD_DOMAINS = ("", "ai.onnx")

#: The operators :class:`~tafa.models.onnx_import.OnnxGraphModule` interprets
#: (:data:`tafa.models.onnx_ops.OPERATORS`).
INTERPRETED = frozenset({
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Relu", "PRelu", "LeakyRelu", "HardSigmoid", "Clip", "Conv",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax", "ReduceMin", "BatchNormalization",
    "Flatten", "Reshape", "Identity", "Dropout", "Transpose", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Squeeze",
    "Unsqueeze", "Concat", "Shape", "Gather", "Slice", "ConstantOfShape", "Cast", "RNN", "Expand", "ReduceMean",
    "ReduceSum", "ConvTranspose", "Pad", "Max", "Min", "Sum", "Mean", "Resize", "Upsample", "Split",
})

#: Side computations a chain may hold: the shape arithmetic torch exports for ``Unflatten``.
SHAPE_ARITHMETIC = {"Shape", "Mod", "Slice", "Concat", "Add", "Sub", "Mul", "Div", "Gather", "Unsqueeze",
                    "Squeeze", "Cast", "Reshape"}


class UnsupportedOperator(ModelLoadError):
    """The ONNX graph uses an operator outside the supported piecewise-linear set."""


def attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def pads(given: list[int] | None, dims: int) -> list[int]:
    """Symmetric padding per axis (:class:`UnsupportedOperator` for asymmetric padding)."""
    if not given:
        return [0] * dims
    begin, end = given[:dims], given[dims:]
    if list(begin) != list(end):
        raise UnsupportedOperator("asymmetric padding is not supported by the ONNX import")
    return list(begin)


def text(attrs: dict[str, Any], name: str, default: str) -> str:
    """A string attribute as text (``default`` when absent; ONNX gives bytes)."""
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def auto_pad(attrs: dict[str, Any]) -> str:
    """A Conv's or pooling node's ``auto_pad`` as text (``NOTSET`` when absent)."""
    return text(attrs, "auto_pad", "NOTSET")


def symmetric(attrs: dict[str, Any], dims: int) -> bool:
    """Whether a Conv's or pooling node's padding is the same at both ends of every axis and given
    explicitly (or ``VALID``): what a plain torch layer of a chain pads; anything else (``SAME_*``,
    asymmetric pads, as TensorFlow converters write) is run by the graph interpreter."""
    given = attrs.get("pads") or [0] * 2 * dims
    return auto_pad(attrs) in ("NOTSET", "VALID") and list(given[:dims]) == list(given[dims:])


def check_functions(model: Any) -> None:
    """Refuse (:class:`~tafa.errors.UnsafeModelFile`) a model whose model-local function is
    named like an operator the import interprets (:data:`INTERPRETED`, ``Constant``) or like a
    standard ONNX operator of its domain: the import reads nodes by name, so it would take the
    function for that operator while the sandbox runs the function's body."""
    for function in model.functions:
        domain, name = function.domain, function.name
        if name in INTERPRETED or name == "Constant" or shadows_standard_operator(domain, name):
            label = f"{domain}::{name}" if domain else name
            raise UnsafeModelFile(f"The ONNX model defines a local function {label!r} named like the operator "
                                  f"{name!r}; the white-box import refuses it rather than import it as that operator.")


def chain_kind(op_type: str, attrs: dict[str, Any], weights: list[np.ndarray]) -> str | None:
    """What one node of a chain becomes: ``"linear"`` (Gemm as ``nn.Linear``), ``"conv"``
    (``nn.Conv2d``), ``"plain"`` (a weightless module), or ``None`` (no plain equivalent)."""
    if op_type == "Gemm" and attrs.get("transB", 0) == 1 and not attrs.get("transA", 0) \
            and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and len(weights) in (1, 2):
        weight = weights[0]
        if weight.ndim != 2 or (len(weights) == 2 and weights[1].shape != (weight.shape[0],)):
            return None
        return "linear"
    if op_type == "Conv" and len(weights) in (1, 2) and weights[0].ndim == 4 and symmetric(attrs, 2):
        weight, groups = weights[0], attrs.get("group", 1)
        if not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups \
                or (len(weights) == 2 and weights[1].shape != (weight.shape[0],)):
            return None
        return "conv"
    if weights:
        return None
    if op_type in ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Identity", "Dropout"):
        return "plain"
    if op_type == "MaxPool" and len(attrs["kernel_shape"]) == 2 and not attrs.get("ceil_mode", 0) \
            and symmetric(attrs, 2):
        return "plain"
    if op_type == "Flatten" and attrs.get("axis", 1) == 1:
        return "plain"
    return None


def static_shapes(model: Any) -> dict[str, list[int]]:
    """Shapes that shape inference could fix, by value name (dims it could not fix are 0)."""
    shapes = {}
    for info in [*model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [int(d.dim_value) if d.HasField("dim_value") else 0 for d in dims]
    return shapes


def per_sample(shape: list[int], inferred: list[int] | None, before: list[int] | None) -> list[int]:
    """A Reshape's target ``shape`` (batch first) with the per-sample sizes it leaves open (-1, or
    unknown to shape inference) filled: from ``inferred`` (the output's shape as inference fixed
    it), else the one open size from the input's per-sample size (``before``, fully known)."""
    if all(v > 0 for v in shape[1:]):
        return shape
    if inferred and len(inferred) == len(shape) and all(v > 0 for v in inferred[1:]):
        return [shape[0], *inferred[1:]]
    open_sizes = [i for i, v in enumerate(shape[1:], start=1) if v <= 0]
    if len(open_sizes) == 1 and before and len(before) > 1 and all(v > 0 for v in before[1:]):
        rest = math.prod(v for v in shape[1:] if v > 0)
        if rest and math.prod(before[1:]) % rest == 0:
            filled = list(shape)
            filled[open_sizes[0]] = math.prod(before[1:]) // rest
            return filled
    return shape


@dataclass(frozen=True)
class Step:
    """One layer of a chain: its node's operator, attributes and weights, and what it becomes
    (:func:`chain_kind`, or ``"reshape"`` with the per-sample ``shape`` a Reshape gives)."""

    op_type: str
    attrs: dict[str, Any]
    weights: list[np.ndarray]
    kind: str
    shape: tuple[int, ...] = ()


def chain_steps(model: Any) -> list[Step] | None:
    """The layers of a graph that is a single chain of nodes with plain torch equivalents, in
    order, else ``None`` (may raise ``KeyError``/``ValueError``/``TypeError``/``IndexError`` on
    a malformed graph, and :class:`UnsupportedOperator` on asymmetric padding)."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    constants = {node.output[0]: numpy_helper.to_array(attributes(node)["value"])
                 for node in graph.node if node.op_type == "Constant"}
    given = [i for i in graph.input if i.name not in initializers]
    if len(given) != 1:
        return None
    inputs = [given[0].name]
    dims = given[0].type.tensor_type.shape.dim
    fixed = int(dims[0].dim_value) if len(dims) and dims[0].HasField("dim_value") else None  # a fixed batch
    static: dict[str, list[int]] | None = None
    current = inputs[0]
    steps: list[Step] = []
    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS:
            return None
        if node.op_type == "Constant":
            continue
        if node.op_type == "Shape" or not node.input or node.input[0] != current:
            # a side computation (e.g. the shape arithmetic torch exports for Unflatten) may read
            # the chain's shape, never its values
            if node.op_type in SHAPE_ARITHMETIC and (current not in node.input or node.op_type == "Shape"):
                continue
            return None
        extra = list(node.input[1:])
        attrs = attributes(node)
        if node.op_type == "Reshape" and len(extra) == 1:
            known = {**initializers, **constants}
            if static is None:
                import onnx

                static = static_shapes(onnx.shape_inference.infer_shapes(model))
            if extra[0] in known:
                shape = [int(v) for v in np.array(known[extra[0]]).ravel()]
            else:
                shape = [-1, *static.get(node.output[0], [0])[1:]]
            if shape and fixed is not None and shape[0] == fixed:
                shape[0] = -1  # the batch, as a graph exported for a fixed batch writes it
            shape = per_sample(shape, static.get(node.output[0]), static.get(current))
            if shape[0] not in (-1, 0) or len(shape) < 2 or any(v <= 0 for v in shape[1:]):
                return None
            steps.append(Step(node.op_type, attrs, [], "reshape", tuple(shape[1:])))
        else:
            if any(name not in initializers for name in extra if name):
                return None
            weights = [initializers[name] for name in extra if name]
            kind = chain_kind(node.op_type, attrs, weights)
            if kind is None:
                return None
            steps.append(Step(node.op_type, attrs, weights, kind))
        current = node.output[0]
    if current != graph.output[0].name:
        return None
    return steps
