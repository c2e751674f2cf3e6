"""Import an ONNX graph into a torch module, for white-box analysis of an ONNX owner.

Only the operator set of piecewise-linear networks (and their monotone heads) is
supported; anything else raises :class:`UnsupportedOperator`, and the caller falls back to
black-box probes with a notice. The imported module runs the graph node by node with
torch functions, so the white-box analysis (:mod:`tafa.relu`) sees every ReLU and max-pool.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelLoadError


class UnsupportedOperator(ModelLoadError):
    """The ONNX graph uses an operator outside the supported piecewise-linear set."""


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _pads(pads: list[int] | None, dims: int) -> list[int]:
    if not pads:
        return [0] * dims
    begin, end = pads[:dims], pads[dims:]
    if list(begin) != list(end):
        raise UnsupportedOperator("asymmetric padding is not supported by the ONNX import")
    return list(begin)


def _gemm(inputs: list, attrs: dict) -> torch.Tensor:
    a, b = inputs[0], inputs[1]
    if attrs.get("transA", 0):
        a = a.transpose(-1, -2)
    if attrs.get("transB", 0):
        b = b.transpose(-1, -2)
    out = attrs.get("alpha", 1.0) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        out = out + attrs.get("beta", 1.0) * inputs[2]
    return out


def _conv(inputs: list, attrs: dict) -> torch.Tensor:
    x, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    dims = weight.dim() - 2
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOperator("Conv auto_pad is not supported by the ONNX import")
    conv = {1: F.conv1d, 2: F.conv2d}.get(dims)
    if conv is None:
        raise UnsupportedOperator(f"{dims}-dimensional Conv is not supported by the ONNX import")
    return conv(x, weight, bias, stride=attrs.get("strides", [1] * dims), padding=_pads(attrs.get("pads"), dims),
                dilation=attrs.get("dilations", [1] * dims), groups=attrs.get("group", 1))


def _max_pool(inputs: list, attrs: dict) -> torch.Tensor:
    x = inputs[0]
    kernel = attrs["kernel_shape"]
    dims = len(kernel)
    pool = {1: F.max_pool1d, 2: F.max_pool2d}.get(dims)
    if pool is None or attrs.get("ceil_mode", 0):
        raise UnsupportedOperator("only 1d/2d MaxPool without ceil_mode is supported by the ONNX import")
    return pool(x, kernel, attrs.get("strides", kernel), _pads(attrs.get("pads"), dims),
                attrs.get("dilations", [1] * dims))


def _avg_pool(inputs: list, attrs: dict) -> torch.Tensor:
    kernel = attrs["kernel_shape"]
    dims = len(kernel)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d}.get(dims)
    if pool is None:
        raise UnsupportedOperator("only 1d/2d AveragePool is supported by the ONNX import")
    return pool(inputs[0], kernel, attrs.get("strides", kernel), _pads(attrs.get("pads"), dims),
                bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0)))


def _batch_norm(inputs: list, attrs: dict) -> torch.Tensor:
    x, scale, bias, mean, var = inputs[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))


def _flatten(inputs: list, attrs: dict) -> torch.Tensor:
    axis = attrs.get("axis", 1)
    x = inputs[0]
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape(inputs: list, attrs: dict) -> torch.Tensor:
    x, shape = inputs[0], [int(s) for s in inputs[1].tolist()]
    shape = [x.shape[i] if s == 0 and not attrs.get("allowzero", 0) else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _clip(inputs: list, attrs: dict) -> torch.Tensor:
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    return torch.clamp(inputs[0], lo, hi)


_OPS: dict[str, Callable[[list, dict], torch.Tensor]] = {
    "Gemm": _gemm,
    "MatMul": lambda i, a: i[0] @ i[1],
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Neg": lambda i, a: -i[0],
    "Relu": lambda i, a: F.relu(i[0]),
    "LeakyRelu": lambda i, a: F.leaky_relu(i[0], a.get("alpha", 0.01)),
    "Clip": _clip,
    "Conv": _conv,
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "BatchNormalization": _batch_norm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": lambda i, a: i[0],
    "Dropout": lambda i, a: i[0],
    "Transpose": lambda i, a: i[0].permute(*a["perm"]) if "perm" in a else i[0].permute(*reversed(range(i[0].dim()))),
    "Sigmoid": lambda i, a: torch.sigmoid(i[0]),
    "Tanh": lambda i, a: torch.tanh(i[0]),
    "Softmax": lambda i, a: F.softmax(i[0], dim=a.get("axis", -1)),
    "LogSoftmax": lambda i, a: F.log_softmax(i[0], dim=a.get("axis", -1)),
    "Squeeze": lambda i, a: i[0].squeeze(),
    "Unsqueeze": lambda i, a: i[0].unsqueeze(int((i[1] if len(i) > 1 else a["axes"])[0])),
    "Concat": lambda i, a: torch.cat(i, dim=a["axis"]),
}


class OnnxGraphModule(torch.nn.Module):
    """A torch module that evaluates an ONNX graph's nodes with torch functions."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        unknown = sorted({node.op_type for node in graph.node
                          if node.op_type not in _OPS and node.op_type != "Constant"})
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
        self._input = next(i.name for i in graph.input if i.name not in initialized)
        self._output = graph.output[0].name
        self._nodes = [(node.op_type, list(node.input), list(node.output), _attributes(node))
                       for node in graph.node if node.op_type != "Constant"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, Any] = {self._input: x}
        for name, key in self._names.items():
            buffer = getattr(self, key)
            values[name] = buffer.to(x.dtype) if buffer.is_floating_point() else buffer
        for op_type, inputs, outputs, attrs in self._nodes:
            args = [values[name] if name else None for name in inputs]
            values[outputs[0]] = _OPS[op_type](args, attrs)
        return values[self._output]


