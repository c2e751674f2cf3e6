"""The weight evidence of ONNX files that are not chains (tafa.models.onnx_units): a residual
network as either exporter writes it (and as a TorchScript file, which tafa's worker exports),
its dynamically quantised (``ConvInteger``, ``MatMulInteger``) and statically quantised
(``DequantizeLinear`` per channel) forms, a GELU network the white-box import refuses, an
unrolled recurrence; the hidden-unit rule on graphs whose layers reach an output by another
path; hostile weights."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tafa import Fingerprint
from tafa.attacks import magnitude_prune
from tafa.bench.architectures import build
from tafa.bench.datasets import load_task
from tafa.errors import ModelLoadError
from tafa.models import open_model
from tafa.models.onnx_import import import_onnx
from tafa.models.onnx_units import proto_unit_layers
from tafa.training import fit
from tafa.weights import compare, unit_layers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

READ = {"source": "the file", "max_layers": 4, "max_values": 1 << 22}


@pytest.fixture(scope="module")
def residual() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The benchmark's residual network (BatchNorm after every convolution) trained for an epoch
    on the digits, and another trained from another seed on the other half."""
    task = load_task("digits")

    def trained(seed: int, part: str) -> torch.nn.Module:
        model = build("resnet_zoo_narrow", input_shape=task.input_shape, output_dim=10, seed=seed)
        return fit(model, task.split(part), epochs=1, lr=1e-3, seed=seed)

    return trained(0, "owner"), trained(1, "other")


def _export(module: torch.nn.Module, shape: tuple[int, ...] = (1, 8, 8)) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.zeros(2, *shape),), buffer, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fingerprint(residual) -> Fingerprint:
    """The owner's fingerprint, which keeps its first layers (``weights=True``)."""
    return Fingerprint.create(residual[0], "box:0,1", input_shape=(1, 8, 8), points=4, directions=2, weights=True,
                              second_stage=False)


def _suspect_evidence(fingerprint: Fingerprint, data: bytes, tmp_path, name: str):
    """The weight evidence of the file ``data``, read in its sandbox worker."""
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    suspect = open_model(path)
    try:
        return fingerprint.weight_evidence(suspect)
    finally:
        suspect.close()


def test_a_residual_onnx_copy_is_read_as_its_torch_module_and_matched(residual, fingerprint, tmp_path):
    owner, other = residual
    copy = magnitude_prune(owner, 0.5)
    data = _export(copy)
    read = proto_unit_layers(onnx.load_from_string(data), **READ)
    module = unit_layers(copy, max_layers=4)  # BatchNorm folded by the module reading, by the exporter in the file
    assert [layer.vectors.shape for layer in read] == [layer.vectors.shape for layer in module]
    assert all(np.allclose(a.vectors, b.vectors, atol=1e-5) and a.hidden for a, b in zip(read, module))
    found = _suspect_evidence(fingerprint, data, tmp_path, "copy")
    assert found.applicable and found.p_value < 1e-9 and found.layers[0].cosine > 0.85  # half the weights zeroed
    independent = _suspect_evidence(fingerprint, _export(other), tmp_path, "other")
    assert independent.applicable and independent.p_value > 0.01 and independent.layers[0].cosine < 0.9


def test_a_torchscript_residual_copy_is_read_through_its_onnx_export(residual, fingerprint, tmp_path):
    owner, other = residual
    found = {}
    for name, module in (("copy", magnitude_prune(owner, 0.5)), ("other", other)):
        path = tmp_path / f"{name}.pt"
        torch.jit.trace(module.eval(), torch.zeros(1, 1, 8, 8)).save(str(path))
        suspect = open_model(path, allow_torchscript=True, input_shape=(1, 8, 8))
        try:
            found[name] = fingerprint.weight_evidence(suspect)
        finally:
            suspect.close()
    assert found["copy"].applicable and found["copy"].p_value < 1e-9
    assert found["other"].applicable and found["other"].p_value > 0.01


