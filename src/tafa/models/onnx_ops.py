"""The ONNX operators tafa's graph interpreter runs (:class:`~tafa.models.onnx_import.OnnxGraphModule`),
as torch functions: :data:`OPERATORS`, the operator set of piecewise-linear networks, their
monotone heads and the shape arithmetic exporters write around them.

Every ReLU-like operation is a torch function the white-box analysis (:mod:`tafa.relu`)
intercepts and freezes (``Max``/``Min`` of tensors are written with the ReLU they are); the rest
is linear in the input. A size an operator reads from the graph (a constant's shape, an
expansion, an upsampling, a padding) is bounded before anything is allocated (:func:`_bounded`):
the graph comes from a file.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .onnx_chain import INTERPRETED, UnsupportedOperator, auto_pad, pads as _pads, symmetric, text


#: The key under which :class:`OnnxGraphModule` hands :func:`_reshape` the graph input's fixed batch
#: size (``None``: not fixed) and the batch it is running.
BATCH = " batch"

#: The key under which :class:`OnnxGraphModule` hands :func:`_split` how many outputs its node has.
OUTPUTS = " outputs"

#: The most values a node may make from sizes it reads from the graph (:func:`_bounded`): a
#: ``ConstantOfShape``, an ``Expand``, or per input an upsampling or a padding.
MAX_CONSTANT_VALUES = 1 << 24

#: The largest stride or dilation of a ``ConvTranspose`` the interpreter runs (FCN-32s upsamples by 32).
MAX_UPSAMPLING = 64

#: How many times its input's values a node's output may hold per input beyond
#: :data:`MAX_CONSTANT_VALUES` (:func:`_bounded`): a large image network's padded layers pass.
MAX_GROWTH = 64


def _bounded(shape: list[int], what: str, given: torch.Tensor | None = None) -> None:
    """Refuse (:class:`UnsupportedOperator`) a node whose output, of ``shape`` (sizes read from the
    graph), would hold more than :data:`MAX_CONSTANT_VALUES` values, before anything is allocated.
    With ``given`` (the node's input, batch first), ``shape`` is per input and the limit is also
    :data:`MAX_GROWTH` times that input's values if that is more: an upsampling or a padding by a
    factor no network needs."""
    limit = MAX_CONSTANT_VALUES if given is None else max(
        MAX_CONSTANT_VALUES, MAX_GROWTH * (given.numel() // max(given.shape[0], 1) if given.dim() else 1))
    if any(v < 0 for v in shape) or int(np.prod(shape, dtype=np.float64)) > limit:
        raise UnsupportedOperator(f"{what} to {list(shape)[:8]} is refused (negative, or over {limit:,} values)")


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


def _window_pads(x: torch.Tensor, attrs: dict, kernel: list[int], dims: int,
                 fill: float) -> tuple[torch.Tensor, list[int]]:
    """``x`` padded as a Conv or pooling node asks (explicit ``pads``, or ``auto_pad``'s ``SAME_UPPER``,
    ``SAME_LOWER``, ``VALID``): the padding to hand torch's layer when it is the same at both ends
    of every axis, else ``x`` padded here with ``fill`` (0 for a convolution, -inf for max pooling;
    TensorFlow converters write such pads) and no padding left for the layer."""
    mode = auto_pad(attrs)
    strides, dilations = attrs.get("strides", [1] * dims), attrs.get("dilations", [1] * dims)
    if mode == "NOTSET":
        given = list(attrs.get("pads") or [0] * 2 * dims)
        begin, end = given[:dims], given[dims:]
    elif mode == "VALID":
        begin, end = [0] * dims, [0] * dims
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, stride, dilation in zip(x.shape[2:], kernel, strides, dilations):
            total = max((-(-size // stride) - 1) * stride + (k - 1) * dilation + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else large)
            end.append(large if mode == "SAME_UPPER" else small)
    else:
        raise UnsupportedOperator(f"auto_pad {mode!r} is not supported by the ONNX import")
    if len(begin) != dims or len(end) != dims or any(v < 0 for v in begin + end):
        raise UnsupportedOperator("pads that do not fit the node's axes are not supported by the ONNX import")
    _bounded([x.shape[1], *(size + b + e for size, b, e in zip(x.shape[2:], begin, end))], "Padding", x)
    if begin == end:
        return x, begin
    around = [v for axis in reversed(range(dims)) for v in (begin[axis], end[axis])]  # last axis first
    return F.pad(x, around, value=fill), [0] * dims


def _conv(inputs: list, attrs: dict) -> torch.Tensor:
    x, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    dims = weight.dim() - 2
    conv = {1: F.conv1d, 2: F.conv2d}.get(dims)
    if conv is None:
        raise UnsupportedOperator(f"{dims}-dimensional Conv is not supported by the ONNX import")
    x, padding = _window_pads(x, attrs, list(weight.shape[2:]), dims, 0.0)
    return conv(x, weight, bias, stride=attrs.get("strides", [1] * dims), padding=padding,
                dilation=attrs.get("dilations", [1] * dims), groups=attrs.get("group", 1))


def _pooling(attrs: dict, name: str, pools: tuple[Callable[..., Any], Callable[..., Any]]
             ) -> tuple[list[int], int, Callable[..., Any]]:
    """A pooling node's kernel, its number of spatial axes and torch's pooling for them (1d or 2d)."""
    kernel = attrs["kernel_shape"]
    if len(kernel) not in (1, 2):
        raise UnsupportedOperator(f"only 1d/2d {name} is supported by the ONNX import")
    return kernel, len(kernel), pools[len(kernel) - 1]


def _max_pool(inputs: list, attrs: dict) -> torch.Tensor:
    kernel, dims, pool = _pooling(attrs, "MaxPool", (F.max_pool1d, F.max_pool2d))
    x, padding = _window_pads(inputs[0], attrs, kernel, dims, -math.inf)
    return pool(x, kernel, attrs.get("strides", kernel), padding, attrs.get("dilations", [1] * dims),
                bool(attrs.get("ceil_mode", 0)))


def _avg_pool(inputs: list, attrs: dict) -> torch.Tensor:
    kernel, dims, pool = _pooling(attrs, "AveragePool", (F.avg_pool1d, F.avg_pool2d))
    if not symmetric(attrs, dims):  # what the padding counts would differ from the file's
        raise UnsupportedOperator("AveragePool with auto_pad or asymmetric pads is not supported by the ONNX import")
    return pool(inputs[0], kernel, attrs.get("strides", kernel), _pads(attrs.get("pads"), dims),
                bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0)))


def _conv_transpose(inputs: list, attrs: dict) -> torch.Tensor:
    """ONNX ``ConvTranspose`` (a generator's or a decoder's upsampling), 1d or 2d, its pads given
    explicitly and the same at both ends (what torch exports)."""
    x, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    dims = weight.dim() - 2
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d}.get(dims)
    if conv is None or auto_pad(attrs) != "NOTSET" or "output_shape" in attrs or not symmetric(attrs, dims):
        raise UnsupportedOperator("ConvTranspose beyond 1d/2d with symmetric explicit pads is not supported by the "
                                  "ONNX import")
    strides, padding = attrs.get("strides", [1] * dims), _pads(attrs.get("pads"), dims)
    extra, dilations = attrs.get("output_padding", [0] * dims), attrs.get("dilations", [1] * dims)
    if any(not 1 <= v <= MAX_UPSAMPLING for v in [*strides, *dilations]):  # torch 2.13 crashes the process on
        # conv_transpose1d(stride=20000): a segmentation fault, not an exception
        raise UnsupportedOperator(f"ConvTranspose strides {strides} or dilations {dilations} outside 1 to "
                                  f"{MAX_UPSAMPLING} are refused")
    _bounded([weight.shape[1] * attrs.get("group", 1)]
             + [(size - 1) * stride - 2 * pad + dilation * (k - 1) + more + 1 for size, stride, pad, dilation, k, more
                in zip(x.shape[2:], strides, padding, dilations, weight.shape[2:], extra)], "ConvTranspose", x)
    return conv(x, weight, bias, stride=strides, padding=padding, output_padding=extra,
                groups=attrs.get("group", 1), dilation=dilations)


def _pad(inputs: list, attrs: dict) -> torch.Tensor:
    """ONNX ``Pad`` (``constant``, ``reflect``, ``edge``; the pads an input since opset 11, an
    attribute before): linear in its input. The batch axis is never padded."""
    x = inputs[0]
    given = (inputs[1].reshape(-1).tolist() if len(inputs) > 1 and inputs[1] is not None else attrs.get("pads", []))
    pads = [int(v) for v in given]
    value = float(inputs[2].reshape(-1)[0]) if len(inputs) > 2 and inputs[2] is not None else attrs.get("value", 0.0)
    mode = text(attrs, "mode", "constant")
    if len(inputs) > 3 and inputs[3] is not None or len(pads) != 2 * x.dim() or pads[0] or pads[x.dim()]:
        raise UnsupportedOperator("Pad of the batch axis, or with axes, is not supported by the ONNX import")
    if mode not in ("constant", "reflect", "edge"):
        raise UnsupportedOperator(f"Pad ({mode}, pads {pads[:8]}) is not supported by the ONNX import")
    begin, end = pads[:x.dim()], pads[x.dim():]
    _bounded([size + begin[axis] + end[axis] for axis, size in enumerate(x.shape) if axis], "Pad", x)
    around = [v for axis in reversed(range(1, x.dim())) for v in (begin[axis], end[axis])]  # last axis first
    if mode == "constant":
        return F.pad(x, around, value=float(value))
    while around and around[-2:] == [0, 0]:  # reflect and replicate pad the trailing axes only
        around = around[:-2]
    return F.pad(x, around, mode="reflect" if mode == "reflect" else "replicate") if around else x


def _extreme(largest: bool) -> Callable[[list, dict], torch.Tensor]:
    """ONNX ``Max`` / ``Min`` of its inputs, element by element, written with the ReLU the
    analysis freezes: ``max(a, b) = b + relu(a - b)``, ``min(a, b) = b - relu(b - a)``."""
    def extreme(inputs: list, attrs: dict) -> torch.Tensor:
        out = inputs[0]
        for other in inputs[1:]:
            out = other + F.relu(out - other) if largest else other - F.relu(other - out)
        return out
    return extreme


def _resize(inputs: list, attrs: dict) -> torch.Tensor:
    """ONNX ``Resize`` (opset 11+: ``X, roi, scales, sizes``) and ``Upsample`` (``X, scales``) of the
    spatial axes, nearest or (bi)linear: linear in the input either way. Modes whose reading differs
    from torch's are caught by :func:`check_reproduces` (the owner then goes black-box)."""
    x = inputs[0]
    scales = inputs[2] if len(inputs) > 2 else (inputs[1] if len(inputs) == 2 else None)
    sizes = inputs[3] if len(inputs) > 3 else None
    spatial = x.dim() - 2
    if spatial not in (1, 2) or x.dim() < 3:
        raise UnsupportedOperator("Resize of other than 1d or 2d images is not supported by the ONNX import")
    size: list[int] | None = None
    factors: list[float] | None = None
    if sizes is not None and sizes.numel():
        size = [int(v) for v in sizes.reshape(-1).tolist()]
        if size[:2] != list(x.shape[:2]) or any(v < 1 for v in size[2:]):
            raise UnsupportedOperator(f"Resize to sizes {size[:8]} is not supported by the ONNX import")
        size = size[2:]
    elif scales is not None and scales.numel():
        factors = [float(v) for v in scales.reshape(-1).tolist()]
        if factors[:2] != [1.0, 1.0] or len(factors) != x.dim() or any(not 0 < f < math.inf for f in factors[2:]):
            raise UnsupportedOperator(f"Resize by scales {factors[:8]} is not supported by the ONNX import")
        factors = factors[2:]
    else:
        raise UnsupportedOperator("Resize without scales or sizes is not supported by the ONNX import")
    _bounded([x.shape[1], *(size or [int(s * f) for s, f in zip(x.shape[2:], factors or [])])], "Resize", x)
    mode = text(attrs, "mode", "nearest")
    if mode == "nearest":
        return F.interpolate(x, size=size, scale_factor=factors, mode="nearest")
    if mode == "linear":
        corners = text(attrs, "coordinate_transformation_mode", "half_pixel") == "align_corners"
        return F.interpolate(x, size=size, scale_factor=factors, mode="linear" if spatial == 1 else "bilinear",
                             align_corners=corners)
    raise UnsupportedOperator(f"Resize mode {mode!r} is not supported by the ONNX import")


def _split(inputs: list, attrs: dict) -> tuple[torch.Tensor, ...]:
    """ONNX ``Split`` (``torch.chunk``, ``torch.split``: a ShuffleNet's channel split): sizes an input
    since opset 13, an attribute before, or ``num_outputs`` equal parts (opset 18)."""
    x, axis = inputs[0], attrs.get("axis", 0)
    given = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    size = x.shape[axis % max(x.dim(), 1)]
    if given is not None and len(given):
        sizes = [int(v) for v in (given.reshape(-1).tolist() if isinstance(given, torch.Tensor) else given)]
    else:  # equal parts (the last smaller), as many as num_outputs (opset 18) or as the node's outputs
        parts = int(attrs.get("num_outputs") or attrs[OUTPUTS])
        sizes = [-(-size // parts)] * (parts - 1)
        sizes.append(size - sum(sizes))
    if sum(sizes) != size or any(v < 0 for v in sizes):
        raise UnsupportedOperator(f"Split sizes {sizes[:8]} do not add up to the axis ({size})")
    return tuple(torch.split(x, sizes, dim=axis))


def _batch_norm(inputs: list, attrs: dict) -> torch.Tensor:
    x, scale, bias, mean, var = inputs[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))


def _flatten(inputs: list, attrs: dict) -> torch.Tensor:
    axis = attrs.get("axis", 1)
    x = inputs[0]
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape(inputs: list, attrs: dict) -> torch.Tensor:
    """ONNX ``Reshape``. A graph exported for a fixed batch (torch's default export: an input of
    batch 1, reshaped to ``[1, -1]``) names its batch in the target: where the target's first
    size is that fixed batch and the tensor is a batch of another size, the tensor's own batch is
    taken (:data:`BATCH`): the analysis runs many inputs at once. :func:`check_reproduces`
    checks that the module answers a batch as it answers each of its inputs."""
    x, shape = inputs[0], [int(s) for s in inputs[1].tolist()]
    shape = [x.shape[i] if s == 0 and not attrs.get("allowzero", 0) else s for i, s in enumerate(shape)]
    fixed, running = attrs.get(BATCH, (None, None))
    if fixed is not None and shape and shape[0] == fixed != running and x.dim() and x.shape[0] == running:
        shape[0] = running
    return x.reshape(shape)


def _shape(inputs: list, attrs: dict) -> torch.Tensor:
    return torch.tensor(list(inputs[0].shape), dtype=torch.int64)[attrs.get("start", 0):attrs.get("end")]


def _gather(inputs: list, attrs: dict) -> torch.Tensor:
    data, indices = inputs[0], inputs[1].long()
    axis = attrs.get("axis", 0) % max(data.dim(), 1)
    size = data.shape[axis]
    listed = indices.reshape(-1).tolist()  # in Python: the analysis freezes torch's min and max
    if listed and (min(listed) < -size or max(listed) >= size):
        raise UnsupportedOperator("Gather with an index out of range")
    picked = data.index_select(axis, indices.reshape(-1) % size)
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1:]))


