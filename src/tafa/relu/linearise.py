"""The local affine map of a piecewise-linear network, read off white-box.

Inside one linear region (fixed on/off pattern of every ReLU, fixed winner of every
max-pooling window) a network is exactly affine, and so is every hidden quantity whose
sign decides the region: the pre-activation ``z`` of a ReLU, ``z - lo`` and ``hi - z``
of a clamp (ReLU6, hardtanh), ``z_winner - z_other`` in a pooling window. We call those
the region's *switches*.

:func:`linearise` runs the network on ``[x0, x0 + e_1, ..., x0 + e_d]`` with every
nonlinearity frozen to the pattern of the first row (a :class:`TorchFunctionMode`
intercepts ``relu``, ``leaky_relu``, ``prelu``, ``hardtanh``/``relu6``/``hardsigmoid``,
``clamp`` (``clamp_min``, ``clamp_max``) and ``max_pool1d/2d`` wherever the network calls them,
modules or functional; ``max``/``min`` along dimensions, ``amax``/``amin`` and adaptive max
pooling with even windows; a ReLU recurrence,
``nn.RNN(nonlinearity="relu")`` or its cell, is unrolled into its steps). Differences of
rows give the exact Jacobians of the switches and of the pre-head output, so the region is
``{x : sign_j * (phi_j + G_j (x - x0)) >= 0}`` without any finite-difference error.

Monotone heads (sigmoid, tanh, softmax, log-softmax) may follow the last piecewise-linear
operation; any other operation that is neither linear nor listed makes the analysis
refuse with :class:`NotPiecewiseLinear` (the caller falls back to black-box probes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..errors import TafaError


class NotPiecewiseLinear(TafaError):
    """The network uses an operation the white-box analysis cannot freeze."""


class NotWhiteBox(NotPiecewiseLinear):
    """Probes asked to be chosen white-box were not (the strategy fell back to black-box probes,
    for the reason this carries): ``Fingerprint.create(..., white_box_only=True)``."""


_RELU = {F.relu, torch.relu, torch.Tensor.relu, F.relu_, torch.relu_, torch.Tensor.relu_}
_LEAKY = {F.leaky_relu, torch._C._nn.leaky_relu}
_CLAMPS = {F.hardtanh, F.relu6, torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip}
_POOLS = {F.max_pool1d, F.max_pool2d, torch.max_pool1d, torch.max_pool2d}
_PRELU = {F.prelu, torch.prelu}
_HARD_SIGMOID = {F.hardsigmoid, torch._C._nn.hardsigmoid}
#: One-sided clamps by name (function and method), with the name of their bound.
_ONE_SIDED = {"clamp_min": "min", "clamp_max": "max"}
_HEADS = {torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid, torch.tanh, torch.Tensor.tanh, F.tanh,
          F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax, torch.log_softmax,
          torch.Tensor.log_softmax}
# Operations that are nonlinear but neither piecewise-linear nor a head we tolerate.
_FORBIDDEN_NAMES = {"gelu", "silu", "elu", "selu", "celu", "softplus", "mish", "hardswish", "exp",
                    "log", "sqrt", "pow", "__pow__", "rsqrt", "sin", "cos", "abs", "layer_norm",
                    "group_norm", "instance_norm", "topk", "sort"}
# Reductions to the largest (smallest) value along dimensions: piecewise-linear, frozen to the winner
# of row 0 (global max pooling: PointNet's over points, a text or audio CNN's over time).
_REDUCTIONS = {"max": 1.0, "amax": 1.0, "min": -1.0, "amin": -1.0}
_ADAPTIVE_POOLS = {"adaptive_max_pool1d": 1, "adaptive_max_pool2d": 2}


class _FirstSwitches(Exception):
    """Raised after the first switches are recorded when only those are asked for."""


class _HeadReached(Exception):
    """Raised at the first monotone head: the value before it is the affine output."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: object) -> object:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


