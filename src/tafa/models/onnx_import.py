"""Import an ONNX graph into a torch module, for white-box analysis of an ONNX owner.

Only the operator set of piecewise-linear networks (and their monotone heads) is
supported (:mod:`tafa.models.onnx_ops`); anything else raises :class:`UnsupportedOperator`, and
the caller falls back to black-box probes with a notice. The imported module runs the graph node
by node with torch functions, so the white-box analysis (:mod:`tafa.relu`) sees every ReLU and
max-pool.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import one_line
from .onnx_chain import (STANDARD_DOMAINS, UnsupportedOperator, attributes as _attributes,  # noqa: F401
                         chain_kind, chain_steps, check_functions, pads as _pads)
from .onnx_ops import BATCH, OPERATORS, OUTPUTS


class OnnxGraphModule(torch.nn.Module):
    """A torch module that evaluates an ONNX graph's nodes with torch functions."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        unknown = sorted({node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}::{node.op_type}"
                          for node in graph.node if node.domain not in STANDARD_DOMAINS
                          or (node.op_type not in OPERATORS and node.op_type != "Constant")})
        if unknown:
            raise UnsupportedOperator(f"ONNX operators {', '.join(unknown)} are outside the piecewise-linear set")
        self._names: dict[str, str] = {}
        for index, initializer in enumerate(graph.initializer):
            array = numpy_helper.to_array(initializer)
            key = f"t{index}"
            self.register_buffer(key, torch.from_numpy(np.array(array)))
            self._names[initializer.name] = key
        constants = [node for node in graph.node if node.op_type == "Constant"]
        for index, node in enumerate(constants):
            if node.op_type == "Constant":
                value = numpy_helper.to_array(_attributes(node)["value"])
                key = f"c{index}"
                self.register_buffer(key, torch.from_numpy(np.array(value)))
                self._names[node.output[0]] = key
        initialized = set(self._names)
        given = next(i for i in graph.input if i.name not in initialized)
        self._input = given.name
        dims = given.type.tensor_type.shape.dim
        #: the input's batch size where the graph fixes it (torch's default export: 1), else None
        self._fixed_batch = int(dims[0].dim_value) if len(dims) and dims[0].HasField("dim_value") else None
        self._output = graph.output[0].name
        self._outputs = [output.name for output in graph.output]
        self._nodes = [(node.op_type, list(node.input), list(node.output), _attributes(node))
                       for node in graph.node if node.op_type != "Constant"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, Any] = {self._input: x}
        for name, key in self._names.items():
            buffer = getattr(self, key)
            values[name] = buffer.to(x.dtype) if buffer.is_floating_point() else buffer
        batch = (self._fixed_batch, x.shape[0] if x.dim() else None)
        for op_type, inputs, outputs, attrs in self._nodes:
            args = [values[name] if name else None for name in inputs]
            extra = {BATCH: batch} if op_type == "Reshape" else {OUTPUTS: len(outputs)} if op_type == "Split" else {}
            out = OPERATORS[op_type](args, {**attrs, **extra} if extra else attrs)
            for name, value in zip(outputs, out if isinstance(out, tuple) else (out,)):
                # one precision throughout: a graph's casts and constants between float types follow x
                values[name] = value.to(x.dtype) if value.is_floating_point() and value.dtype != x.dtype else value
        return values[self._output]

    # the weight evidence's reading of this graph (tafa.weights.layers.unit_layers asks for it)
    def graph_unit_layers(self, *, source: str, max_layers: int, max_values: int) -> list[Any]:
        """The graph's weighted layers as units (:func:`~tafa.models.onnx_units.graph_unit_layers`),
        read from the nodes and tensors this module holds: what a sandbox worker reads from the file."""
        from .onnx_units import GraphNode, graph_unit_layers

        nodes = [GraphNode(op_type, tuple(inputs), tuple(outputs), attrs)
                 for op_type, inputs, outputs, attrs in self._nodes]
        return graph_unit_layers(nodes, _Buffers(self), self._outputs, source=source, max_layers=max_layers,
                                 max_values=max_values)


class _Buffers:
    """The stored tensors of an :class:`OnnxGraphModule` by their graph names."""

    def __init__(self, module: OnnxGraphModule) -> None:
        self._module, self._keys = module, module._names
        self.names = frozenset(self._keys)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(getattr(self._module, self._keys[name]).shape)

    def array(self, name: str) -> np.ndarray:
        return getattr(self._module, self._keys[name]).detach().cpu().numpy()