def _slice(inputs: list, attrs: dict) -> torch.Tensor:
    """ONNX ``Slice`` (starts, ends, axes, steps as inputs since opset 10, attributes before), with
    the operator's clamping; a negative step reverses (torch's exporter reverses a sequence so)."""
    data = inputs[0]

    def given(index: int, name: str) -> list[int] | None:
        if len(inputs) > index and inputs[index] is not None:
            return [int(v) for v in inputs[index].reshape(-1).tolist()]
        return None if name not in attrs else [int(v) for v in attrs[name]]

    starts, ends = given(1, "starts"), given(2, "ends")
    if starts is None or ends is None or len(starts) != len(ends):
        raise UnsupportedOperator("Slice without matching starts and ends")
    axes = given(3, "axes") or list(range(len(starts)))
    steps = given(4, "steps") or [1] * len(starts)
    if len(axes) != len(starts) or len(steps) != len(starts) or 0 in steps:
        raise UnsupportedOperator("Slice with a zero step, or axes that do not match, is not supported")
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= max(data.dim(), 1)
        size = data.shape[axis]
        start, end = start + size if start < 0 else start, end + size if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
        else:
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
        data = data.index_select(axis, torch.arange(start, end, step, dtype=torch.int64))
    return data


def _reduce_linear(op: Callable[..., torch.Tensor]) -> Callable[[list, dict], torch.Tensor]:
    """ONNX ``ReduceMean`` / ``ReduceSum`` (axes an attribute before opset 18, an input since; the
    dynamo exporter writes a global average pooling as ``ReduceMean``): linear, run as it is."""
    def reduce(inputs: list, attrs: dict) -> torch.Tensor:
        axes = _axes(inputs, attrs)
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return inputs[0]
            axes = list(range(inputs[0].dim()))
        keep = bool(attrs.get("keepdims", 1))
        return op(inputs[0], dim=tuple(sorted({axis % max(inputs[0].dim(), 1) for axis in axes})), keepdim=keep)
    return reduce


