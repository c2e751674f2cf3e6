"""The weighted layers of any ONNX graph read as units, without torch.

The weight evidence (:mod:`tafa.weights`) compares two networks' hidden units. A torch module
lists its layers as modules; an ONNX graph lists nodes. Here every node that mixes its input
with a stored weight matrix is read as a layer of units, in the graph's order (ONNX graphs are
topologically sorted), whatever the graph around it is: a chain, a residual network, an
unrolled RNN, an attention block, a GELU network (nothing is run, so no operator needs a
torch equivalent). The layers read:

- ``Conv`` with one group (a 1-, 2- or 3-d convolution: one unit per filter);
- ``Gemm`` (its ``alpha``, ``beta`` and transposes applied) and ``MatMul`` by a stored 2-d
  matrix (one unit per output feature; ``MatMul`` by a 3-d or larger tensor is not a layer);
- ``ConvInteger`` and ``MatMulInteger`` (a dynamically quantised file: the stored int8 weight
  less its zero point);
- then the per-unit affine nodes the layer's value goes to alone, folded in as
  :func:`~tafa.weights.layers.unit_layers` folds a BatchNorm module: an ``Add`` of a stored
  bias (what exporters write beside ``MatMul``), a ``Mul`` by a stored positive scale, a
  ``BatchNormalization`` with stored statistics, a ``Cast``.

Weights may be stored as initializers or ``Constant`` nodes, or behind ``Identity``, ``Cast``
(a half-precision file) or ``DequantizeLinear`` (a quantised file's int8 weights, per tensor
or per axis). Reading stops, as for a module, at a grouped or transposed convolution, at
``max_layers`` or at a size bound. A weight several nodes use (tied weights, a recurrence
unrolled step by step) is one layer, read where it is first used.

A layer's units are *hidden* (their order is free, which the order test needs) only when every
path from the layer's value reaches another weighted layer through operators that treat every
unit alike (:data:`UNITWISE`, a flatten, a per-channel convolution): a head, a layer whose units
also reach an output by a skip path, a channel split (ShuffleNet), a reshape into attention heads,
a slice of an unrolled sequence or an unknown operator leaves it not hidden (the safe side:
no order test, rather than one whose null does not hold).

>>> import numpy as np
>>> from onnx import TensorProto, helper, numpy_helper
>>> w1, w2 = np.ones((4, 3), np.float32), np.ones((2, 4), np.float32)
>>> graph = helper.make_graph(
...     [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
...      helper.make_node("MatMul", ["r", "w2t"], ["y"])], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
...     [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2.T.copy(), "w2t")])
>>> [(layer.kind, layer.vectors.shape, layer.hidden) for layer in proto_unit_layers(helper.make_model(graph),
...  source="g", max_layers=8, max_values=1 << 20)]
[('linear', (4, 4), True), ('linear', (2, 5), False)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .onnx_chain import STANDARD_DOMAINS, attributes, check_functions

#: Operators through which a stored weight is still the weight.
_WEIGHT_PASSES = ("Identity", "Cast", "DequantizeLinear")


class Stored(Protocol):
    """A graph's stored tensors: their ``names``, and each one's ``shape`` (read before the
    values are) and ``array``."""

    names: frozenset[str]

    def shape(self, name: str) -> tuple[int, ...]: ...

    def array(self, name: str) -> np.ndarray: ...


@dataclass(frozen=True)
class GraphNode:
    """One node as the reader needs it (``standard``: in the ONNX domain, read by its name)."""

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    standard: bool = True


@dataclass
class _Layer:
    name: str
    kind: str
    inputs: int
    weight: np.ndarray  # (units, fan-in)
    bias: np.ndarray
    value: str  # the value that carries the layer's units (after its bias and BatchNorm)
    axis: int = 1  # where its units lie in that value, counted from the end


def _dequantized(args: list[np.ndarray], attrs: Mapping[str, Any]) -> np.ndarray | None:
    """``DequantizeLinear`` of stored values: per tensor or per axis (None for any other form,
    or shapes that do not fit)."""
    values, scale = args[0].astype(np.float64), args[1].astype(np.float64)
    zero = args[2].astype(np.float64) if len(args) > 2 else np.zeros_like(scale)
    if zero.shape != scale.shape or scale.ndim > 1:
        return None
    if scale.size > 1:  # per axis
        axis = int(attrs.get("axis", 1))
        if values.ndim < 1 or not -values.ndim <= axis < values.ndim or values.shape[axis] != scale.size:
            return None
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale


class _Tensors:
    """Stored tensors by value name, and values computed from them by :data:`_WEIGHT_PASSES`
    (in graph order, so what they read is known first), read as float64 on demand."""

    def __init__(self, stored: Stored, nodes: Sequence[GraphNode]) -> None:
        self._stored, self._made = stored, dict[str, tuple[GraphNode, tuple[str, ...]]]()
        for node in nodes:
            args = tuple(name for name in node.inputs if name)
            if node.standard and node.op_type in _WEIGHT_PASSES and args and node.outputs \
                    and all(self.known(a) for a in args):
                self._made[node.outputs[0]] = (node, args)

    def known(self, name: str) -> bool:
        return name in self._made or name in self._stored.names

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The shape of ``name`` (read from shapes alone; ``()`` if it is not stored)."""
        while name in self._made:
            name = self._made[name][1][0]
        return self._stored.shape(name) if name in self._stored.names else ()

    def size(self, name: str) -> int:
        """How many values ``name`` holds (read from shapes alone)."""
        return math.prod(self.shape_of(name)) if self.known(name) else 0

    def get(self, name: str) -> np.ndarray | None:
        if name in self._made:
            node, args = self._made[name]
            values = [self.get(a) for a in args]
            if any(v is None for v in values):
                return None
            if node.op_type == "DequantizeLinear":
                return _dequantized([v for v in values if v is not None], node.attrs)
            return values[0]
        if name not in self._stored.names:
            return None
        array = np.asarray(self._stored.array(name))
        if not np.issubdtype(array.dtype, np.number):
            return None
        return array.astype(np.float64)


