"""Reading a network's weighted layers as *units*: one row per hidden unit.

A unit is an output feature of a Linear layer or an output channel (a filter) of a
convolution; its *weight vector* is the row of incoming weights (a filter flattened) with
the bias appended. A BatchNorm that follows a layer is folded into it (in eval mode it is a
per-unit affine map: its scale multiplies the unit's weights and bias, its shift adds to the
bias), so a network with BatchNorm is read as the affine units it computes.

Layers are read from what the safe loaders already give: a torch module's parameters and
buffers, walked in module order (an ``nn.Sequential``, the benchmark's ``ResNet``, or the
chain the ONNX importer rebuilds). Nothing is run. Every size is checked against a bound
before anything is allocated, and weights that are not finite are refused
(:class:`~tafa.errors.ModelLoadError`, one line).

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> [(layer.kind, layer.vectors.shape) for layer in unit_layers(net)]
[('linear', (4, 4)), ('linear', (2, 5))]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import ModelLoadError

#: Most units (rows) of one layer that are read; a wider layer ends the reading there.
MAX_UNITS = 4096
#: Most values of one layer's unit matrix (units x (fan-in + 1)).
MAX_LAYER_VALUES = 1 << 24
#: Most layers read from one network (the evidence uses the first few).
MAX_LAYERS = 8
#: Most values read from one network in all.
MAX_TOTAL_VALUES = 1 << 25


#: How ``hidden`` was decided (stored with each layer): by the layer's dataflow to the outputs
#: (:func:`hidden_layers`, since session 30). Fingerprints made before it called every layer but
#: a module's last hidden, a second head included; their layers after the first are read as not
#: hidden.
HIDDEN_BY = "dataflow"


@dataclass(frozen=True)
class UnitLayer:
    """One weighted layer read as units.

    ``vectors`` is ``(units, fan_in + 1)`` float64: each row a unit's incoming weights
    (a convolution's filter flattened channel-major) with its bias last. ``kind`` is
    ``"linear"`` or ``"conv"``; ``inputs`` the number of input features or channels the
    fan-in is laid over (for a convolution, the fan-in is ``inputs x kernel positions``).
    """

    name: str
    kind: str
    inputs: int
    vectors: np.ndarray
    #: False for the network's last weighted layer: its units are the outputs, whose order is
    #: fixed by the task, not hidden units a training run may order any way.
    hidden: bool = True

    @property
    def units(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def fan_in(self) -> int:
        return int(self.vectors.shape[1]) - 1

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "inputs": self.inputs, "units": self.units,
                "fan_in": self.fan_in, "hidden": self.hidden, "hidden_by": HIDDEN_BY}


def refuse_non_finite(name: str, array: np.ndarray, source: str) -> None:
    """Refuse (:class:`~tafa.errors.ModelLoadError`) weights that are not all finite."""
    if not np.all(np.isfinite(array)):
        raise ModelLoadError(f"{source} holds NaN or infinite weights in {name!r}; weight evidence refused.")


def unit_layers(module: Any, *, source: str = "the model", max_layers: int = MAX_LAYERS,
                max_values: int = MAX_TOTAL_VALUES) -> list[UnitLayer]:
    """The first ``max_layers`` Linear / Conv layers of a torch module, in the order its forward
    calls them (its ``torch.fx`` trace; module order for a module fx cannot trace), as
    :class:`UnitLayer` rows (BatchNorm folded in). Reading stops at the first layer that
    breaks a bound (:data:`MAX_UNITS`, :data:`MAX_LAYER_VALUES`, ``max_values`` in all),
    at a grouped or transposed convolution, or at ``max_layers``; the caller compares what
    was read. ``source`` names the model in errors. A module that reads its own layers (an
    ONNX graph the import runs node by node: :mod:`tafa.models.onnx_units`) is asked for them."""
    import torch
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm

    reader = getattr(module, "graph_unit_layers", None)
    if reader is not None:  # an ONNX graph run node by node reads its own nodes
        return list(reader(source=source, max_layers=max_layers, max_values=max_values))
    layers: list[UnitLayer] = []
    pending: tuple[str, str, int, Any, Any] | None = None  # a layer whose BatchNorm may follow
    total = 0
    graph = _traced(module)

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            name, kind, inputs, weight, bias = pending
            vectors = np.concatenate([weight.reshape(len(weight), -1), bias[:, None]], axis=1)
            refuse_non_finite(name, vectors, source)
            layers.append(UnitLayer(name, kind, inputs, vectors))
            pending = None

    for name, child in _called(module, graph):
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            flush()
            if len(layers) >= max_layers:
                break
            if isinstance(child, nn.Conv1d | nn.Conv2d | nn.Conv3d) and child.groups != 1:
                break
            shape = tuple(int(s) for s in child.weight.shape)
            values = math.prod(shape) + shape[0]
            if shape[0] > MAX_UNITS or values > MAX_LAYER_VALUES or total + values > max_values:
                break
            total += values
            with torch.no_grad():
                weight = child.weight.detach().double().cpu().numpy()
                bias = (child.bias.detach().double().cpu().numpy() if child.bias is not None
                        else np.zeros(shape[0]))
            kind = "linear" if isinstance(child, nn.Linear) else "conv"
            pending = (name, kind, shape[1], weight, bias)
        elif isinstance(child, _BatchNorm) and pending is not None:
            if child.num_features != len(pending[3]) or child.running_var is None or child.running_mean is None:
                flush()
                continue
            with torch.no_grad():
                mean = child.running_mean.detach().double().cpu().numpy()
                var = child.running_var.detach().double().cpu().numpy()
                gamma = (child.weight.detach().double().cpu().numpy() if child.weight is not None
                         else np.ones_like(mean))
                beta = (child.bias.detach().double().cpu().numpy() if child.bias is not None
                        else np.zeros_like(mean))
            for label, array in (("running_mean", mean), ("running_var", var), ("weight", gamma), ("bias", beta)):
                refuse_non_finite(f"{name}.{label}", array, source)
            if np.any(var < 0):
                raise ModelLoadError(f"{source} holds a negative running variance in {name!r}; "
                                     "weight evidence refused.")
            scale = gamma / np.sqrt(var + float(child.eps))
            layer, kind, inputs, weight, bias = pending
            pending = (layer, kind, inputs, weight * scale.reshape(-1, *[1] * (weight.ndim - 1)),
                       (bias - mean) * scale + beta)
    flush()
    hidden = hidden_layers(module, [layer.name for layer in layers], graph)
    return [UnitLayer(layer.name, layer.kind, layer.inputs, layer.vectors, hidden=layer.name in hidden)
            for layer in layers]


#: What :func:`mixed_on_every_path` is told of one use of a value: the units are mixed there
#: by another weighted layer, or reach an output (or an operation that treats them by their place).
MIXED, EXPOSED = "mixed", "exposed"


def mixed_on_every_path(start: Any, uses: Callable[[Any], Iterable[Any]]) -> bool:
    """Whether a layer's units (graph value ``start``) are *hidden*: every path from them ends
    where another weighted layer mixes them, and one does. ``uses(value)`` tells, for each use
    of a value, :data:`MIXED`, :data:`EXPOSED`, or the values that use passes the units on to
    (none: it reads only the size). Walked once per value (the graphs both readers give:
    :func:`hidden_layers`, :mod:`tafa.models.onnx_units`)."""
    seen, frontier, mixed = {start}, [start], False
    while frontier:
        for use in uses(frontier.pop()):
            if use == MIXED:
                mixed = True
            elif use == EXPOSED:
                return False
            else:
                for value in use:
                    if value not in seen:
                        seen.add(value)
                        frontier.append(value)
    return mixed


def _traced(module: Any) -> Any:
    """The ``torch.fx`` graph of a module's forward, or None where fx cannot trace it (control
    flow on values, code fx does not follow)."""
    from torch import fx

    try:
        return fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - untraceable code: the callers take the safe reading
        return None


def _called(module: Any, graph: Any) -> list[tuple[str, Any]]:
    """A module's submodules in the order its forward first calls them (the order an exported
    graph lists its layers in, whatever order they were defined in), or in module order
    without a trace."""
    if graph is None:
        return list(module.named_modules())
    modules = dict(module.named_modules())
    names = dict.fromkeys(str(node.target) for node in graph.nodes if node.op == "call_module")
    return [(name, modules[name]) for name in names if name in modules]


def _mixes(module: Any) -> bool:
    """Whether a module mixes the features it is given with a weight matrix (a Linear, a
    convolution with one group, an attention, an embedding: any parameter of two or more axes,
    a convolution by channel groups excepted)."""
    return getattr(module, "groups", 1) == 1 and any(parameter.dim() >= 2 for parameter in module.parameters())


#: Modules, functions and tensor methods that treat every unit alike (elementwise, a
#: normalisation or pooling per unit, a reduction, a softmax, a concatenation): relabelling a
#: layer's units before them relabels what comes out the same way (the fx twin of
#: :data:`tafa.models.onnx_units.UNITWISE`).
_UNITWISE_MODULES = frozenset({
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Hardsigmoid",
    "Hardswish", "Hardtanh", "Tanh", "Softplus", "Softsign", "Identity", "Dropout", "Dropout1d", "Dropout2d",
    "Dropout3d", "AlphaDropout", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "InstanceNorm1d",
    "InstanceNorm2d", "InstanceNorm3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d", "Softmax", "LogSoftmax", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
    "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d",
    "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d",
})
_UNITWISE_NAMES = frozenset({
    "add", "sub", "mul", "truediv", "div", "neg", "pow", "sqrt", "abs", "exp", "log", "relu", "relu6", "relu_",
    "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "hardsigmoid", "hardswish",
    "hardtanh", "tanh", "softplus", "softsign", "dropout", "clamp", "clip", "maximum", "minimum", "batch_norm",
    "layer_norm", "instance_norm", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "mean", "sum", "amax", "amin", "softmax", "log_softmax", "cat", "concat", "squeeze",
    "unsqueeze", "contiguous", "float", "double", "to",
})


def _target_name(node: Any) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", "")


def _flattens(node: Any, module: Any) -> bool:
    """Whether an fx node keeps the batch and merges the rest into one axis: ``nn.Flatten()``,
    ``torch.flatten(x, 1)``, ``x.flatten(1)``, ``x.view(x.size(0), -1)`` / ``reshape``."""
    if node.op == "call_module":
        return (type(module).__name__ == "Flatten" and getattr(module, "start_dim", None) == 1
                and getattr(module, "end_dim", None) == -1)
    name, rest = _target_name(node), list(node.args[1:])
    if name == "flatten":
        start = rest[0] if rest else node.kwargs.get("start_dim", 0)
        end = rest[1] if len(rest) > 1 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    if name in ("view", "reshape"):
        if len(rest) == 1 and isinstance(rest[0], (tuple, list)):
            rest = list(rest[0])
        return len(rest) == 2 and rest[1] == -1
    return False


def hidden_layers(module: Any, names: list[str], graph: Any = False) -> set[str]:
    """Which of ``module``'s layers (by module path) have *hidden* units: those whose every use
    in the traced forward reaches another module that mixes features (:func:`_mixes`, or a
    functional product with a stored weight) through operations that treat every unit alike
    (:data:`_UNITWISE_NAMES`, a flatten, a per-channel convolution), never the output and never
    an operation that treats units by their place (a split, a slice, a transpose, a reshape into
    heads or pixels, a grouped convolution, anything else). Only then is relabelling the units
    a symmetry of the network, which the order test's null needs: a head, a second head, a
    skip to the output, a ShuffleNet's channel split, an attention's heads are not hidden. A
    module ``torch.fx`` cannot trace has no hidden layer (its order test is not applicable
    rather than possibly wrong). ``graph``: the module's trace when the caller made it
    (:func:`_traced`; None: untraceable)."""
    import operator

    import torch

    if graph is False:
        graph = _traced(module)
    if graph is None:
        return set()
    modules = dict(module.named_modules())
    products = {torch.nn.functional.linear, operator.matmul, torch.matmul, torch.mm, torch.bmm, torch.einsum,
                torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d}

    def mixing(node: Any, value: Any) -> bool:
        if node.op == "call_module":
            return _mixes(modules[node.target]) and bool(node.args) and node.args[0] is value
        if node.op in ("call_function", "call_method") and (node.target in products or node.target in (
                "matmul", "mm", "bmm")):
            return any(getattr(arg, "op", None) == "get_attr" for arg in node.args)
        return False

    def unitwise(node: Any) -> bool | None:
        """True: passes each unit on; None: reads only the size; False: anything else."""
        name = _target_name(node)
        if name in ("size", "dim") or (node.op == "call_function" and node.target is getattr
                                       and tuple(node.args[1:]) in (("shape",), ("dtype",), ("device",))):
            return None
        if node.op == "call_module":
            child = modules[node.target]
            if type(child).__name__ in _UNITWISE_MODULES or _flattens(node, child):
                return True
            groups = getattr(child, "groups", 1)  # a per-channel convolution relabels with its channels
            return bool(groups > 1 and groups == getattr(child, "in_channels", 0) == getattr(child, "out_channels", -1))
        if node.op in ("call_function", "call_method"):
            return name in _UNITWISE_NAMES or _flattens(node, None)
        return False

    def users(value: Any) -> Iterable[Any]:
        for user in value.users:
            if user.op == "output":
                yield EXPOSED
            elif mixing(user, value):
                yield MIXED
            else:
                passes = unitwise(user)
                yield () if passes is None else (user,) if passes else EXPOSED

    uses: dict[str, list[Any]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and node.target in names:
            uses.setdefault(str(node.target), []).append(node)
    return {name for name, found in uses.items() if all(mixed_on_every_path(node, users) for node in found)}


#: Most owner layers a fingerprint keeps, and most values in all (float64: 32 MiB).
STORED_LAYERS = 4
MAX_STORED_VALUES = 1 << 22


def stored_layers(module: Any) -> list[UnitLayer]:
    """The owner layers a fingerprint keeps: the first :data:`STORED_LAYERS`, as many as fit in
    :data:`MAX_STORED_VALUES` values."""
    layers = unit_layers(module, source="the owner", max_layers=STORED_LAYERS)
    kept, total = [], 0
    for layer in layers:
        total += layer.vectors.size
        if total > MAX_STORED_VALUES:
            break
        kept.append(layer)
    return kept


def layers_from_arrays(arrays: dict[str, np.ndarray], described: Any, *, whose: str = "the owner") -> list[UnitLayer]:
    """The owner layers kept in a fingerprint file (or a suspect's, read by its sandbox worker:
    ``whose`` names them in errors): arrays ``"0"``, ``"1"``, ... and their descriptions
    (``meta["weight_layers"]``), checked (``ValueError``) before use: as many descriptions as
    arrays, at most :data:`STORED_LAYERS`, shapes that agree, finite values."""
    if not arrays and described is None:
        return []
    if not isinstance(described, list) or len(described) != len(arrays) or len(arrays) > STORED_LAYERS:
        raise ValueError(f"{whose} weights ({len(arrays)} arrays) do not fit their description")
    if sum(array.size for array in arrays.values()) > MAX_STORED_VALUES:
        raise ValueError(f"{whose} weights hold more than {MAX_STORED_VALUES} values")
    layers = []
    for index, row in enumerate(described):
        vectors = arrays.get(str(index))
        if vectors is None or not isinstance(row, dict) or vectors.ndim != 2 or vectors.shape[1] < 2:
            raise ValueError(f"{whose.removeprefix('the ')} weight layer {index} is malformed")
        kind, inputs, hidden = row.get("kind"), row.get("inputs"), row.get("hidden", True)
        fan_in = vectors.shape[1] - 1
        if (kind not in ("linear", "conv") or not isinstance(inputs, int) or isinstance(inputs, bool) or inputs < 1
                or fan_in % inputs or row.get("units") != vectors.shape[0] or not isinstance(hidden, bool)
                or vectors.shape[0] > MAX_UNITS or not np.all(np.isfinite(vectors))):
            raise ValueError(f"{whose.removeprefix('the ')} weight layer {index} does not fit its description")
        if index > 0 and row.get("hidden_by") != HIDDEN_BY:
            hidden = False  # an earlier rule's flag (see HIDDEN_BY): not trusted past the first layer
        layers.append(UnitLayer(str(row.get("name", index))[:200], kind, inputs, vectors, hidden))
    return layers


def suspect_layers(suspect: Any, *, max_layers: int = MAX_LAYERS) -> list[UnitLayer] | None:
    """The first ``max_layers`` layers of a suspect whose weights can be read: a torch module;
    a model that reads its own (:meth:`~tafa.models.sandbox.SandboxedModel.weight_layers`: a
    file tafa opened, read in its sandbox worker, never parsed in this process); or a model
    whose :meth:`~tafa.models.Model.torch_module` gives one. ``None`` otherwise (a service, a
    file tafa could not import)."""
    reader = getattr(suspect, "weight_layers", None)
    if reader is not None:
        return reader(max_layers=max_layers)
    from torch import nn

    if isinstance(suspect, nn.Module):
        return unit_layers(suspect, source="the suspect", max_layers=max_layers)
    importer = getattr(suspect, "torch_module", None)
    module = importer() if importer is not None else None
    if module is None:
        return None
    return unit_layers(module, source=repr(getattr(suspect, "name", "the suspect")), max_layers=max_layers)