class _Freeze(TorchFunctionMode):
    """Freeze every piecewise-linear operation to the pattern of batch row 0; record switches.

    ``rows``: the batch's size. An elementwise switch (ReLU, leaky ReLU, clamp) on a tensor whose
    first axis is a singleton and whose batch is another axis (an exported recurrence applies each
    step's ReLU to ``[1, batch, hidden]``) is frozen along that axis: the only one of that size."""

    def __init__(self, first_only: bool = False, rows: int | None = None) -> None:
        super().__init__()
        self.switches: list[torch.Tensor] = []  # each (rows, n_switches)
        self.first_only = first_only
        self.rows = rows

    def _axis(self, z: torch.Tensor) -> int:
        """The batch axis of an elementwise switch's input ``z`` (see class doc)."""
        if self.rows is None or self.rows == 1 or z.dim() < 2 or z.shape[0] != 1:
            return 0
        matches = [axis for axis in range(1, z.dim()) if z.shape[axis] == self.rows]
        return matches[0] if len(matches) == 1 else 0

    def _first(self, z: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Row 0 of ``z`` along its batch axis (kept as an axis of size 1), and that axis."""
        axis = self._axis(z)
        return z.narrow(axis, 0, 1), axis

    def _record(self, value: torch.Tensor, axis: int = 0) -> None:
        value = value.movedim(axis, 0) if axis else value
        self.switches.append(value.reshape(value.shape[0], -1))
        if self.first_only:
            raise _FirstSwitches()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: C901 - one dispatch table
        kwargs = kwargs or {}
        if func in _RELU:
            return self._frozen_relu(args[0])
        if func in _LEAKY:
            return self._frozen_leaky(args[0], float(_arg(args, kwargs, 1, "negative_slope", 0.01)))
        if func in _PRELU:
            z, weight = args[0], _arg(args, kwargs, 1, "weight", None)
            if not isinstance(weight, torch.Tensor):
                raise NotPiecewiseLinear("prelu without a weight tensor is not supported")
            if weight.numel() > 1 and z.dim() >= 2:  # one slope per channel (dimension 1)
                weight = weight.reshape(1, -1, *([1] * (z.dim() - 2)))
            return self._frozen_leaky(z, weight)
        name = getattr(func, "__name__", "")
        if func in _CLAMPS or name in _ONE_SIDED:
            z = args[0]
            if func is F.relu6:
                lo, hi = 0.0, 6.0
            elif func is F.hardtanh:
                lo = float(_arg(args, kwargs, 1, "min_val", -1.0))
                hi = float(_arg(args, kwargs, 2, "max_val", 1.0))
            else:
                if name in _ONE_SIDED:
                    bound = _arg(args, kwargs, 1, _ONE_SIDED[name], None)
                    lo_arg, hi_arg = (bound, None) if name == "clamp_min" else (None, bound)
                else:
                    lo_arg, hi_arg = _arg(args, kwargs, 1, "min", None), _arg(args, kwargs, 2, "max", None)
                if isinstance(lo_arg, torch.Tensor) or isinstance(hi_arg, torch.Tensor):
                    raise NotPiecewiseLinear("clamp with tensor bounds is not supported")
                lo = -math.inf if lo_arg is None else float(lo_arg)
                hi = math.inf if hi_arg is None else float(hi_arg)
            return self._clamp(z, lo, hi)
        if func in _HARD_SIGMOID:  # relu6(z + 3) / 6: z / 6 + 1/2 clamped to [0, 1]
            return self._clamp(args[0] / 6 + 0.5, 0.0, 1.0)
        if func in _POOLS:
            return self._max_pool(func, args, kwargs)
        if func in _HEADS:
            raise _HeadReached(args[0])
        if name in _REDUCTIONS:
            return self._reduction(name, args, kwargs)
        if name in _ADAPTIVE_POOLS:
            return self._adaptive_max_pool(_ADAPTIVE_POOLS[name], args, kwargs)
        if name == "rnn_relu":
            return self._rnn_relu(args, kwargs)
        if name == "rnn_relu_cell":
            return self._rnn_relu_cell(args, kwargs)
        if name in _FORBIDDEN_NAMES:
            raise NotPiecewiseLinear(f"operation {name!r} is not piecewise-linear")
        return func(*args, **kwargs)

    def _clamp(self, z: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        out = z
        first, axis = self._first(z)
        if lo > -math.inf:
            self._record(z - lo, axis)
            out = torch.where(first < lo, torch.full_like(z, lo), out)
        if hi < math.inf:
            self._record(hi - z, axis)
            out = torch.where(first > hi, torch.full_like(z, hi), out)
        return out

    def _frozen_relu(self, z: torch.Tensor) -> torch.Tensor:
        first, axis = self._first(z)
        self._record(z, axis)
        return z * (first > 0).to(z.dtype)

    def _frozen_leaky(self, z: torch.Tensor, slope: float | torch.Tensor) -> torch.Tensor:
        first, axis = self._first(z)
        self._record(z, axis)
        return torch.where(first > 0, z, slope * z)

    def _relu_step(self, x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                   b_ih: torch.Tensor | None = None, b_hh: torch.Tensor | None = None) -> torch.Tensor:
        """One step of a ReLU recurrence, ``relu(W_ih x + b_ih + W_hh h + b_hh)``, its ReLU frozen."""
        z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        return self._frozen_relu(z)

    def _rnn_relu(self, args, kwargs):
        """``nn.RNN(nonlinearity="relu")``'s one fused call, unrolled into the layers it is: at each
        step ``h = relu(W_ih x_t + b_ih + W_hh h + b_hh)``, every step's ReLU frozen and recorded
        (the first step's units are the first switches: hyperplanes fixed in input space)."""
        if kwargs or len(args) != 9 or not isinstance(args[2], (list, tuple)):
            raise NotPiecewiseLinear("a packed or unusual ReLU recurrence (rnn_relu) is not supported")
        x, hx, params, has_biases, layers, dropout, train, bidirectional, batch_first = args
        if train and dropout:
            raise NotPiecewiseLinear("a ReLU recurrence with dropout in training mode is not a fixed function")
        directions, per = (2 if bidirectional else 1), (4 if has_biases else 2)
        if len(params) != int(layers) * directions * per:
            raise NotPiecewiseLinear("a ReLU recurrence with projections or an unexpected layout is not supported")
        steps = x.transpose(0, 1) if batch_first else x  # (time, rows, features)
        last = []
        for layer in range(int(layers)):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                weights = params[index * per:(index + 1) * per]
                h, states = hx[index], [steps[0]] * len(steps)
                for t in (range(len(steps)) if direction == 0 else reversed(range(len(steps)))):
                    h = self._relu_step(steps[t], h, *weights)
                    states[t] = h
                outputs.append(torch.stack(states))
                last.append(h)
            steps = torch.cat(outputs, -1)
        return (steps.transpose(0, 1) if batch_first else steps), torch.stack(last)

    def _rnn_relu_cell(self, args, kwargs):
        """``nn.RNNCell(nonlinearity="relu")``: one step of :meth:`_rnn_relu`."""
        names = ("input", "hx", "w_ih", "w_hh", "b_ih", "b_hh")
        values = dict(zip(names, args)) | kwargs
        return self._relu_step(values["input"], values["hx"], values["w_ih"], values["w_hh"], values.get("b_ih"),
                               values.get("b_hh"))

    def _reduction(self, name: str, args: tuple, kwargs: dict):
        """``max``/``min`` along a dimension (values and indices), ``amax``/``amin`` along some:
        each output is the winner of row 0 among the entries it reduces, its switches the margins
        ``winner - other`` (for ``min``, ``other - winner``). Refused: an element-wise ``max(a, b)``
        (no dimension: ``torch.maximum``'s), and a reduction over the rows (the batch) or over
        everything."""
        z = args[0]
        if len(args) > 1 and isinstance(args[1], torch.Tensor) or "other" in kwargs:
            raise NotPiecewiseLinear(f"an element-wise {name} of two computed values is not supported")
        dim = _arg(args, kwargs, 1, "dim", None)
        keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
        listed: tuple[int, ...] = () if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)  # type: ignore[arg-type]
        dims = tuple(sorted({int(d) % z.dim() for d in listed}))
        if not dims or 0 in dims:
            raise NotPiecewiseLinear(f"{name} over the batch or over every value is not supported")
        sign = _REDUCTIONS[name]
        kept = [d for d in range(z.dim()) if d not in dims]
        moved = (sign * z).permute(*kept, *dims)
        grouped = moved.reshape(*moved.shape[:len(kept)], -1)  # (rows, ..., reduced)
        index = grouped[:1].argmax(-1, keepdim=True)  # row 0's winners
        winners = grouped.gather(-1, index.expand(*grouped.shape[:-1], 1))
        self._record((winners - grouped).reshape(len(z), -1))
        values = sign * winners.squeeze(-1)
        indices = index.squeeze(-1).expand(values.shape)
        for d in dims if keepdim else ():
            values, indices = values.unsqueeze(d), indices.unsqueeze(d)
        if name in ("max", "min"):  # values and indices, as torch returns them
            return getattr(torch.return_types, name)((values, indices))
        return values

    def _adaptive_max_pool(self, dims: int, args: tuple, kwargs: dict):
        """Adaptive max pooling whose windows tile the input evenly (global max pooling above
        all): the max pooling of :meth:`_max_pool` with that window."""
        z, size = args[0], _arg(args, kwargs, 1, "output_size", None)
        if _arg(args, kwargs, 2, "return_indices", False):
            raise NotPiecewiseLinear("adaptive max pooling with return_indices is not supported")
        spatial = [int(v) for v in z.shape[-dims:]]
        given: list[Any] = list(size) if isinstance(size, (list, tuple)) else [size] * dims
        sizes = [n if m is None else int(m) for n, m in zip(spatial, given)]
        if any(n % m for n, m in zip(spatial, sizes)):
            raise NotPiecewiseLinear("adaptive max pooling whose windows do not tile the input evenly is not supported")
        kernel = [n // m for n, m in zip(spatial, sizes)]
        pool = F.max_pool1d if dims == 1 else F.max_pool2d
        return self._max_pool(pool, (z, kernel[0] if dims == 1 else tuple(kernel)), {})

    def _max_pool(self, func, args, kwargs):
        z = args[0]
        two_d = func in (F.max_pool2d, torch.max_pool2d)
        kernel = _arg(args, kwargs, 1, "kernel_size", None)
        stride = _arg(args, kwargs, 2, "stride", None) or kernel
        padding = _arg(args, kwargs, 3, "padding", 0)
        dilation = _arg(args, kwargs, 4, "dilation", 1)
        ceil_mode = bool(_arg(args, kwargs, 5, "ceil_mode", False))
        if not two_d:
            z = z.unsqueeze(-2)
            kernel, stride, dilation = (1, int(np.atleast_1d(kernel)[0])), (1, int(np.atleast_1d(stride)[0])), (
                1, int(np.atleast_1d(dilation)[0]))
            padding = (0, int(np.atleast_1d(padding)[0]))
        pads = [int(p) for p in np.broadcast_to(np.atleast_1d(padding), (2,))]
        extra = [0, 0]
        if ceil_mode:  # the last window runs past the end (SqueezeNet, GoogLeNet): pad to where it ends
            kernel, stride, dilation = (tuple(int(v) for v in np.broadcast_to(np.atleast_1d(value), (2,)))
                                        for value in (kernel, stride, dilation))
            ends = F.max_pool2d(z[:1], kernel, stride, pads, dilation, ceil_mode=True).shape[-2:]
            extra = [max(0, (count - 1) * step + (size - 1) * spread + 1 - (length + 2 * pad))
                     for count, step, size, spread, length, pad in zip(ends, stride, kernel, dilation, z.shape[-2:],
                                                                       pads)]
        padded = any(pads) or any(extra)
        if padded:  # max pooling pads with -inf: a padded cell never wins and is never a switch
            z = F.pad(z, (pads[1], pads[1] + extra[1], pads[0], pads[0] + extra[0]), value=-math.inf)
        pooled, index = F.max_pool2d(z[:1], kernel, stride, 0, dilation, return_indices=True)
        rows, channels = z.shape[0], z.shape[1]
        flat = z.reshape(rows, channels, -1)
        winners = flat.gather(2, index.reshape(1, channels, -1).expand(rows, -1, -1))
        patches = F.unfold(z.reshape(rows * channels, 1, *z.shape[-2:]), kernel, dilation, 0, stride)
        patches = patches.reshape(rows, channels, patches.shape[1], -1)
        margins = winners.unsqueeze(2) - patches
        if padded:  # constant (zero-Jacobian) margins for the padded cells
            margins = torch.where(torch.isfinite(margins), margins, torch.ones_like(margins))
        self._record(margins.reshape(rows, -1))
        out = winners.reshape(rows, *pooled.shape[1:])
        if not two_d:
            out = out.squeeze(-2)
        if _arg(args, kwargs, 6, "return_indices", False):
            raise NotPiecewiseLinear("max pooling with return_indices is not supported")
        return out


# What may follow a head "on top": moving or reading its values, nothing that computes with them.
_AFTER_HEAD_NAMES = {"reshape", "view", "view_as", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
                     "permute", "transpose", "t", "clone", "detach", "to", "float", "double", "type", "__getitem__",
                     "__get__", "size", "dim", "numel", "expand", "expand_as", "chunk", "split", "unbind", "narrow",
                     "select", "movedim", "type_as"}


class _HeadOrder(TorchFunctionMode):
    """Detect an operation that computes after a head (not a head "on top": a piecewise-linear
    one, a gate ``x * sigmoid(g)``, a layer), and an operation the analysis cannot freeze (GELU,
    LayerNorm, ...) before the first head."""

    def __init__(self) -> None:
        super().__init__()
        self.head_seen = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if func in _HEADS:
            self.head_seen = True
        elif self.head_seen and name not in _AFTER_HEAD_NAMES:
            what = "a piecewise-linear operation" if (func in _RELU or func in _LEAKY or func in _CLAMPS
                                                      or func in _POOLS) else f"operation {name!r}"
            raise NotPiecewiseLinear(f"{what} follows a sigmoid/tanh/softmax; only a monotone head on top of the "
                                     "network is supported")
        elif not self.head_seen and name in _FORBIDDEN_NAMES:
            # what the analysis (:class:`_Freeze`, which stops at the first head) would refuse
            raise NotPiecewiseLinear(f"operation {name!r} is not piecewise-linear")
        return func(*args, **(kwargs or {}))


def check_head_on_top(module: torch.nn.Module, x0: np.ndarray) -> None:
    """Raise :class:`NotPiecewiseLinear` unless every head comes after every switch, nothing
    the analysis cannot freeze (a smooth activation, a normalisation) runs before the first head,
    and the network with its switches frozen is affine (:func:`check_frozen_affine`): the check
    before a white-box analysis, whose callers then fall back to black-box probes."""
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    with torch.no_grad(), _HeadOrder():
        module(torch.as_tensor(x0, dtype=dtype).unsqueeze(0))
    check_frozen_affine(module, x0)


#: How far from affine (relative to the outputs' size) the frozen network may be, per dtype:
#: rounding of a deep float32 network stays orders of magnitude below; a recurrent layer or an
#: attention product is off by a sizeable fraction of its outputs.
AFFINE_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-8}


def check_frozen_affine(module: torch.nn.Module, x0: np.ndarray, seed: int = 0) -> None:
    """Raise :class:`NotPiecewiseLinear` unless ``module`` with every switch frozen to the
    pattern at ``x0`` (what :func:`linearise` reads the region's map from) is affine in its input,
    checked on two random displacements ``a``, ``b`` of the size of ``x0``'s values:
    ``F(x0 + a) + F(x0 + b) = F(x0) + F(x0 + a + b)`` and ``F(x0 + 2a) + F(x0) = 2 F(x0 + a)``.

    An operation the analysis does not know runs unfrozen (it intercepts the functions a ReLU
    network calls, and refuses the smooth ones it names): a fused recurrent layer (``nn.LSTM``,
    ``nn.GRU``, ``nn.RNN`` with tanh: one opaque call; a ReLU ``nn.RNN`` is unrolled and frozen
    step by step), ``scaled_dot_product_attention``, a
    product of two computed tensors, ``torch.maximum``. Without this check its nonlinearity is
    read as a single linear region and the probes are "centred" in a region that does not exist."""
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    rng = np.random.default_rng(seed)
    scale = max(float(np.max(np.abs(x0))) if x0.size else 0.0, 1e-3)
    a, b = (rng.uniform(-0.5, 0.5, size=x0.shape) * scale for _ in range(2))
    rows = np.stack([x0, x0 + a, x0 + b, x0 + a + b, x0 + 2 * a])
    _, out = _frozen_rows(module, torch.as_tensor(rows, dtype=dtype))
    values = out.double().numpy()
    if not np.all(np.isfinite(values)):
        raise NotPiecewiseLinear("the network's outputs are not finite with its switches frozen")
    additive = values[1] + values[2] - values[0] - values[3]
    homogeneous = values[4] + values[0] - 2 * values[1]
    size = sum(float(np.linalg.norm(values[k] - values[0])) for k in (1, 2, 3, 4)) + float(np.linalg.norm(values[0]))
    off = max(float(np.linalg.norm(additive)), float(np.linalg.norm(homogeneous))) / max(size, 1e-300)
    if off > AFFINE_TOLERANCE.get(dtype, 1e-3):
        raise NotPiecewiseLinear(f"the network is not affine with its ReLU-like switches frozen (off by {off:.2g} "
                                 "of its outputs): it computes with an operation the analysis cannot freeze (a "
                                 "recurrent layer, attention, a product of two computed values, ...)")


@dataclass
class Linearisation:
    """The affine pieces at ``x0``: switches ``phi + G (x - x0)`` and output ``f + J (x - x0)``.

    ``switch_values`` (P,), ``switch_jacobian`` (P, d), ``output`` (m,), ``jacobian`` (m, d),
    where ``output``/``jacobian`` are taken *before* a monotone head, if any.
    """

    switch_values: np.ndarray
    switch_jacobian: np.ndarray
    output: np.ndarray
    jacobian: np.ndarray
    #: How many switches each piecewise-linear operation contributed, in the order the network
    #: ran them (the first block is the first layer's units: hyperplanes fixed in input space).
    blocks: tuple[int, ...] = ()

    def distances(self) -> np.ndarray:
        """Distance from ``x0`` to each switch's hyperplane (inf for constant switches)."""
        norms = np.linalg.norm(self.switch_jacobian, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(norms > 1e-12, np.abs(self.switch_values) / norms, np.inf)

    def pattern(self) -> np.ndarray:
        """The activation pattern: the sign of every switch (bool, P)."""
        return self.switch_values > 0

    def radius(self) -> float:
        """Radius of the largest ball around ``x0`` inside the region (ignoring the domain)."""
        distances = self.distances()
        return float(distances.min()) if distances.size else math.inf


def first_switches(module: torch.nn.Module, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first piecewise-linear operation's switches at ``x0`` and their (constant) gradients,
    ``(P,)`` and ``(P, d)``: for a first layer, its units' hyperplanes. Only the layers before
    that operation run (cheap for large networks)."""
    shape = x0.shape
    d = int(np.prod(shape))
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    anchor = torch.as_tensor(x0, dtype=dtype).unsqueeze(0)
    switches = _first_switch_rows(module, torch.cat([anchor, anchor + torch.eye(d, dtype=dtype).reshape(d, *shape)]))
    return switches[0].numpy(), (switches[1:] - switches[:1]).T.numpy()


def first_switch_values(module: torch.nn.Module, x0: np.ndarray) -> np.ndarray:
    """The first piecewise-linear operation's switches at ``x0`` alone, ``(P,)`` (the values of
    :func:`first_switches`, from one forward pass of one row, without the gradients)."""
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    return _first_switch_rows(module, torch.as_tensor(x0, dtype=dtype).unsqueeze(0))[0].numpy()


def _first_switch_rows(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The first piecewise-linear operation's switches for each row of ``batch``, ``(rows, P)``."""
    freeze = _Freeze(first_only=True, rows=batch.shape[0])
    with torch.no_grad():
        try:
            with freeze:
                module(batch)
        except (_FirstSwitches, _HeadReached):
            pass
    if not freeze.switches:
        raise NotPiecewiseLinear("the network has no ReLU-like switch")
    return freeze.switches[0]


#: Default bound on the rows of one forward pass of :func:`linearise` (the anchor included):
#: memory grows with the rows times the network's activations, time barely shrinks with more.
CHUNK_ROWS = 65


def linearise(module: torch.nn.Module, x0: np.ndarray, basis: np.ndarray | None = None,
              chunk_rows: int = CHUNK_ROWS) -> Linearisation:
    """Exact local affine pieces of ``module`` (float64 copy expected) around one input ``x0``.

    With ``basis`` (``d x q`` orthonormal columns) the Jacobians are taken along its columns
    only (``q + 1`` rows instead of ``d + 1``): the affine pieces restricted to the slice
    ``x0 + span(basis)``, which is all a probe stepping along directions in that span needs.

    The rows go through the network ``chunk_rows`` at a time (each chunk led by ``x0``, whose
    pattern every row of the chunk follows), so memory stays bounded by the chunk however
    many tangents there are; the pieces are the same for any chunk size. A float32 module
    gives float32 pieces (half the memory, differences rounded at float32 precision).
    """
    if chunk_rows < 2:
        raise ValueError(f"chunk_rows must be at least 2, got {chunk_rows}")
    shape = x0.shape
    d = int(np.prod(shape))
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    tangents = np.eye(d) if basis is None else np.asarray(basis).T
    q = len(tangents)
    anchor = torch.as_tensor(x0, dtype=dtype).unsqueeze(0)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    phi = output = None
    switch_jacobian = jacobian = np.empty((0, 0))
    for start in range(0, max(q, 1), chunk_rows - 1):
        block = torch.as_tensor(tangents[start:start + chunk_rows - 1], dtype=dtype).reshape(-1, *shape)
        switches, out = _frozen_rows(module, torch.cat([anchor, anchor + block]))
        if phi is None:
            phi, output = switches[0].numpy().copy(), out[0].numpy().copy()
            switch_jacobian = np.empty((len(phi), q), dtype=np_dtype)
            jacobian = np.empty((len(output), q), dtype=np_dtype)
        stop = start + len(block)
        jacobian[:, start:stop] = (out[1:] - out[:1]).T.numpy()
        offset = 0
        for piece in switches.pieces:
            width = piece.shape[1]
            switch_jacobian[offset:offset + width, start:stop] = (piece[1:] - piece[:1]).T.numpy()
            offset += width
        del switches, out
    assert phi is not None and output is not None
    return Linearisation(phi, switch_jacobian, output, jacobian)


class _Switches:
    """The switches recorded by one frozen forward pass: ``(rows, width)`` pieces, one per operation."""

    def __init__(self, pieces: list[torch.Tensor], rows: int, dtype: torch.dtype) -> None:
        self.pieces = pieces or [torch.zeros((rows, 0), dtype=dtype)]

    def __getitem__(self, row: int) -> torch.Tensor:
        return torch.cat([piece[row] for piece in self.pieces])


def _frozen_rows(module: torch.nn.Module, batch: torch.Tensor) -> tuple[_Switches, torch.Tensor]:
    """Run ``batch`` with every switch frozen to row 0's pattern: the recorded switches and
    the affine output (before a monotone head), both with one row per batch row."""
    freeze = _Freeze(rows=batch.shape[0])
    with torch.no_grad():
        try:
            with freeze:
                out = module(batch)
        except _HeadReached as head:
            # The head is monotone and elementwise (or softmax) and comes last: the value
            # entering it is the affine output of the region. Later operations that are
            # linear reshapes (Unflatten) do not matter for the analysis.
            out = head.value
    return _Switches(freeze.switches, batch.shape[0], batch.dtype), out.reshape(out.shape[0], -1)


def count_switches(module: torch.nn.Module, x0: np.ndarray) -> int:
    """How many switches ``module`` has at ``x0`` (one frozen forward pass of one row)."""
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    switches, _ = _frozen_rows(module, torch.as_tensor(x0, dtype=dtype).unsqueeze(0))
    return sum(piece.shape[1] for piece in switches.pieces)