class _Graph:
    """A graph's nodes in order, its stored tensors, and what the reading looks up in it: each
    value's consumers (node positions), the node that makes each value, the graph's outputs."""

    def __init__(self, nodes: Sequence[GraphNode], stored: Stored, outputs: Sequence[str]) -> None:
        self.nodes, self.tensors, self.outputs = nodes, _Tensors(stored, nodes), set(outputs)
        self.made_by = {out: at for at, node in enumerate(nodes) for out in node.outputs if out}
        self.consumers: dict[str, list[int]] = {}
        for at, node in enumerate(nodes):
            for name in dict.fromkeys(node.inputs):
                if name:
                    self.consumers.setdefault(name, []).append(at)

    def users(self, value: str) -> list[GraphNode]:
        return [self.nodes[at] for at in self.consumers.get(value, [])]


def _bias(array: np.ndarray | None, units: int, axis: int = 1) -> np.ndarray | None:
    """A stored bias as ``(units,)``: one value, or one per unit along the ``axis``-th axis from
    the end (1 for features, 3 for a 2-d convolution's channels), every other axis of size 1."""
    if array is None:
        return None
    if array.size == 1:
        return np.full(units, float(array.reshape(-1)[0]))
    shape = array.shape
    if array.size != units or len(shape) < axis or shape[-axis] != units:
        return None
    return array.reshape(-1)


#: Nodes that mix their first input's features with a stored weight (their second input).
_WEIGHTED = ("Conv", "ConvInteger", "ConvTranspose", "Gemm", "MatMul", "MatMulInteger")
#: Most per-unit affine nodes (bias, scale, BatchNorm, cast) folded into one layer.
_MOST_FOLDED = 4


def _mixes(node: GraphNode, tensors: _Tensors) -> bool:
    """Whether a node mixes its input's features with a stored weight (a layer, read or not)."""
    return (node.standard and node.op_type in _WEIGHTED and len(node.inputs) > 1 and node.attrs.get("group", 1) == 1
            and not tensors.known(node.inputs[0]) and tensors.known(node.inputs[1]))