def _constant_of_shape(inputs: list, attrs: dict) -> torch.Tensor:
    shape = [int(v) for v in inputs[0].reshape(-1).tolist()]
    _bounded(shape, "ConstantOfShape")
    value = attrs.get("value")
    from onnx import numpy_helper

    fill = np.zeros(1, np.float32) if value is None else numpy_helper.to_array(value).reshape(-1)[:1]
    return torch.full(shape, fill.item(), dtype=torch.from_numpy(np.array(fill)).dtype)


def _expand(inputs: list, attrs: dict) -> torch.Tensor:
    """ONNX ``Expand``: ``x`` broadcast against a shape read from the graph (bounded in size)."""
    x, shape = inputs[0], tuple(int(v) for v in inputs[1].reshape(-1).tolist())
    try:
        target = torch.broadcast_shapes(x.shape, shape)
    except RuntimeError:
        raise UnsupportedOperator(f"Expand to a shape {shape[:8]} that does not broadcast") from None
    _bounded(list(target), "Expand")
    return x.expand(target)


#: ONNX ``Cast`` targets the interpreter keeps (ONNX ``TensorProto`` type codes): integers and
#: booleans, for shape arithmetic; a cast between floating types leaves the tensor in the dtype
#: the module runs in (the analysis runs in one precision).
_INTEGER_CASTS = {6: torch.int32, 7: torch.int64, 9: torch.bool}
_FLOAT_CASTS = {1, 10, 11, 16}