def _chain_module(op_type: str, attrs: dict, weights: list[np.ndarray]) -> torch.nn.Module | None:
    """The standard torch module for one node of a chain, or None if it has no plain equivalent
    (:func:`~tafa.models.onnx_chain.chain_kind` decides)."""
    nn = torch.nn
    kind = chain_kind(op_type, attrs, weights)
    if kind == "linear":
        weight = weights[0]
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=len(weights) == 2)
        layer.weight.data = torch.from_numpy(np.array(weight, dtype=np.float32))
        if len(weights) == 2:
            layer.bias.data = torch.from_numpy(np.array(weights[1], dtype=np.float32))
        return layer
    if kind == "conv":
        weight = weights[0]
        groups = attrs.get("group", 1)
        top, left = _pads(attrs.get("pads"), 2)
        conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                         stride=tuple(attrs.get("strides", [1, 1])), padding=(top, left),
                         dilation=tuple(attrs.get("dilations", [1, 1])), groups=groups, bias=len(weights) == 2)
        conv.weight.data = torch.from_numpy(np.array(weight, dtype=np.float32))
        if conv.bias is not None:
            conv.bias.data = torch.from_numpy(np.array(weights[1], dtype=np.float32))
        return conv
    if kind is None:
        return None
    if op_type == "Relu":
        return nn.ReLU()
    if op_type == "LeakyRelu":
        return nn.LeakyReLU(attrs.get("alpha", 0.01))
    if op_type == "MaxPool":
        kernel = tuple(attrs["kernel_shape"])
        return nn.MaxPool2d(kernel, tuple(attrs.get("strides", kernel)), tuple(_pads(attrs.get("pads"), 2)),
                            tuple(attrs.get("dilations", [1, 1])))
    if op_type == "Flatten":
        return nn.Flatten()
    if op_type == "Sigmoid":
        return nn.Sigmoid()
    if op_type == "Tanh":
        return nn.Tanh()
    return nn.Identity()  # Identity, Dropout


def sequential_from_onnx(model: Any) -> torch.nn.Sequential | None:
    """A plain ``nn.Sequential`` (Linear, Conv2d, ReLU, MaxPool2d, Flatten, ...) when the graph is
    a single chain of such operations (:func:`~tafa.models.onnx_chain.chain_steps`), else
    ``None``. Standard modules let the attack library post-process an imported owner (pruning,
    fine-tuning, permutation), as the data-free references need."""
    steps = chain_steps(model)
    if steps is None:
        return None
    layers: list[torch.nn.Module] = []
    for step in steps:
        if step.kind == "reshape":
            module: torch.nn.Module | None = (torch.nn.Flatten() if len(step.shape) == 1
                                              else torch.nn.Unflatten(1, step.shape))
        else:
            module = _chain_module(step.op_type, step.attrs, step.weights)
        if module is None:
            return None
        layers.append(module)
    return torch.nn.Sequential(*layers).eval()


#: How closely an imported module must answer as the file does (relative to the answers' size).
REPRODUCE_TOLERANCE = 1e-3


def check_reproduces(module: torch.nn.Module, forward: Callable[[np.ndarray], np.ndarray],
                     input_shape: tuple[int, ...]) -> None:
    """Raise :class:`UnsupportedOperator` unless ``module`` (a graph imported from a model file, run
    by tafa's own interpreter) answers as the file does (``forward``: the file run by its own
    runtime, not counted as queries) at two inputs, zeros and a uniform draw in [0, 1), each alone,
    and answers the two as one batch as the file answers each (the analysis runs batches; a file
    exported for one input at a time bakes its batch into reshapes): a graph whose nodes the
    interpreter cannot run (shapes that do not fit, axes out of range) or reads otherwise than the
    runtime does is analysed black-box, never white-box on another network."""
    rng = np.random.default_rng(0)
    inputs = (np.zeros((1, *input_shape), np.float32), rng.uniform(0, 1, (1, *input_shape)).astype(np.float32))

    def run(x: np.ndarray) -> np.ndarray:
        try:
            with torch.no_grad():
                return np.asarray(module(torch.as_tensor(x)).double().numpy())
        except Exception as error:  # noqa: BLE001 - any failure of a graph the interpreter runs
            raise UnsupportedOperator(f"the imported graph does not run ({type(error).__name__}: "
                                      f"{one_line(error)})") from None

    def close(mine: np.ndarray, theirs: np.ndarray) -> bool:
        scale = 1.0 + float(np.max(np.abs(theirs))) if theirs.size else 1.0
        if mine.size != theirs.size:
            return False
        return bool(np.allclose(mine.reshape(theirs.shape), theirs, rtol=REPRODUCE_TOLERANCE,
                                atol=REPRODUCE_TOLERANCE * scale))

    answers = []
    for x in inputs:
        theirs = np.asarray(forward(x), dtype=np.float64)
        if not close(run(x), theirs):
            raise UnsupportedOperator("the imported graph does not answer as the file does")
        answers.append(theirs.reshape(1, -1))
    # the analysis asks many inputs at once, which a file exported for one input at a time may not
    # allow: the module must answer the two as one batch as the file answers each
    if not close(run(np.concatenate(inputs)), np.concatenate(answers)):
        raise UnsupportedOperator("the imported graph does not answer a batch as it answers each of its inputs")


def import_onnx(model: Any) -> torch.nn.Module:
    """A torch module for a loaded ``onnx.ModelProto``: a plain ``nn.Sequential`` when the graph is
    a chain of standard layers (:func:`sequential_from_onnx`), else an :class:`OnnxGraphModule`
    (raises :class:`UnsupportedOperator` outside the supported operator set, and
    :class:`~tafa.errors.UnsafeModelFile` for a local function named like an operator it
    interprets: :func:`check_functions`)."""
    check_functions(model)
    try:
        chain = sequential_from_onnx(model)
    except (KeyError, ValueError, TypeError, IndexError):
        chain = None
    return chain if chain is not None else OnnxGraphModule(model).eval()