def _chain_module(op_type: str, attrs: dict, weights: list[np.ndarray]) -> torch.nn.Module | None:
    """The standard torch module for one node of a chain, or None if it has no plain equivalent."""
    nn = torch.nn
    if op_type == "Gemm" and attrs.get("transB", 0) == 1 and not attrs.get("transA", 0) \
            and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and len(weights) in (1, 2):
        weight = weights[0]
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=len(weights) == 2)
        layer.weight.data = torch.from_numpy(np.array(weight, dtype=np.float32))
        if len(weights) == 2:
            layer.bias.data = torch.from_numpy(np.array(weights[1], dtype=np.float32))
        return layer
    if op_type == "Conv" and len(weights) in (1, 2) and weights[0].ndim == 4 \
            and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"):
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
    if weights:
        return None
    if op_type == "Relu":
        return nn.ReLU()
    if op_type == "LeakyRelu":
        return nn.LeakyReLU(attrs.get("alpha", 0.01))
    if op_type == "MaxPool" and len(attrs["kernel_shape"]) == 2 and not attrs.get("ceil_mode", 0):
        kernel = tuple(attrs["kernel_shape"])
        return nn.MaxPool2d(kernel, tuple(attrs.get("strides", kernel)), tuple(_pads(attrs.get("pads"), 2)),
                            tuple(attrs.get("dilations", [1, 1])))
    if op_type == "Flatten" and attrs.get("axis", 1) == 1:
        return nn.Flatten()
    if op_type == "Sigmoid":
        return nn.Sigmoid()
    if op_type == "Tanh":
        return nn.Tanh()
    if op_type in ("Identity", "Dropout"):
        return nn.Identity()
    return None


_SHAPE_ARITHMETIC = {"Shape", "Mod", "Slice", "Concat", "Add", "Sub", "Mul", "Div", "Gather", "Unsqueeze",
                     "Squeeze", "Cast", "Reshape"}


def _static_shapes(model: Any) -> dict[str, list[int]]:
    """Shapes that shape inference could fix, by value name (dims it could not fix are 0)."""
    shapes = {}
    for info in [*model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [int(d.dim_value) if d.HasField("dim_value") else 0 for d in dims]
    return shapes


def sequential_from_onnx(model: Any) -> torch.nn.Sequential | None:
    """A plain ``nn.Sequential`` (Linear, Conv2d, ReLU, MaxPool2d, Flatten, ...) when the graph is
    a single chain of such operations, else ``None``. Standard modules let the attack library
    post-process an imported owner (pruning, fine-tuning, permutation), as the data-free
    references need."""
    from onnx import numpy_helper

    import onnx

    graph = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    constants = {node.output[0]: numpy_helper.to_array(_attributes(node)["value"])
                 for node in graph.node if node.op_type == "Constant"}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return None
    static = _static_shapes(onnx.shape_inference.infer_shapes(model))
    current = inputs[0]
    layers: list[torch.nn.Module] = []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if node.op_type == "Shape" or not node.input or node.input[0] != current:
            # a side computation (e.g. the shape arithmetic torch exports for Unflatten) may read
            # the chain's shape, never its values
            if node.op_type in _SHAPE_ARITHMETIC and (current not in node.input or node.op_type == "Shape"):
                continue
            return None
        extra = list(node.input[1:])
        attrs = _attributes(node)
        if node.op_type == "Reshape" and len(extra) == 1:
            known = {**initializers, **constants}
            if extra[0] in known:
                shape = [int(v) for v in np.array(known[extra[0]]).ravel()]
            else:
                shape = [-1, *static.get(node.output[0], [0])[1:]]
            if shape[0] not in (-1, 0) or len(shape) < 2 or any(v <= 0 for v in shape[1:]):
                return None
            module: torch.nn.Module | None = (torch.nn.Flatten() if len(shape) == 2
                                              else torch.nn.Unflatten(1, tuple(shape[1:])))
        else:
            if any(name not in initializers for name in extra if name):
                return None
            module = _chain_module(node.op_type, attrs, [initializers[name] for name in extra if name])
        if module is None:
            return None
        layers.append(module)
        current = node.output[0]
    if current != graph.output[0].name:
        return None
    return torch.nn.Sequential(*layers).eval()


def import_onnx(model: Any) -> torch.nn.Module:
    """A torch module for a loaded ``onnx.ModelProto``: a plain ``nn.Sequential`` when the graph is
    a chain of standard layers (:func:`sequential_from_onnx`), else an :class:`OnnxGraphModule`
    (raises :class:`UnsupportedOperator` outside the supported operator set)."""
    try:
        chain = sequential_from_onnx(model)
    except (KeyError, ValueError, TypeError, IndexError):
        chain = None
    return chain if chain is not None else OnnxGraphModule(model).eval()