def _layer(node: GraphNode, tensors: _Tensors, index: int) -> _Layer | None:
    """The layer a weighted node (:func:`_mixes`) is, or None where the reading stops: a
    transposed convolution, a transposed input, a bias that is not one value per unit. An
    integer node (``ConvInteger``, ``MatMulInteger``: a dynamically quantised file) is read as
    its weight less its zero point; the scale that follows is folded if it is stored."""
    weight = tensors.get(node.inputs[1])
    if weight is None or node.op_type == "ConvTranspose":
        return None
    integer = node.op_type.endswith("Integer")
    if integer and len(node.inputs) > 3 and node.inputs[3]:
        zero = tensors.get(node.inputs[3])
        if zero is None or zero.size not in (1, weight.shape[0 if node.op_type == "ConvInteger" else -1]):
            return None
        weight = weight - (zero.reshape(-1, *[1] * (weight.ndim - 1)) if node.op_type == "ConvInteger" else zero)
    name = f"node {index} ({node.op_type})"
    given = node.inputs[2] if not integer and len(node.inputs) > 2 and node.inputs[2] else None
    if node.op_type in ("Conv", "ConvInteger"):
        if weight.ndim not in (3, 4, 5):
            return None
        units = weight.shape[0]
        bias = np.zeros(units) if given is None else _bias(tensors.get(given), units)
        return None if bias is None else _Layer(name, "conv", int(weight.shape[1]), weight.reshape(units, -1), bias,
                                                node.outputs[0], weight.ndim - 1)
    if weight.ndim != 2:
        return None
    if node.op_type in ("MatMul", "MatMulInteger"):
        weight, bias = weight.T, np.zeros(weight.shape[1])
    else:
        if node.attrs.get("transA", 0):
            return None
        weight = (weight if node.attrs.get("transB", 0) else weight.T) * float(node.attrs.get("alpha", 1.0))
        bias = np.zeros(weight.shape[0]) if given is None else _bias(tensors.get(given), weight.shape[0])
        if bias is None:
            return None
        bias = bias * float(node.attrs.get("beta", 1.0))
    return _Layer(name, "linear", int(weight.shape[1]), weight, bias, node.outputs[0])


def _fold(layer: _Layer, graph: _Graph) -> None:
    """Fold into ``layer`` the per-unit affine nodes its value goes to alone, one after the
    other: an ``Add`` of a stored bias, a ``Mul`` by a stored positive scale, a
    ``BatchNormalization`` with stored statistics, a ``Cast`` (at most :data:`_MOST_FOLDED`)."""
    units, tensors = layer.weight.shape[0], graph.tensors
    for _ in range(_MOST_FOLDED):
        after = graph.users(layer.value)
        node = after[0] if len(after) == 1 else None
        if node is None or not node.standard or not node.outputs:
            return
        other = [name for name in node.inputs if name != layer.value]
        if node.op_type in ("Add", "Mul"):
            value = (_bias(tensors.get(other[0]), units, layer.axis) if len(other) == 1 and tensors.known(other[0])
                     else None)
            if value is None or (node.op_type == "Mul" and np.any(value <= 0)):
                return
            if node.op_type == "Add":
                layer.bias = layer.bias + value
            else:
                layer.weight, layer.bias = layer.weight * value[:, None], layer.bias * value
        elif node.op_type == "BatchNormalization":
            stats = [tensors.get(name) for name in node.inputs[1:5]]
            if node.inputs[0] != layer.value or len(stats) != 4:
                return
            gamma, beta, mean, var = stats
            if gamma is None or beta is None or mean is None or var is None \
                    or any(s.shape != (units,) for s in (gamma, beta, mean, var)) or np.any(var < 0):
                return
            scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
            layer.weight = layer.weight * scale[:, None]
            layer.bias = (layer.bias - mean) * scale + beta
        elif node.op_type != "Cast":
            return
        layer.value = node.outputs[0]


#: Operators that treat every unit alike (elementwise, a normalisation or a pooling per unit, a
#: reduction, a softmax, a concatenation, size-1 axes added or removed): relabelling a layer's
#: units before them relabels what comes out of them the same way.
UNITWISE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Erf", "Gelu", "Mish", "Clip", "Identity", "Dropout", "Cast", "Add", "Sub", "Mul", "Div", "Pow",
    "Sqrt", "Neg", "Abs", "Exp", "Log", "Reciprocal", "Max", "Min", "Sum", "Mean", "BatchNormalization",
    "LayerNormalization", "InstanceNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "LpPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceProd",
    "ReduceSumSquare", "ReduceLogSumExp", "Softmax", "LogSoftmax", "Concat", "Squeeze", "Unsqueeze",
})


def _flattens(node: GraphNode, graph: _Graph) -> bool:
    """Whether a ``Flatten`` or ``Reshape`` keeps the batch and merges the rest into one axis (a
    convolution's channels then lie in blocks, as a Linear after it reads them)."""
    if node.op_type == "Flatten":
        return node.attrs.get("axis", 1) == 1
    if len(node.inputs) < 2:
        return False
    target = graph.tensors.get(node.inputs[1])
    if target is not None:
        return target.size == 2 and (-1 in target.ravel().tolist() or target.ravel()[0] == 0)
    maker = graph.made_by.get(node.inputs[1])  # x.view(x.size(0), -1): the batch read by Shape, then -1
    if maker is None or graph.nodes[maker].op_type != "Concat":
        return False
    parts = [graph.tensors.get(name) for name in graph.nodes[maker].inputs]
    last = parts[-1] if parts else None
    return len(parts) == 2 and last is not None and last.ravel().tolist() == [-1]