def _cast(inputs: list, attrs: dict) -> torch.Tensor:
    x, to = inputs[0], int(attrs.get("to", 0))
    if to in _FLOAT_CASTS:
        return x if x.is_floating_point() else x.to(torch.float32)
    if to in _INTEGER_CASTS and not x.is_floating_point():
        return x.to(_INTEGER_CASTS[to])
    raise UnsupportedOperator(f"Cast to ONNX type {to} of a {x.dtype} tensor is not supported by the ONNX import")


#: The activations of an ONNX ``RNN`` the interpreter runs: the ReLU, which the analysis freezes, and
#: tanh and the sigmoid, which it refuses inside a network (the owner then goes black-box).
_RNN_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"Relu": F.relu, "Tanh": torch.tanh,
                                                                        "Sigmoid": torch.sigmoid}


def _rnn(inputs: list, attrs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX ``RNN`` (what torch exports ``nn.RNN`` as; every layer one node), stepped as written:
    ``h_t = f(x_t W^T + h_{t-1} R^T + Wb + Rb)`` per direction, ``(Y, Y_h)``. With the ReLU the
    analysis freezes every step's units, as it does for ``nn.RNN`` itself."""
    x, w, r = inputs[0], inputs[1], inputs[2]
    bias = inputs[3] if len(inputs) > 3 else None
    if len(inputs) > 4 and inputs[4] is not None:
        raise UnsupportedOperator("RNN with sequence_lens is not supported by the ONNX import")
    initial = inputs[5] if len(inputs) > 5 else None
    direction = text(attrs, "direction", "forward")
    directions = 2 if direction == "bidirectional" else 1
    names = [a.decode() if isinstance(a, bytes) else str(a) for a in attrs.get("activations", [b"Tanh"] * directions)]
    if ("activation_alpha" in attrs or "activation_beta" in attrs or len(names) != directions
            or any(name not in _RNN_ACTIVATIONS for name in names)
            or direction not in ("forward", "reverse", "bidirectional") or w.dim() != 3 or w.shape[0] != directions):
        raise UnsupportedOperator(f"RNN with activations {names[:2]} ({direction}) is not supported by the ONNX import")
    layout = int(attrs.get("layout", 0))
    if layout:  # batch first: [batch, seq, input] and [batch, dirs, hidden]
        x = x.transpose(0, 1)
        initial = None if initial is None else initial.transpose(0, 1)
    hidden, clip = w.shape[1], attrs.get("clip")
    outputs, finals = [], []
    for d in range(directions):
        h = (initial[d] if initial is not None else torch.zeros(x.shape[1], hidden, dtype=x.dtype))
        steps = range(x.shape[0])
        ys: list[torch.Tensor] = []
        for t in (reversed(steps) if direction == "reverse" or d == 1 else steps):
            z = x[t] @ w[d].transpose(0, 1) + h @ r[d].transpose(0, 1)
            if bias is not None:
                z = z + bias[d, :hidden] + bias[d, hidden:]
            if clip is not None:
                z = torch.clamp(z, -float(clip), float(clip))
            h = _RNN_ACTIVATIONS[names[d]](z)
            ys.append(h)
        if direction == "reverse" or d == 1:
            ys.reverse()
        outputs.append(torch.stack(ys))
        finals.append(h)
    y, y_h = torch.stack(outputs, dim=1), torch.stack(finals)  # [seq, dirs, batch, hidden], [dirs, batch, hidden]
    return (y.permute(2, 0, 1, 3), y_h.transpose(0, 1)) if layout else (y, y_h)


def _axes(inputs: list, attrs: dict) -> list[int] | None:
    """The ``axes`` of a Squeeze, an Unsqueeze or a reduction: an input since opset 13 (18 for the
    reductions), an attribute before."""
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(v) for v in inputs[1].reshape(-1).tolist()]
    return None if "axes" not in attrs else [int(v) for v in attrs["axes"]]