@pytest.mark.parametrize("form", ["dynamic", "static-per-channel"])
def test_a_quantised_onnx_copy_is_matched_and_an_independent_one_is_not(residual, fingerprint, form, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    owner, other = residual

    class Digits(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": load_task("digits").split("other").x[:32].numpy()}])

        def get_next(self):
            return next(self.batches, None)

    def quantised(module: torch.nn.Module, name: str) -> bytes:
        source, target = tmp_path / f"{name}-float.onnx", tmp_path / f"{name}-int8.onnx"
        source.write_bytes(_export(module))
        if form == "dynamic":
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        else:
            quantize_static(str(source), str(target), Digits(), quant_format=QuantFormat.QDQ, per_channel=True)
        return target.read_bytes()

    data = quantised(owner, "copy")
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert ({"ConvInteger", "MatMulInteger"} if form == "dynamic" else {"DequantizeLinear"}) <= ops
    found = _suspect_evidence(fingerprint, data, tmp_path, "copy")
    assert found.applicable and found.p_value < 1e-9 and found.layers[0].cosine > 0.9
    independent = _suspect_evidence(fingerprint, quantised(other, "other"), tmp_path, "other")
    assert independent.applicable and independent.p_value > 0.01


def test_an_onnx_owner_run_node_by_node_keeps_the_layers_its_file_holds(tmp_path):
    from pathlib import Path

    path = Path(__file__).resolve().parent / "fixtures" / "dynamo" / "residual.onnx"
    model = onnx.load(path)
    module = import_onnx(model).float()
    assert not isinstance(module, torch.nn.Sequential)  # a residual graph: interpreted node by node
    from_module, from_file = unit_layers(module, max_layers=4), proto_unit_layers(model, **READ)
    assert [layer.kind for layer in from_file] == ["conv", "conv", "conv", "linear"]
    assert [layer.hidden for layer in from_file] == [True, True, True, False]
    assert all(np.array_equal(a.vectors, b.vectors) and a.hidden == b.hidden for a, b in zip(from_module, from_file))
    owner = open_model(path)
    try:
        fingerprint = Fingerprint.create(owner, "box:0,1", points=4, directions=2, weights=True, second_stage=False)
    finally:
        owner.close()
    assert [row["kind"] for row in fingerprint.meta["weight_layers"]] == ["conv", "conv", "conv", "linear"]


def test_a_gelu_network_the_import_refuses_still_has_its_weights_read(tmp_path):
    torch.manual_seed(0)
    owner = build("mlp_gelu", input_shape=(64,), output_dim=10, seed=0).eval()
    data = _export(owner, (64,))
    with pytest.raises(ModelLoadError):  # Erf (GELU) is outside the piecewise-linear set
        import_onnx(onnx.load_from_string(data))
    read = proto_unit_layers(onnx.load_from_string(data), **READ)
    found = compare(unit_layers(owner), read)
    assert [layer.hidden for layer in read] == [True, True, False]
    assert found.applicable and found.p_value < 1e-100 and found.layers[0].cosine == pytest.approx(1.0)


def test_a_recurrent_weight_used_at_every_step_is_one_layer():
    from pathlib import Path

    model = onnx.load(Path(__file__).resolve().parent / "fixtures" / "dynamo" / "bidirectional-rnn.onnx")
    read = proto_unit_layers(model, source="the file", max_layers=8, max_values=1 << 22)
    # the forward input weights, the forward recurrence (unrolled over 4 steps), the reverse
    # input weights, the reverse recurrence, the head
    assert [layer.fan_in for layer in read] == [8, 12, 8, 12, 24]
    # the exporter slices the sequence into steps (Slice, Squeeze): an operator that treats
    # positions apart, which the reading does not see through, so no layer is order-tested (the
    # safe side: an RNN's units are exchangeable, but this reading cannot show it)
    assert not any(layer.hidden for layer in read)


def _graph(nodes: list, weights: dict[str, np.ndarray], outputs: list[str]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
                              [numpy_helper.from_array(value.astype(np.float32), name)
                               for name, value in weights.items()])
    return helper.make_model(graph)


def test_a_layer_whose_units_reach_an_output_is_not_hidden():
    """The order test assumes a layer's units may come in any order; units that reach an output
    (a head, a skip path to the output, a second head) have the order the task gives them."""
    rng = np.random.default_rng(0)
    w = {name: rng.normal(size=shape) for name, shape in (("a", (4, 3)), ("b", (2, 4)), ("c", (5, 4)))}
    skip = _graph([helper.make_node("Gemm", ["x", "a"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                   helper.make_node("Gemm", ["r", "b"], ["z"], transB=1),
                   helper.make_node("Concat", ["z", "r"], ["y"], axis=1)], w, ["y"])
    assert [layer.hidden for layer in proto_unit_layers(skip, **READ)] == [False, False]
    two_heads = _graph([helper.make_node("Gemm", ["x", "a"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                        helper.make_node("Gemm", ["r", "b"], ["y"], transB=1),
                        helper.make_node("Gemm", ["r", "c"], ["v"], transB=1)], w, ["y", "v"])
    assert [layer.hidden for layer in proto_unit_layers(two_heads, **READ)] == [True, False, False]
    # a stored bias Add and a positive Mul after a MatMul are folded, a Mul by a negative scale is not
    bias, scale = rng.normal(size=4), np.abs(rng.normal(size=4)) + 0.5
    folded = _graph([helper.make_node("MatMul", ["x", "at"], ["m"]), helper.make_node("Add", ["m", "bias"], ["h"]),
                     helper.make_node("Mul", ["h", "scale"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
                     helper.make_node("Gemm", ["r", "b"], ["y"], transB=1)],
                    {"at": w["a"].T, "bias": bias, "scale": scale, "b": w["b"]}, ["y"])
    first = proto_unit_layers(folded, **READ)[0]
    expected = np.concatenate([w["a"] * scale[:, None], (bias * scale)[:, None]], axis=1)
    assert np.allclose(first.vectors, expected, atol=1e-5)


def test_hostile_weights_are_refused_in_one_line_or_not_read():
    rng = np.random.default_rng(0)
    poisoned = rng.normal(size=(4, 3))
    poisoned[1, 2] = np.nan
    graph = _graph([helper.make_node("Gemm", ["x", "a"], ["y"], transB=1)], {"a": poisoned}, ["y"])
    with pytest.raises(ModelLoadError, match="NaN or infinite") as refused:
        proto_unit_layers(graph, **READ)
    assert "\n" not in str(refused.value)
    big = _graph([helper.make_node("Gemm", ["x", "a"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                  helper.make_node("Gemm", ["r", "b"], ["y"], transB=1)],
                 {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(2, 4))}, ["y"])
    # the sizes are read from the tensors' shapes and bounded before their values are
    assert len(proto_unit_layers(big, source="f", max_layers=4, max_values=12)) == 1
    assert proto_unit_layers(big, source="f", max_layers=4, max_values=11) == []


class _ChannelSplit(torch.nn.Module):
    """A ShuffleNet-like unit: half the channels pass, the other half go through a convolution."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.branch = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, changed = torch.relu(self.conv1(x)).chunk(2, dim=1)
        hidden = torch.cat([kept, torch.relu(self.branch(changed))], 1)
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(hidden, 1), 1))


@pytest.mark.parametrize("name", ["channel-split", "transformer", "resnet_zoo_narrow", "cnn"])
def test_units_treated_by_their_place_are_not_hidden_in_the_module_or_in_its_file(name):
    """A layer whose units are split by position (a channel split), or reshaped into attention
    heads, is not a symmetric layer: relabelling its units changes what the network can be, so the
    order test's null does not hold for it. Both readings (the module's torch.fx trace and the
    exported graph) say so, and agree on every other layer."""
    if name == "channel-split":
        module, shape, expected = _ChannelSplit().eval(), (1, 8, 8), [False, True, False]
    else:
        module = build(name, input_shape=(1, 8, 8), output_dim=10, seed=0).eval()
        shape = (1, 8, 8)
        expected = {"transformer": [True, False, False, False], "resnet_zoo_narrow": [True] * 4,
                    "cnn": [True, True, True, False]}[name]
    from_module = [layer.hidden for layer in unit_layers(module, max_layers=4)]
    from_file = [layer.hidden for layer in proto_unit_layers(onnx.load_from_string(_export(module, shape)), **READ)]
    assert from_module == from_file == expected


def test_quantised_weights_that_do_not_fit_their_scales_are_not_read_and_nothing_fails():
    rng = np.random.default_rng(0)
    weights = {"q": rng.integers(-100, 100, size=(4, 3)).astype(np.int8), "scale": np.full(5, 0.1, np.float32),
               "zero": np.zeros(5, np.int8)}  # five scales along an axis of four
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["w"], axis=0),
         helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    assert proto_unit_layers(helper.make_model(graph), **READ) == []
    fitting = {**weights, "scale": np.full(4, 0.1, np.float32), "zero": np.zeros(4, np.int8)}
    graph.ClearField("initializer")
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in fitting.items())
    read = proto_unit_layers(helper.make_model(graph), **READ)
    assert len(read) == 1 and np.allclose(read[0].vectors[:, :3], 0.1 * weights["q"])
    broken = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    broken.raw_data = broken.raw_data[:7]  # fewer bytes than its shape says
    graph = _graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], {}, ["y"])
    graph.graph.initializer.append(broken)
    assert proto_unit_layers(graph, **READ) is None


class _HeadFirst(torch.nn.Module):
    """A network whose head is defined before the layers its forward calls first (module order
    is not the order of use)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(32, 10)
        self.conv, self.norm, self.fc = torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(8 * 36, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.norm(self.conv(x)))
        return self.head(torch.relu(self.fc(hidden.flatten(1))))


def test_a_module_is_read_in_the_order_its_forward_calls_its_layers_as_its_file_is():
    """Read in module order, the head came first and every file of this network was "another
    architecture" to its own fingerprint."""
    module = _HeadFirst().eval()
    from_module = unit_layers(module)
    from_file = proto_unit_layers(onnx.load_from_string(_export(module)), **READ)
    assert [layer.name for layer in from_module] == ["conv", "fc", "head"]
    assert all(np.allclose(a.vectors, b.vectors, atol=1e-5) and a.hidden == b.hidden
               for a, b in zip(from_module, from_file))
    found = compare(from_module, from_file)
    assert found.applicable and found.p_value < 1e-30