def _hidden(value: str, graph: _Graph) -> bool:
    """Whether a layer's units (its ``value``) are *hidden*: every path from them reaches another
    weighted layer through operators that treat every unit alike (:data:`UNITWISE`, a flatten,
    a per-channel convolution), never a graph output and never an operator that treats units
    by their place (a split, a slice, a transpose, a reshape into heads or pixels, a grouped
    convolution, an unknown operator): only then is relabelling them a symmetry of the network,
    which the order test's null needs."""
    from ..weights.layers import EXPOSED, MIXED, mixed_on_every_path

    tensors = graph.tensors

    def uses(current: str) -> Iterable[Any]:
        if current in graph.outputs:
            yield EXPOSED
        for node in graph.users(current):
            if _mixes(node, tensors) and node.inputs[0] == current:
                yield MIXED
            elif node.op_type == "Shape" and node.standard:
                yield ()  # reads the size, not the values
            elif node.standard and (node.op_type in UNITWISE or _per_channel(node, current, tensors)
                                    or (node.op_type in ("Flatten", "Reshape") and node.inputs[0] == current
                                        and _flattens(node, graph))):
                yield [out for out in node.outputs if out]
            else:
                yield EXPOSED

    return mixed_on_every_path(value, uses)


def _per_channel(node: GraphNode, current: str, tensors: _Tensors) -> bool:
    """Whether a node is a convolution of each channel alone (depthwise) of ``current``."""
    groups = node.attrs.get("group", 1)
    return (node.op_type == "Conv" and node.inputs[0] == current and len(node.inputs) > 1
            and tensors.known(node.inputs[1]) and isinstance(groups, int) and groups > 1
            and tensors.shape_of(node.inputs[1])[:2] == (groups, 1))


def graph_unit_layers(nodes: Sequence[GraphNode], stored: Stored, outputs: Sequence[str], *, source: str,
                      max_layers: int, max_values: int) -> list[Any]:
    """The first ``max_layers`` weighted layers of a graph (its ``nodes`` in order, its
    ``stored`` tensors, its ``outputs``' names) as :class:`~tafa.weights.layers.UnitLayer`
    rows, at most ``max_values`` values in all (see the module doc)."""
    from ..weights.layers import MAX_LAYER_VALUES, MAX_UNITS, UnitLayer, refuse_non_finite

    graph = _Graph(nodes, stored, outputs)
    tensors = graph.tensors
    layers: list[UnitLayer] = []
    total, read = 0, set()
    for at, node in enumerate(nodes):
        if not _mixes(node, tensors) or node.inputs[1] in read:
            continue  # a weight used again (tied, or a recurrence unrolled) is one layer
        read.add(node.inputs[1])
        size = tensors.size(node.inputs[1])
        if len(layers) >= max_layers or size > MAX_LAYER_VALUES or total + size > max_values:
            break
        found = _layer(node, tensors, at)
        if found is None or found.weight.shape[0] > MAX_UNITS:
            break
        total += size
        _fold(found, graph)
        vectors = np.concatenate([found.weight, found.bias[:, None]], axis=1)
        refuse_non_finite(found.name, vectors, source)
        layers.append(UnitLayer(found.name, found.kind, found.inputs, vectors,
                                _hidden(found.value, graph)))
    return layers


class _ProtoTensors:
    """:class:`Stored` over an ``onnx.ModelProto``'s initializers and ``Constant`` nodes."""

    def __init__(self, graph: Any) -> None:
        self._tensors = {init.name: init for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in STANDARD_DOMAINS and len(node.output) == 1:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self._tensors[node.output[0]] = value
        self.names = frozenset(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self._tensors[name].dims)

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return np.asarray(numpy_helper.to_array(self._tensors[name]))


def proto_unit_layers(model: Any, *, source: str, max_layers: int, max_values: int) -> list[Any] | None:
    """:func:`graph_unit_layers` of a loaded ``onnx.ModelProto`` (what a sandbox worker of ONNX
    files runs; a local function named like a standard operator is refused first); ``None``
    where a tensor or attribute is malformed (its weights cannot be read: no weight test)."""
    check_functions(model)
    graph = model.graph
    nodes = [GraphNode(node.op_type, tuple(node.input), tuple(node.output), attributes(node),
                       node.domain in STANDARD_DOMAINS) for node in graph.node if node.op_type != "Constant"]
    try:
        return graph_unit_layers(nodes, _ProtoTensors(graph), [output.name for output in graph.output],
                                 source=source, max_layers=max_layers, max_values=max_values)
    except (KeyError, ValueError, TypeError, IndexError):  # a malformed tensor or attribute: unreadable
        return None