def _squeeze(inputs: list, attrs: dict) -> torch.Tensor:
    x, axes = inputs[0], _axes(inputs, attrs)
    if axes is None:
        return x.squeeze()
    dims = sorted({axis % max(x.dim(), 1) for axis in axes}, reverse=True)
    if any(x.shape[dim] != 1 for dim in dims):
        raise UnsupportedOperator("Squeeze of an axis whose size is not 1")
    for dim in dims:
        x = x.squeeze(dim)
    return x


def _unsqueeze(inputs: list, attrs: dict) -> torch.Tensor:
    x, axes = inputs[0], _axes(inputs, attrs)
    if not axes:
        raise UnsupportedOperator("Unsqueeze without axes")
    rank = x.dim() + len(axes)
    for dim in sorted({axis % rank for axis in axes}):
        x = x.unsqueeze(dim)
    return x


def _clip(inputs: list, attrs: dict) -> torch.Tensor:
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    return torch.clamp(inputs[0], lo, hi)


def _reduce_extreme(largest: bool) -> Callable[[list, dict], torch.Tensor]:
    """ONNX ``ReduceMax`` / ``ReduceMin`` along the given axes (an attribute before opset 18, an
    input since): the analysis freezes it to its winners. Over every axis it is refused."""
    def reduce(inputs: list, attrs: dict) -> torch.Tensor:
        axes = _axes(inputs, attrs)
        if axes is not None and len(axes) > inputs[0].dim():
            raise UnsupportedOperator("ReduceMax/ReduceMin with more axes than its input has")
        if not axes:
            raise UnsupportedOperator("ReduceMax/ReduceMin over every axis is not supported by the ONNX import")
        keep = bool(attrs.get("keepdims", 1))
        return (torch.amax if largest else torch.amin)(inputs[0], dim=tuple(axes), keepdim=keep)
    return reduce


#: Each operator the interpreter runs: its inputs (``None`` for an empty name) and attributes to
#: its output, or a tuple of its outputs.
OPERATORS: dict[str, Callable[[list, dict], Any]] = {
    "Gemm": _gemm,
    "MatMul": lambda i, a: i[0] @ i[1],
    "Add": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: (torch.div(i[0], i[1], rounding_mode="trunc")  # integers (shape arithmetic) as ONNX does
                         if not i[0].is_floating_point() and not i[1].is_floating_point() else i[0] / i[1]),
    "Neg": lambda i, a: -i[0],
    "Relu": lambda i, a: F.relu(i[0]),
    # relu(x) + slope min(x, 0), for any slope ONNX broadcasts: two ReLUs the analysis freezes
    "PRelu": lambda i, a: F.relu(i[0]) - i[1] * F.relu(-i[0]),
    "HardSigmoid": lambda i, a: torch.clamp(a.get("alpha", 0.2) * i[0] + a.get("beta", 0.5), 0.0, 1.0),
    "LeakyRelu": lambda i, a: F.leaky_relu(i[0], a.get("alpha", 0.01)),
    "Clip": _clip,
    "Conv": _conv,
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda i, a: i[0].amax(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "ReduceMax": _reduce_extreme(True),
    "ReduceMin": _reduce_extreme(False),
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
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda i, a: torch.cat(i, dim=a["axis"]),
    "Shape": _shape,
    "Gather": _gather,
    "Slice": _slice,
    "ConstantOfShape": _constant_of_shape,
    "Cast": _cast,
    "RNN": _rnn,
    "Expand": _expand,
    "ReduceMean": _reduce_linear(torch.mean),
    "ReduceSum": _reduce_linear(torch.sum),
    "ConvTranspose": _conv_transpose,
    "Pad": _pad,
    "Max": _extreme(True),
    "Min": _extreme(False),
    "Sum": lambda i, a: sum(i[1:], i[0]),
    "Mean": lambda i, a: sum(i[1:], i[0]) / len(i),
    "Resize": _resize,
    "Upsample": _resize,
    "Split": _split,
}


if set(OPERATORS) != INTERPRETED:  # the torch-free reading (onnx_chain) must know what is interpreted here
    raise ImportError("tafa.models.onnx_ops: OPERATORS and onnx_chain.INTERPRETED differ")
